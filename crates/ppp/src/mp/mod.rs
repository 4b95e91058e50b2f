//! Multilink PPP (RFC 1990), sans-IO: several member links carry one bundle's packets,
//! split into sequence-numbered fragments.
//!
//! - `header`: the MP header (protocol 0x003d, long and short sequence numbers) and the
//!   serial arithmetic of both widths;
//!
//! Nothing here does I/O or keeps a clock of its own: callers feed fragments and the time.

pub mod header;

pub use header::{MpHeader, MpHeaderError, PROTOCOL, SeqFormat};
