//! Cellular modems, the dialer's side: typed views of their answers ([`reply`]) and the
//! check before a dial ([`check`]): SIM and PIN, registration, operator, signal, identity.
//! Pure, but for [`driver`], which runs the check over a port as `chat` runs scripts.

pub mod check;
pub mod driver;
pub mod reply;

pub use check::{Action, CellStatus, CellularCheck, CheckConfig, Outcome};
pub use reply::{AccessTech, Registration, Signal, SimState};
