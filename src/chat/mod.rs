//! pppd-compatible chat scripts: a parser ([`script`]), the sans-IO automaton ([`engine`]) and
//! the async driver that runs it over a [`SerialPort`](crate::serial::SerialPort)
//! ([`driver`]).

pub mod driver;
pub mod engine;
pub mod script;

pub use driver::run_chat;
pub use engine::{Action, ChatEngine, ChatOptions, Failure, Outcome, Success, parse_connect_speed};
pub use script::{ParseError, Pos, Script};
