//! PPP: the sans-IO engine and its tokio driver.
//!
//! The engine (framing, LCP, PAP/CHAP, IPCP, the [`Session`]) is the workspace crate
//! `eqlplus-ppp` (`crates/ppp`), which has no async runtime and no I/O — as quinn-proto is to
//! quinn — so it builds, tests and fuzzes without tokio and its API is what the driver may use.
//! This module re-exports all of it, so `crate::ppp::Session`, `crate::ppp::hdlc::…` and the
//! other paths from before the split keep working, and adds [`driver`]: the thin async side
//! that moves bytes between a line and a session and runs its timers.

pub use eqlplus_ppp::*;

pub mod bundle;
pub mod driver;

pub use driver::{DriverConfig, Ended};
