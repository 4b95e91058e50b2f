//! eqlplus-dialer: several modem lines combined into one faster, self-healing Internet connection.
//!
//! The library holds every part; `main.rs` only parses the command line and dispatches.
//! Protocol and policy cores are sans-IO state machines (fed bytes, events and time,
//! emitting actions); the async drivers around them do the I/O.
//!
//! Items are public where another layer, the binary or the tests use them; the rest is
//! `pub(crate)`, and the lint below keeps a `pub` from hiding unused code.

#![warn(unreachable_pub)]

pub mod balancer;
pub mod cellular;
pub mod chat;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod link;
pub mod metrics;
pub mod net;
pub mod ppp;
pub mod serial;
pub mod sim;
pub mod sys;
pub mod track;
pub mod ui;
