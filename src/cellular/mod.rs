//! Cellular modems, the dialer's side: typed views of their answers ([`reply`]) and the
//! check before a dial ([`check`]): SIM and PIN, registration, operator, signal, identity.
//! Pure: the line driver runs the check over the port, as it runs chat scripts.

pub mod check;
pub mod reply;

pub use check::{Action, CellStatus, CellularCheck, CheckConfig, Outcome};
pub use reply::{AccessTech, Registration, Signal, SimState};
