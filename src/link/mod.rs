//! One modem line end to end: its life as a sans-IO state machine ([`machine`]), the redial
//! policy ([`redial`]), the recovery ladder for a modem that stays broken ([`recovery`]), the
//! async driver that carries the steps out ([`driver`]), the status it
//! shares ([`status`]) and the pppd-style hooks ([`hooks`]).

pub mod bundle;
pub mod driver;
pub mod hooks;
pub mod kernel_bundle;
pub mod kernel_ppp;
pub mod locate;
pub mod machine;
pub mod recovery;
pub mod redial;
pub mod reset;
pub mod status;
pub mod track;

pub use driver::{LineCommand, LineContext, run_line};
pub use machine::{LineEvent, LineMachine, LineState, Step};
pub use redial::{FailureKind, RedialPolicy};
pub use status::{LineInfo, LineShared};
