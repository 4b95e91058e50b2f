//! One modem line end to end: its life as a sans-IO state machine ([`machine`]), the redial
//! policy ([`redial`]), and the async driver that carries the steps out ([`driver`]).

pub mod machine;
pub mod redial;

pub use machine::{LineEvent, LineMachine, LineState, Step};
pub use redial::{FailureKind, RedialPolicy};
