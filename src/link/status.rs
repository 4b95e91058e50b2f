//! What a line shows the outside (status, watch, monitor), written by its driver and read by
//! the supervisor without waiting for the line.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::machine::{LineMachine, LineState};
use super::track::TrackSnapshot;
use crate::net::SharedTxQueue;
use crate::net::pump::TrafficCounter;

/// The facts of a line at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LineInfo {
    pub state: LineState,
    pub since: SystemTime,
    pub admin_up: bool,
    pub local: Option<Ipv4Addr>,
    pub peer: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub connect_speed: Option<u32>,
    pub mru: Option<u16>,
    pub redials: u32,
    pub last_error: Option<String>,
    pub next_attempt: Option<SystemTime>,
    /// The smoothed LCP echo round trip, while PPP is up.
    pub lcp_rtt: Option<std::time::Duration>,
    /// What the line is doing within its state, in the modem's or PPP's words (the modem's
    /// latest line while chatting, the PPP phase); cleared when the state changes.
    pub detail: Option<String>,
}

impl Default for LineInfo {
    fn default() -> Self {
        LineInfo {
            state: LineState::Disabled,
            since: SystemTime::now(),
            admin_up: false,
            local: None,
            peer: None,
            dns: Vec::new(),
            connect_speed: None,
            mru: None,
            redials: 0,
            last_error: None,
            next_attempt: None,
            lcp_rtt: None,
            detail: None,
        }
    }
}

/// Shared between a line's driver (writer) and the supervisor (reader).
#[derive(Debug, Default)]
pub struct LineShared {
    info: Mutex<LineInfo>,
    /// IP bytes received on the line (into the kernel).
    pub rx_bytes: AtomicU64,
    /// IP bytes sent on the line (from the kernel).
    pub tx_bytes: AtomicU64,
    queue: Mutex<Option<Arc<SharedTxQueue>>>,
    /// Upstream tracking's latest snapshot, while the line is up and tracked.
    track: Mutex<Option<tokio::sync::watch::Receiver<TrackSnapshot>>>,
}

/// An `Instant` as wall-clock time.
pub fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at <= now {
        SystemTime::now() - (now - at)
    } else {
        SystemTime::now() + (at - now)
    }
}

impl LineShared {
    /// Where the line's tracking snapshot is read from (`None`: not tracked or not up).
    pub fn set_track(&self, snapshot: Option<tokio::sync::watch::Receiver<TrackSnapshot>>) {
        *self.track.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Upstream tracking's latest snapshot, if the line is tracked and up.
    pub fn track(&self) -> Option<TrackSnapshot> {
        let t = self.track.lock().unwrap_or_else(|p| p.into_inner());
        t.as_ref().map(|rx| rx.borrow().clone())
    }

    /// A copy of the current facts.
    pub fn info(&self) -> LineInfo {
        self.lock().clone()
    }

    /// Updates the facts that follow from the state machine.
    pub fn update_from(&self, m: &LineMachine) {
        let mut i = self.lock();
        if i.state != m.state() {
            i.detail = None;
        }
        i.state = m.state();
        i.since = wall(m.since());
        i.admin_up = m.admin_up();
        i.redials = m.redials();
        i.last_error = m.last_error().map(str::to_string);
        i.next_attempt = m.next_attempt().map(wall);
        // Addresses belong to an up line (bring-up sets them just before `up`): a line back
        // in `ppp` after IP went down has none.
        if !m.state().link_up() {
            i.local = None;
            i.peer = None;
            i.dns.clear();
            i.mru = None;
            i.lcp_rtt = None;
        }
        if !m.state().holds_port() {
            i.connect_speed = None;
        }
    }

    /// Changes other facts.
    pub fn edit(&self, f: impl FnOnce(&mut LineInfo)) {
        f(&mut self.lock());
    }

    /// The transmit queue while the line is up.
    pub fn set_queue(&self, q: Option<Arc<SharedTxQueue>>) {
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = q;
    }

    /// Bytes waiting to go out on the line, and packets dropped for lack of room.
    pub fn queue_figures(&self) -> (u64, u64) {
        match &*self.queue.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(q) => (q.depth(), q.stats().dropped_packets),
            None => (0, 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LineInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TrafficCounter for LineShared {
    fn count_rx(&self, bytes: usize) {
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn count_tx(&self, bytes: usize) {
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}
