//! The control socket between the CLI and the daemon: the versioned JSON-lines protocol
//! ([`protocol`]), the daemon's side ([`server`]: implement [`ControlHandler`], call
//! [`serve`]), the CLI's side ([`client`]), and, with the `test-support` feature only, a
//! canned daemon for tests (`canned`).

#[cfg(feature = "test-support")]
pub mod canned;
pub mod client;
pub mod protocol;
pub mod server;
mod slots;

pub use client::{Client, ClientError, Subscription};
pub use protocol::{
    AdminState, DaemonInfo, Envelope, Internet, LineState, LineStatus, PROTOCOL_VERSION, Policy,
    Request, Response, StartedBy, StatusReport, TrackStatus,
};
pub use server::{ControlHandler, ControlServer, ServerOptions, serve, serve_with};
