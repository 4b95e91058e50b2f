//! Full-screen terminal interfaces: the `monitor` ([`monitor`]) and the terminal handling it
//! shares with any later one ([`terminal`]).

pub mod monitor;
pub mod terminal;
