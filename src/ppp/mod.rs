//! PPP engine (placeholder during development).
pub mod hdlc;
