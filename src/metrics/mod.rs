//! The opt-in Prometheus / OpenMetrics endpoint (`[metrics] listen`).
//!
//! Nothing here keeps a copy of line state: on each scrape the daemon hands over a
//! [`Snapshot`] read from the same shared status that `status` answers from (as node_exporter
//! reads the kernel's counters when scraped), [`render`] turns it into the exposition with the
//! Prometheus org's client (`prometheus-client`), and [`server`] answers `GET /metrics` on TCP
//! or a Unix socket, bounded in request size, time and concurrent scrapes.

mod http;
mod render;
pub mod server;

pub use render::{Format, render};
pub use server::{MetricsListener, MetricsServer};

use std::time::{Duration, SystemTime};

use crate::link::LineState;
use crate::link::status::LineTally;
use crate::link::track::TrackSnapshot;

/// What a scrape reports: the daemon and each of its lines at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The balancing policy's name (`least-loaded`, …).
    pub policy: &'static str,
    pub lines: Vec<LineSample>,
}

/// One line's figures. Counters (`*_bytes`, `*_packets`, `dropped_*`, `tally`) only grow while
/// the daemon runs: calls, redials and a reload's restart of the line do not reset them.
#[derive(Debug, Clone)]
pub struct LineSample {
    pub name: String,
    pub device: String,
    pub slave: String,
    pub tier: u32,
    pub state: LineState,
    /// When the line entered `state`.
    pub since: SystemTime,
    pub admin_up: bool,
    /// CONNECT speed in bit/s, while the modem is connected.
    pub connect_speed: Option<u32>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Dropped for lack of room in the transmit queue.
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub queued_bytes: u64,
    /// This line's share of all lines' traffic over the last second, 0–1.
    pub share: f64,
    /// Redials, failures by stage and kind, dial durations.
    pub tally: LineTally,
    /// Smoothed LCP echo round trip, while PPP is up.
    pub lcp_rtt: Option<Duration>,
    /// Upstream tracking, for a tracked line whose link is up.
    pub track: Option<TrackSnapshot>,
    /// Connections open through the line, while the balancer follows connections.
    pub open_connections: Option<u32>,
    /// A cellular modem's signal (dBm), as last checked.
    pub signal_dbm: Option<i32>,
    /// Resets by the recovery ladder: modem, USB port, hook.
    pub resets: [u32; 3],
    /// The bundle the line is a member of now.
    pub bundle: Option<String>,
    /// For a Multilink bundle (listed as a line: one balancer entry), its member lines now.
    pub members: Option<Vec<String>>,
}

#[cfg(test)]
mod tests;
