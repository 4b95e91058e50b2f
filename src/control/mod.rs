//! The control socket: protocol types ([`protocol`]); server and client come next.

pub mod protocol;

pub use protocol::{Envelope, LineStatus, PROTOCOL_VERSION, Request, Response, StatusReport};
