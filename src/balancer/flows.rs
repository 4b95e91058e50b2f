//! The balanced connections of every line, as the balancer knows them from conntrack (sans-IO:
//! fed entries, their ends and the time; asked for each line's tally and for when that tally
//! will next change by itself). Fed by events as they happen, or by whole dumps where the
//! kernel sends no events.
//!
//! What it tells, per mark:
//! - open connections: TCP connections still carrying data, and UDP flows that are streams
//!   (conntrack's "assured": traffic both ways for over 2 s, e.g. QUIC, not a DNS question);
//!   the load signal of `least-loaded` for traffic whose queue the router cannot see (a
//!   download queues at the ISP's end);
//! - connections that went unanswered a moment ago (a SYN or a UDP flow without reply for
//!   over a second): upstream tracking's passive evidence.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::net::conntrack::entry::{PROTO_TCP, PROTO_UDP, SYN_SENT};
use crate::net::conntrack::{Change, Entry, Timeouts};

/// From this age a connection without a reply counts as unanswered: over a second, TCP has
/// resent its SYN. From [`UNANSWERED_UNTIL`] on it is old news (one client retrying a dead
/// server must not keep its line suspect), and an unanswered SYN no longer counts as load.
const UNANSWERED_FROM: Duration = Duration::from_secs(1);
const UNANSWERED_UNTIL: Duration = Duration::from_secs(4);

/// The most connections followed; more are left out (and said so once): memory stays bounded
/// whatever the size of the conntrack table.
pub const MAX_FLOWS: usize = crate::net::conntrack::MAX_ENTRIES;

/// What one line's connections say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkTally {
    /// Open TCP connections (a SYN unanswered for long is not one).
    pub open_tcp: u32,
    /// UDP streams (assured flows).
    pub udp_streams: u32,
    /// Connections (TCP or UDP) unanswered for a second or few.
    pub unanswered: u32,
}

impl MarkTally {
    /// The connections sharing the line: its load for `least-loaded`.
    pub fn open(&self) -> u32 {
        self.open_tcp + self.udp_streams
    }
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    mark: u32,
    proto: u8,
    tcp_state: Option<u8>,
    replied: bool,
    assured: bool,
    /// When the connection began (as near as known).
    since: Instant,
}

impl Flow {
    /// Whether it awaits a reply, and may still get one (TCP in SYN_SENT, or UDP).
    fn waiting(&self) -> bool {
        !self.replied
            && match self.proto {
                PROTO_TCP => self.tcp_state == Some(SYN_SENT),
                PROTO_UDP => true,
                _ => false,
            }
    }
}

/// The connections with our marks.
#[derive(Debug)]
pub struct Flows {
    value: u32,
    mask: u32,
    timeouts: Timeouts,
    flows: HashMap<u32, Flow>,
    /// Connections left out since the table was full.
    pub left_out: u64,
}

impl Flows {
    /// Follows the connections whose `mark & mask == value & mask`; `timeouts` tell a dumped
    /// entry's age (a dump gives the time left, not the age).
    pub fn new(value: u32, mask: u32, timeouts: Timeouts) -> Flows {
        Flows {
            value,
            mask,
            timeouts,
            flows: HashMap::new(),
            left_out: 0,
        }
    }

    /// Applies events; returns whether anything of ours changed.
    pub fn apply(&mut self, changes: &[Change], now: Instant) -> bool {
        let mut changed = false;
        for change in changes {
            changed |= match change {
                Change::Upsert(e) => self.upsert(e, now, false),
                Change::Destroy(e) => e.id.is_some_and(|id| self.flows.remove(&id).is_some()),
            };
        }
        changed
    }

    /// Replaces everything with a dump's entries (keeping what is known of those already
    /// followed, such as when they began).
    pub fn resync(&mut self, entries: &[Entry], now: Instant) {
        let old = std::mem::take(&mut self.flows);
        for e in entries {
            if let Some(known) = e.id.and_then(|id| old.get(&id)) {
                self.flows.insert(e.id.unwrap_or_default(), *known);
            }
            self.upsert(e, now, true);
        }
    }

    fn upsert(&mut self, e: &Entry, now: Instant, dumped: bool) -> bool {
        let Some(id) = e.id else { return false };
        let (value, mask) = (self.value, self.mask);
        let ours = |mark: u32| mark & mask == value & mask;
        match self.flows.get_mut(&id) {
            Some(flow) => {
                match e.mark {
                    Some(mark) if !ours(mark) => {
                        self.flows.remove(&id);
                        return true;
                    }
                    Some(mark) => flow.mark = mark,
                    None => {}
                }
                // An update carries the TCP state only when it changed.
                if e.tcp_state.is_some() {
                    flow.tcp_state = e.tcp_state;
                }
                flow.replied = e.replied();
                flow.assured = e.assured();
                true
            }
            None => {
                let (Some(mark), Some(proto)) = (e.mark, e.proto) else {
                    return false;
                };
                if !ours(mark) {
                    return false;
                }
                if self.flows.len() >= MAX_FLOWS {
                    self.left_out += 1;
                    if self.left_out == 1 {
                        tracing::warn!(
                            "following {MAX_FLOWS} balanced connections already; leaving more out of the load counts"
                        );
                    }
                    return false;
                }
                let mut flow = Flow {
                    mark,
                    proto,
                    tcp_state: e.tcp_state,
                    replied: e.replied(),
                    assured: e.assured(),
                    since: now,
                };
                if proto == PROTO_TCP && flow.tcp_state.is_none() {
                    flow.tcp_state = Some(SYN_SENT); // a new connection's first state
                }
                if dumped && flow.waiting() {
                    flow.since = now - self.dumped_age(&flow, e.timeout);
                }
                self.flows.insert(id, flow);
                true
            }
        }
    }

    /// A dumped entry's age, from the time it has left: the kernel rounds that down to whole
    /// seconds, so the age is known to within a second (take the middle).
    fn dumped_age(&self, flow: &Flow, left: Option<u32>) -> Duration {
        let initial = match flow.proto {
            PROTO_TCP => self.timeouts.tcp_syn_sent,
            _ => self.timeouts.udp,
        };
        let whole = initial.saturating_sub(left.unwrap_or(initial));
        Duration::from_millis(u64::from(whole) * 1000).saturating_sub(Duration::from_millis(500))
    }

    /// The tally of each mark that has connections.
    pub fn tally(&self, now: Instant) -> BTreeMap<u32, MarkTally> {
        let mut counts: BTreeMap<u32, MarkTally> = BTreeMap::new();
        for flow in self.flows.values() {
            let t = counts.entry(flow.mark).or_default();
            let age = now.saturating_duration_since(flow.since);
            let waiting = flow.waiting();
            if waiting && (UNANSWERED_FROM..UNANSWERED_UNTIL).contains(&age) {
                t.unanswered += 1;
            }
            match flow.proto {
                PROTO_TCP => {
                    let stale_syn = waiting && age >= UNANSWERED_UNTIL;
                    if flow.tcp_state.is_some_and(Entry::open_tcp_state) && !stale_syn {
                        t.open_tcp += 1;
                    }
                }
                PROTO_UDP if flow.assured => t.udp_streams += 1,
                _ => {}
            }
        }
        counts
    }

    /// When the tally will change by itself (a connection still unanswered becomes evidence,
    /// or old news), if ever: the only timer the table needs.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.flows
            .values()
            .filter(|f| f.waiting())
            .flat_map(|f| [f.since + UNANSWERED_FROM, f.since + UNANSWERED_UNTIL])
            .filter(|t| *t > now)
            .min()
    }

    /// How many connections are followed.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u32 = 0xe100;
    const MASK: u32 = 0xffff_ff00;
    const SEEN_REPLY: u32 = 1 << 1;
    const ASSURED: u32 = 1 << 2;

    fn e(id: u32, mark: u32, tcp_state: Option<u8>, left: u32, status: u32) -> Entry {
        Entry {
            id: Some(id),
            mark: Some(mark),
            proto: Some(if tcp_state.is_some() {
                PROTO_TCP
            } else {
                PROTO_UDP
            }),
            status,
            timeout: Some(left),
            tcp_state,
        }
    }

    fn t(open_tcp: u32, udp_streams: u32, unanswered: u32) -> MarkTally {
        MarkTally {
            open_tcp,
            udp_streams,
            unanswered,
        }
    }

    fn flows() -> Flows {
        Flows::new(BASE, MASK, Timeouts::default())
    }

    #[test]
    fn counts_open_tcp_connections_and_udp_streams_by_mark() {
        let now = Instant::now();
        let mut f = flows();
        f.resync(
            &[
                e(1, 0xe101, Some(3), 7000, SEEN_REPLY),
                e(2, 0xe101, Some(1), 120, 0), // SYN_SENT, just now
                e(3, 0xe101, Some(7), 100, SEEN_REPLY), // TIME_WAIT: done
                e(4, 0xe102, Some(3), 7000, SEEN_REPLY),
                e(5, 0xe102, None, 170, SEEN_REPLY | ASSURED), // a UDP stream
                e(6, 0xe102, None, 29, SEEN_REPLY),            // a DNS answer: not a stream
                e(7, 0x0101, Some(3), 7000, SEEN_REPLY),       // not ours
            ],
            now,
        );
        assert_eq!(f.len(), 6);
        assert_eq!(
            f.tally(now),
            BTreeMap::from([(0xe101, t(2, 0, 0)), (0xe102, t(1, 1, 0))])
        );
        assert_eq!(f.tally(now)[&0xe102].open(), 2);
    }

    #[test]
    fn dumped_connections_unanswered_for_a_second_or_few_are_evidence() {
        let now = Instant::now() + Duration::from_secs(100);
        let mut f = flows();
        f.resync(
            &[
                e(1, 0xe101, Some(1), 119, 0),          // SYN sent just now: not yet
                e(2, 0xe101, Some(1), 117, 0),          // unanswered for 2-3 s
                e(3, 0xe101, Some(1), 118, 0),          // 1-2 s
                e(4, 0xe101, Some(1), 100, 0),          // 20 s: old news, and no load either
                e(5, 0xe101, None, 28, 0),              // UDP, 2 s
                e(6, 0xe101, None, 30, 0),              // UDP, just sent
                e(7, 0xe102, Some(1), 118, SEEN_REPLY), // a reply came: not evidence
            ],
            now,
        );
        assert_eq!(f.tally(now)[&0xe101], t(3, 0, 3));
        assert_eq!(f.tally(now)[&0xe102], t(1, 0, 0));
    }

    #[test]
    fn events_follow_a_connection_through_its_life() {
        let t0 = Instant::now();
        let mut f = flows();
        let mut syn = e(9, 0xe103, Some(1), 120, 0);
        syn.tcp_state = None;
        assert!(
            f.apply(&[Change::Upsert(syn)], t0),
            "a new SYN, state not said"
        );
        assert_eq!(f.tally(t0)[&0xe103], t(1, 0, 0));
        // Nothing came back for over a second: evidence, at the time the table said.
        assert_eq!(f.next_change(t0), Some(t0 + UNANSWERED_FROM));
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(f.tally(t1)[&0xe103], t(1, 0, 1));
        // The answer comes; an update without the state keeps it.
        let mut answered = e(9, 0xe103, Some(3), 7000, SEEN_REPLY);
        assert!(f.apply(&[Change::Upsert(answered.clone())], t1));
        assert_eq!(f.tally(t1)[&0xe103], t(1, 0, 0));
        assert_eq!(f.next_change(t1), None, "nothing left to wait for");
        answered.tcp_state = None;
        answered.mark = None;
        f.apply(&[Change::Upsert(answered)], t1);
        assert_eq!(f.tally(t1)[&0xe103], t(1, 0, 0));
        // It closes, then goes.
        f.apply(
            &[Change::Upsert(e(9, 0xe103, Some(5), 120, SEEN_REPLY))],
            t1,
        );
        assert_eq!(f.tally(t1)[&0xe103], t(0, 0, 0));
        assert!(f.apply(&[Change::Destroy(e(9, 0xe103, None, 0, 0))], t1));
        assert!(f.is_empty());
        assert!(f.tally(t1).is_empty());
    }

    #[test]
    fn an_unanswered_syn_is_old_news_after_four_seconds() {
        let t0 = Instant::now();
        let mut f = flows();
        f.apply(&[Change::Upsert(e(1, 0xe101, Some(1), 120, 0))], t0);
        let t1 = t0 + UNANSWERED_FROM;
        assert_eq!(f.next_change(t1), Some(t0 + UNANSWERED_UNTIL));
        let t2 = t0 + UNANSWERED_UNTIL;
        assert_eq!(f.tally(t2)[&0xe101], t(0, 0, 0));
        assert_eq!(f.next_change(t2), None);
    }

    #[test]
    fn other_marks_and_entries_without_an_id_are_ignored() {
        let now = Instant::now();
        let mut f = flows();
        let mut no_id = e(1, 0xe101, Some(3), 100, SEEN_REPLY);
        no_id.id = None;
        assert!(!f.apply(
            &[
                Change::Upsert(no_id),
                Change::Upsert(e(2, 0x1, Some(3), 100, SEEN_REPLY)),
                Change::Destroy(e(3, 0xe101, None, 0, 0)),
            ],
            now
        ));
        assert!(f.is_empty());
        // An entry re-marked away from us is no longer ours.
        f.apply(
            &[Change::Upsert(e(4, 0xe101, Some(3), 100, SEEN_REPLY))],
            now,
        );
        assert!(f.apply(&[Change::Upsert(e(4, 0x1, Some(3), 100, SEEN_REPLY))], now));
        assert!(f.is_empty());
    }

    #[test]
    fn a_resync_keeps_when_known_connections_began_and_drops_the_gone() {
        let t0 = Instant::now();
        let mut f = flows();
        f.apply(
            &[
                Change::Upsert(e(1, 0xe101, Some(1), 120, 0)),
                Change::Upsert(e(2, 0xe101, Some(3), 100, SEEN_REPLY)),
            ],
            t0,
        );
        let t1 = t0 + Duration::from_millis(1200);
        // The dump rounds entry 1's age to 2 s; what the events said is kept.
        f.resync(&[e(1, 0xe101, Some(1), 118, 0)], t1);
        assert_eq!(f.len(), 1);
        assert_eq!(f.next_change(t1), Some(t0 + UNANSWERED_UNTIL));
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut f = flows();
        let many: Vec<Change> = (0..MAX_FLOWS as u32 + 10)
            .map(|id| Change::Upsert(e(id, 0xe101, Some(3), 100, SEEN_REPLY)))
            .collect();
        f.apply(&many, now);
        assert_eq!(f.len(), MAX_FLOWS);
        assert_eq!(f.left_out, 10);
    }
}
