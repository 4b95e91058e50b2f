//! What a line shows the outside (status, watch, monitor), written by its driver and read by
//! the supervisor without waiting for the line.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::machine::{LineMachine, LineState};
use super::redial::FailureKind;
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
    /// A cellular modem's SIM, registration, operator, signal and identity, as last checked.
    pub cellular: Option<crate::cellular::CellStatus>,
    /// Resets by the recovery ladder.
    pub resets: crate::link::recovery::Resets,
    /// The ladder's last step and why, since the line was last up.
    pub last_reset: Option<String>,
    /// The tty the device path led to at the last open (a by-id link's `/dev/ttyUSB2`).
    pub tty: Option<std::path::PathBuf>,
    /// The Multilink bundle the line carries, while it is a member.
    pub bundle: Option<String>,
    /// For a bundle: its members up now.
    pub members: Option<Vec<String>>,
    /// The slave kind of the call (kernel PPP or TUN, and why), from its start.
    pub slave_kind: Option<String>,
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
            cellular: None,
            resets: Default::default(),
            last_reset: None,
            tty: None,
            bundle: None,
            members: None,
            slave_kind: None,
        }
    }
}

/// Shared between a line's driver (writer) and the supervisor (reader).
///
/// Every counter here only grows for the life of the line's entry in the daemon (calls come
/// and go; a reload that restarts the line keeps it): the metrics endpoint exports them as
/// Prometheus counters.
#[derive(Debug, Default)]
pub struct LineShared {
    info: Mutex<LineInfo>,
    /// IP bytes received on the line (into the kernel).
    pub rx_bytes: AtomicU64,
    /// IP bytes sent on the line (from the kernel).
    pub tx_bytes: AtomicU64,
    /// IP packets received on the line (into the kernel).
    pub rx_packets: AtomicU64,
    /// IP packets sent on the line (from the kernel).
    pub tx_packets: AtomicU64,
    queue: Mutex<QueueSlot>,
    /// Upstream tracking's latest snapshot, while the line is up and tracked.
    track: Mutex<Option<tokio::sync::watch::Receiver<TrackSnapshot>>>,
    tally: Mutex<LineTally>,
}

/// The transmit queue of the call in progress, and what the queues of earlier calls dropped
/// (each call has a queue of its own; the line's drops must not start over with it).
#[derive(Debug, Default)]
struct QueueSlot {
    current: Option<Arc<SharedTxQueue>>,
    /// A kernel PPP slave's queue (its qdisc), as last read, while the call is up.
    kernel: Option<crate::net::QdiscFigures>,
    retired_dropped_packets: u64,
    retired_dropped_bytes: u64,
}

/// Where in an attempt a line failed: the state it was in, as a small fixed set (metric labels
/// must stay bounded; the failure's text is in the status' last error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureStage {
    /// Locking and opening the port.
    Open,
    InitChat,
    DialChat,
    /// From CONNECT to IP up.
    Ppp,
    /// A line lost after IP was up.
    Up,
}

impl FailureStage {
    pub const ALL: [FailureStage; 5] = [
        FailureStage::Open,
        FailureStage::InitChat,
        FailureStage::DialChat,
        FailureStage::Ppp,
        FailureStage::Up,
    ];

    /// The stage of a failure in `state` (`None`: no attempt runs in that state).
    pub fn of(state: LineState) -> Option<FailureStage> {
        Some(match state {
            LineState::Locking => FailureStage::Open,
            LineState::InitChat => FailureStage::InitChat,
            LineState::DialChat => FailureStage::DialChat,
            LineState::Ppp => FailureStage::Ppp,
            s if s.link_up() => FailureStage::Up,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::Open => "open",
            FailureStage::InitChat => "init-chat",
            FailureStage::DialChat => "dial-chat",
            FailureStage::Ppp => "ppp",
            FailureStage::Up => "up",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the dial-duration histogram's buckets; a last, unbounded one
/// follows. A modem call takes 10–40 s of chat and a few seconds of PPP.
pub const DIAL_BUCKETS: [f64; 10] = [2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0];

/// How long successful dials took, from opening the port to IP up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DialHistogram {
    /// Dials per bucket (not cumulative): one per [`DIAL_BUCKETS`] bound, then the rest.
    pub buckets: [u64; DIAL_BUCKETS.len() + 1],
    pub count: u64,
    /// Seconds, all dials together.
    pub sum: f64,
}

impl DialHistogram {
    pub fn observe(&mut self, took: std::time::Duration) {
        let s = took.as_secs_f64();
        let i = DIAL_BUCKETS
            .iter()
            .position(|&bound| s <= bound)
            .unwrap_or(DIAL_BUCKETS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += s;
    }
}

/// Counts the line keeps for the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineTally {
    /// Failures by [`FailureStage`] and [`FailureKind`] (see [`LineTally::failures`]).
    failures: [[u64; 3]; FailureStage::ALL.len()],
    pub dials: DialHistogram,
    /// Dial attempts after a line's first, for the life of this status (the machine's own
    /// count starts over when a reload restarts the line).
    pub redials: u64,
    /// The machine's count when last seen.
    machine_redials: u32,
}

impl LineTally {
    /// The failures counted at `stage` of `kind`.
    pub fn failures(&self, stage: FailureStage, kind: FailureKind) -> u64 {
        self.failures[stage.index()][kind_index(kind)]
    }
}

fn kind_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Transient => 0,
        FailureKind::Auth => 1,
        FailureKind::Other => 2,
    }
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
        {
            // A machine counts from 0 (a new one after a reload's restart): only its growth
            // is added.
            let mut t = self.tally_lock();
            let now = m.redials();
            t.redials += u64::from(now.saturating_sub(t.machine_redials));
            t.machine_redials = now;
        }
        let mut i = self.lock();
        if i.state != m.state() {
            i.detail = None;
        }
        i.state = m.state();
        i.since = wall(m.since());
        i.admin_up = m.admin_up();
        i.redials = m.redials();
        i.last_error = m.last_error().map(str::to_string);
        i.resets = m.resets();
        i.last_reset = m.last_reset().map(str::to_string);
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
            i.slave_kind = None;
        }
    }

    /// Changes other facts.
    pub fn edit(&self, f: impl FnOnce(&mut LineInfo)) {
        f(&mut self.lock());
    }

    /// The transmit queue while the line is up. A queue replaced or taken away leaves its
    /// drops behind in the line's totals.
    pub fn set_queue(&self, q: Option<Arc<SharedTxQueue>>) {
        let mut slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = std::mem::replace(&mut slot.current, q) {
            let stats = old.stats();
            slot.retired_dropped_packets += stats.dropped_packets;
            slot.retired_dropped_bytes += stats.dropped_bytes;
        }
    }

    /// A kernel PPP slave's queue as just read (`None`: the call is over, its drops go to
    /// the line's totals).
    pub fn set_kernel_queue(&self, figures: Option<crate::net::QdiscFigures>) {
        let mut slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = std::mem::replace(&mut slot.kernel, figures)
            && figures.is_none()
        {
            slot.retired_dropped_packets += old.dropped_packets;
        }
    }

    /// Bytes waiting to go out on the line, and packets dropped for lack of room in this call.
    pub fn queue_figures(&self) -> (u64, u64) {
        let slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match (&slot.current, &slot.kernel) {
            (Some(q), _) => (q.depth(), q.stats().dropped_packets),
            (None, Some(k)) => (k.backlog_bytes, k.dropped_packets),
            (None, None) => (0, 0),
        }
    }

    /// Packets and bytes dropped for lack of room in the transmit queue, all calls together.
    pub fn dropped_total(&self) -> (u64, u64) {
        let slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let now = slot.current.as_ref().map(|q| q.stats()).unwrap_or_default();
        let kernel = slot.kernel.map_or(0, |k| k.dropped_packets);
        (
            slot.retired_dropped_packets + now.dropped_packets + kernel,
            slot.retired_dropped_bytes + now.dropped_bytes,
        )
    }

    /// Counts a failed attempt (or a lost line) at `stage`.
    pub fn count_failure(&self, stage: FailureStage, kind: FailureKind) {
        self.tally_lock().failures[stage.index()][kind_index(kind)] += 1;
    }

    /// Counts a successful dial that took `took` from opening the port to IP up.
    pub fn count_dial(&self, took: std::time::Duration) {
        self.tally_lock().dials.observe(took);
    }

    /// A copy of the line's failure and dial counts.
    pub fn tally(&self) -> LineTally {
        self.tally_lock().clone()
    }

    fn tally_lock(&self) -> std::sync::MutexGuard<'_, LineTally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LineInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TrafficCounter for LineShared {
    // The pumps count one packet per call.
    fn count_rx(&self, bytes: usize) {
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
    }

    fn count_tx(&self, bytes: usize) {
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.tx_packets.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dial_durations_fall_into_their_buckets() {
        let mut h = DialHistogram::default();
        h.observe(Duration::from_secs(2));
        h.observe(Duration::from_millis(2500)); // on a bound: that bucket (le)
        h.observe(Duration::from_secs(31));
        h.observe(Duration::from_secs(600));
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[6], 1, "30 < 31 <= 45");
        assert_eq!(h.buckets[DIAL_BUCKETS.len()], 1, "beyond the last bound");
        assert_eq!(h.count, 4);
        assert!((h.sum - 635.5).abs() < 1e-9);
    }

    #[test]
    fn drops_of_earlier_calls_stay_counted() {
        let shared = LineShared::default();
        let q = Arc::new(SharedTxQueue::new(100));
        shared.set_queue(Some(q.clone()));
        assert!(q.push(vec![0; 80]));
        assert!(!q.push(vec![0; 80]), "no room: dropped");
        assert_eq!(shared.queue_figures(), (80, 1));
        assert_eq!(shared.dropped_total(), (1, 80));
        // The call ends; the next one has a fresh queue and drops one more.
        shared.set_queue(None);
        assert_eq!(shared.queue_figures(), (0, 0));
        assert_eq!(shared.dropped_total(), (1, 80));
        let q = Arc::new(SharedTxQueue::new(10));
        shared.set_queue(Some(q.clone()));
        assert!(!q.push(vec![0; 20]));
        assert_eq!(shared.queue_figures(), (0, 1), "status: this call's drops");
        assert_eq!(shared.dropped_total(), (2, 100), "metrics: all calls'");
    }

    #[test]
    fn redials_carry_on_across_a_new_machine() {
        use crate::config::RedialConfig;
        use crate::link::machine::LineEvent;
        use crate::link::redial::RedialPolicy;
        let config = RedialConfig {
            holdoff: Duration::from_secs(1),
            backoff_factor: 2.0,
            max_delay: Duration::from_secs(10),
            max_failures: 0,
        };
        let now = std::time::Instant::now();
        let machine = || LineMachine::new(true, false, RedialPolicy::new(config, 1), now).0;
        let redial = |m: &mut LineMachine| {
            m.on(LineEvent::OpenFailed("no such port".into()), now);
            m.on(LineEvent::TimerFired, now);
        };
        let shared = LineShared::default();
        let mut m = machine();
        shared.update_from(&m);
        redial(&mut m);
        redial(&mut m);
        shared.update_from(&m);
        assert_eq!((m.redials(), shared.tally().redials), (2, 2));
        // A reload restarts the line: a new machine, the same shared status.
        let mut m = machine();
        shared.update_from(&m);
        assert_eq!(shared.tally().redials, 2, "no reset");
        redial(&mut m);
        shared.update_from(&m);
        assert_eq!(shared.tally().redials, 3);
        assert_eq!(
            shared.info().redials,
            1,
            "status shows the machine's own count"
        );
    }

    #[test]
    fn failures_are_counted_by_stage_and_kind() {
        let shared = LineShared::default();
        assert_eq!(
            FailureStage::of(LineState::DialChat),
            Some(FailureStage::DialChat)
        );
        assert_eq!(
            FailureStage::of(LineState::Degraded),
            Some(FailureStage::Up)
        );
        assert_eq!(FailureStage::of(LineState::Holdoff), None);
        shared.count_failure(FailureStage::DialChat, FailureKind::Transient);
        shared.count_failure(FailureStage::DialChat, FailureKind::Transient);
        shared.count_failure(FailureStage::Ppp, FailureKind::Auth);
        let t = shared.tally();
        assert_eq!(
            t.failures(FailureStage::DialChat, FailureKind::Transient),
            2
        );
        assert_eq!(t.failures(FailureStage::Ppp, FailureKind::Auth), 1);
        assert_eq!(t.failures(FailureStage::Up, FailureKind::Transient), 0);
    }
}
