//! Receive side of Multilink (RFC 1990 §4.1): fragments from all member links, sorted by
//! sequence number, joined back into packets and delivered in order.
//!
//! Each member link is FIFO and the sender numbers fragments in the order it sends them, so
//! the sequence numbers arriving on one link only grow. M, the smallest of the members'
//! most recent numbers, is therefore a floor for everything still to come: a number below
//! M that has not arrived never will. That is the whole loss detection, as in the RFC:
//! a gap below M is lost, and the packet it belonged to is discarded (its other fragments
//! counted as discarded), the packets around it go on.
//!
//! The peer's first fragment is expected to carry [`ReassemblyConfig::first_seq`] (0, as
//! Linux numbers them), so the first packets are delivered at once; until something was
//! delivered a lower number is still taken as the start. A member that has not received
//! anything yet holds M back (it may still bring the lowest number); a removed member no
//! longer does. Memory is bounded ([`ReassemblyConfig`]):
//! beyond the limits the oldest fragments go first, and a gap that blocks delivery for
//! [`ReassemblyConfig::max_wait`] is given up (a member that never sends must not stall
//! the bundle forever).
//!
//! Sequence numbers are unwrapped onto a 64-bit line ([`SeqFormat::unwrap`]) as they
//! arrive, so sorting and comparing ignore the 12/24-bit wrap.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::header::{MpHeader, SeqFormat};

/// Where the unwrapped line starts: far enough from 0 that unwrapping never saturates.
const BASE: u64 = 1 << 32;

/// Limits of what the reassembler holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Fragments held at most.
    pub max_fragments: usize,
    /// Bytes of fragment data held at most.
    pub max_bytes: usize,
    /// Largest packet delivered (our MRRU); larger reassemblies are discarded.
    pub mrru: usize,
    /// How long the oldest gap may block delivery before it is given up.
    pub max_wait: Duration,
    /// The number of the peer's first fragment (Linux, so pppd, starts at 0).
    pub first_seq: u32,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_fragments: 256,
            max_bytes: 256 * 1024,
            mrru: 1500,
            max_wait: Duration::from_secs(2),
            first_seq: 0,
        }
    }
}

/// What happened to the fragments, for the bundle's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Fragments received.
    pub fragments: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Sequence numbers that never arrived (declared lost below M or after `max_wait`).
    pub lost: u64,
    /// Received fragments thrown away: parts of packets with a lost fragment, beginnings
    /// without an end, oversize packets, evictions.
    pub discarded: u64,
    /// Of `discarded`: the oldest fragments dropped to keep within the memory limits.
    pub evicted: u64,
    /// Fragments whose number was already held or already dealt with (delivered, lost).
    pub duplicates: u64,
}

#[derive(Debug)]
struct Fragment {
    begin: bool,
    end: bool,
    data: Vec<u8>,
}

/// The reassembler of one bundle. `K` names the member links (the caller's ids).
#[derive(Debug)]
pub struct Reassembler<K> {
    cfg: ReassemblyConfig,
    format: SeqFormat,
    /// Members and the most recent (unwrapped) number received on each.
    members: Vec<(K, Option<u64>)>,
    frags: BTreeMap<u64, Fragment>,
    bytes: usize,
    /// Highest unwrapped number seen: the reference for unwrapping (`None` before the first
    /// fragment, which is unwrapped near `next`, the expected first number).
    highest: Option<u64>,
    /// Everything below is delivered or given up.
    next: u64,
    /// Something was delivered or given up: `next` is no longer only an expectation.
    started: bool,
    /// Since when delivery has been blocked by the head of the queue.
    stalled_since: Option<Instant>,
    out: VecDeque<Vec<u8>>,
    stats: ReassemblyStats,
}

impl<K: Copy + Eq> Reassembler<K> {
    /// An empty reassembler for fragments in `format` (the receive direction's).
    pub fn new(format: SeqFormat, cfg: ReassemblyConfig) -> Self {
        Reassembler {
            cfg,
            format,
            members: Vec::new(),
            frags: BTreeMap::new(),
            bytes: 0,
            highest: None,
            next: BASE + u64::from(cfg.first_seq & format.mask()),
            started: false,
            stalled_since: None,
            out: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// A member link joins; until it receives, it holds M back.
    pub fn add_member(&mut self, member: K) {
        if !self.members.iter().any(|(k, _)| *k == member) {
            self.members.push((member, None));
        }
    }

    /// A member link leaves: it no longer holds M back, so whatever was in flight on it
    /// is now known lost (at most the packets it carried fragments of).
    pub fn remove_member(&mut self, member: K, now: Instant) {
        self.members.retain(|(k, _)| *k != member);
        self.deliver(now);
    }

    /// Start over, as for a new bundle (whose numbers start again): everything held is
    /// discarded; packets not yet polled and the counters stay.
    pub fn reset(&mut self) {
        let held = self.frags.len() as u64;
        self.stats.discarded += held;
        self.frags.clear();
        self.bytes = 0;
        self.members.clear();
        self.highest = None;
        self.next = BASE + u64::from(self.cfg.first_seq & self.format.mask());
        self.started = false;
        self.stalled_since = None;
    }

    /// Member links known.
    pub fn members(&self) -> impl Iterator<Item = K> + '_ {
        self.members.iter().map(|(k, _)| *k)
    }

    /// One fragment (header and data) received on `member` (added if unknown).
    pub fn push(&mut self, member: K, header: MpHeader, data: &[u8], now: Instant) {
        self.stats.fragments += 1;
        // Later numbers are read relative to the highest so far, not to the expectation: a
        // peer that starts half the circle away from it must not be split over two laps.
        let seq = self
            .format
            .unwrap(self.highest.unwrap_or(self.next), header.seq);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        match self.members.iter_mut().find(|(k, _)| *k == member) {
            Some((_, last)) => *last = Some(last.map_or(seq, |l| l.max(seq))),
            None => self.members.push((member, Some(seq))),
        }
        if (self.started && seq < self.next) || self.frags.contains_key(&seq) {
            self.stats.duplicates += 1;
        } else {
            self.bytes += data.len();
            self.frags.insert(
                seq,
                Fragment {
                    begin: header.begin,
                    end: header.end,
                    data: data.to_vec(),
                },
            );
            self.enforce_limits();
        }
        self.deliver(now);
    }

    /// Next reassembled packet (its PPP protocol field first), in sequence order. Drain
    /// these after each [`Reassembler::push`]: they are not bounded here.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`Reassembler::handle_timeout`] must run: the blocked head's `max_wait` is up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.stalled_since.map(|t| t + self.cfg.max_wait)
    }

    /// Give up the gap (or the incomplete packet) that has blocked delivery for `max_wait`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        if let Some((&head, _)) = self.frags.first_key_value() {
            if !self.started {
                // A member never received: start from what we have.
                self.next = head;
                self.started = true;
                self.stalled_since = None;
                return self.deliver(now);
            }
            if head > self.next {
                self.give_up_below(head);
            } else {
                // An incomplete packet at the head: drop it up to its missing fragment.
                let mut s = head;
                while self.frags.get(&(s + 1)).is_some_and(|f| !f.begin) {
                    s += 1;
                }
                self.give_up_below(s + 1);
            }
        }
        self.stalled_since = None;
        self.deliver(now);
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Fragments held now.
    pub fn held_fragments(&self) -> usize {
        self.frags.len()
    }

    /// Bytes of fragment data held now.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// M: the smallest of the members' most recent numbers; `None` while a member has
    /// received nothing. With no members left nothing more can come: everything missing
    /// is lost (M is infinite).
    fn floor(&self) -> Option<u64> {
        self.members
            .iter()
            .map(|(_, last)| *last)
            .try_fold(u64::MAX, |m, l| l.map(|l| m.min(l)))
    }

    /// Everything below `seq` is done: held fragments below it are discarded, numbers
    /// below it that never came are lost.
    fn give_up_below(&mut self, seq: u64) {
        if !self.started {
            // Before the start is known nothing counts as lost: begin at the lowest held.
            let low = self.frags.first_key_value().map_or(seq, |(&h, _)| h);
            self.next = low.min(seq);
            self.started = true;
        }
        let next = self.next;
        if seq <= next {
            return;
        }
        let held = self.frags.range(next..seq).count() as u64;
        self.stats.lost += (seq - next) - held;
        self.discard_below(seq);
        self.next = seq;
        self.started = true;
    }

    fn discard_below(&mut self, seq: u64) {
        while let Some(entry) = self.frags.first_entry() {
            if *entry.key() >= seq {
                break;
            }
            let f = entry.remove();
            self.bytes -= f.data.len();
            self.stats.discarded += 1;
        }
    }

    /// Drop the oldest fragments until within the limits.
    fn enforce_limits(&mut self) {
        while self.frags.len() > self.cfg.max_fragments || self.bytes > self.cfg.max_bytes {
            let Some((&oldest, _)) = self.frags.first_key_value() else {
                break;
            };
            let before = self.stats.discarded;
            self.give_up_below(oldest + 1);
            self.stats.evicted += self.stats.discarded - before;
        }
    }

    /// Deliver every packet that is complete and next in order; give up what M says is
    /// lost; note whether the head is left blocked.
    fn deliver(&mut self, now: Instant) {
        let floor = self.floor();
        let start = (self.next, self.started);
        let blocked = loop {
            let Some((&head, first)) = self.frags.first_key_value() else {
                break false;
            };
            if !self.started {
                if floor.is_some_and(|m| head <= m) {
                    // Every member is past the head: nothing lower can still come.
                    self.next = head;
                } else if !(head == self.next && first.begin) {
                    // Not the expected first packet, and a lower number may still come.
                    break true;
                }
            }
            let next = self.next;
            if head > next {
                // A gap at `next`: lost if M has passed it, else it may still come.
                match floor {
                    Some(m) if next < m => {
                        self.give_up_below(head.min(m.saturating_add(1)));
                        continue;
                    }
                    _ => break true,
                }
            }
            if !first.begin {
                // The middle of a packet whose beginning is gone.
                self.give_up_below(head + 1);
                continue;
            }
            // A run of consecutive fragments from the B bit on.
            let mut s = head;
            let complete = loop {
                if self.frags.get(&s).is_some_and(|f| f.end) {
                    break Some(true);
                }
                match self.frags.get(&(s + 1)) {
                    // A new beginning before an end: this packet lost its end.
                    Some(f) if f.begin => break Some(false),
                    Some(_) => s += 1,
                    // The next fragment is missing: lost if M has passed it.
                    None if floor.is_some_and(|m| s + 1 < m) => break Some(false),
                    None => break None,
                }
            };
            match complete {
                Some(true) => self.take_packet(head, s),
                Some(false) => self.give_up_below(s + 1),
                None => break true,
            }
        };
        // The stall clock runs from the last progress while something waits.
        if !blocked {
            self.stalled_since = None;
        } else if (self.next, self.started) != start || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
    }

    /// Join fragments `first..=last` (complete, consecutive) into a packet.
    fn take_packet(&mut self, first: u64, last: u64) {
        let len: usize = self
            .frags
            .range(first..=last)
            .map(|(_, f)| f.data.len())
            .sum();
        let mut packet = Vec::with_capacity(len);
        for seq in first..=last {
            if let Some(f) = self.frags.remove(&seq) {
                self.bytes -= f.data.len();
                packet.extend_from_slice(&f.data);
            }
        }
        self.next = last + 1;
        self.started = true;
        if packet.len() > self.cfg.mrru {
            self.stats.discarded += last - first + 1;
        } else {
            self.stats.delivered += 1;
            self.out.push_back(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u8 = 1;
    const B: u8 = 2;

    fn frag(seq: u32, flags: &str) -> MpHeader {
        MpHeader {
            begin: flags.contains('B'),
            end: flags.contains('E'),
            seq,
        }
    }

    struct T {
        r: Reassembler<u8>,
        now: Instant,
    }

    impl T {
        fn new(format: SeqFormat, members: &[u8]) -> T {
            T::with(format, members, ReassemblyConfig::default())
        }

        fn with(format: SeqFormat, members: &[u8], cfg: ReassemblyConfig) -> T {
            let mut r = Reassembler::new(format, cfg);
            for m in members {
                r.add_member(*m);
            }
            T {
                r,
                now: Instant::now(),
            }
        }

        /// Push and return what came out.
        fn push(&mut self, member: u8, seq: u32, flags: &str, data: &[u8]) -> Vec<Vec<u8>> {
            self.r.push(member, frag(seq, flags), data, self.now);
            std::iter::from_fn(|| self.r.poll_packet()).collect()
        }
    }

    #[test]
    fn fragments_on_one_link_are_joined() {
        let mut t = T::new(SeqFormat::Long, &[A]);
        assert!(t.push(A, 7, "B", b"ab").is_empty());
        assert!(t.push(A, 8, "", b"cd").is_empty());
        assert_eq!(t.push(A, 9, "E", b"e"), [b"abcde".to_vec()]);
        assert_eq!(t.push(A, 10, "BE", b"x"), [b"x".to_vec()]);
        assert_eq!(t.r.stats().delivered, 2);
        assert_eq!((t.r.held_fragments(), t.r.held_bytes()), (0, 0));
    }

    #[test]
    fn order_across_links_is_restored() {
        let mut t = T::new(SeqFormat::Long, &[A, B]);
        // Packet 1 = 0,1 (0 on A, 1 on B, the slower link); packets 2 and 3 on A.
        assert!(t.push(A, 0, "B", b"p1a").is_empty());
        assert!(
            t.push(A, 2, "BE", b"p2").is_empty(),
            "packet 2 must wait for packet 1"
        );
        assert!(
            t.push(A, 3, "BE", b"p3").is_empty(),
            "1 may still come on B"
        );
        let out = t.push(B, 1, "E", b"p1b");
        assert_eq!(out, [b"p1ap1b".to_vec(), b"p2".to_vec(), b"p3".to_vec()]);
        assert_eq!(t.push(B, 4, "BE", b"p4"), [b"p4".to_vec()]);
    }

    #[test]
    fn a_gap_below_m_is_lost_and_only_its_packet_goes() {
        let mut t = T::new(SeqFormat::Long, &[A, B]);
        // 0 is the expected first number (Linux's): delivered at once.
        assert_eq!(t.push(A, 0, "BE", b"p0"), [b"p0".to_vec()]);
        assert!(t.push(B, 1, "B", b"p1a").is_empty());
        // 2 (p1's end, sent on A) is lost on the line; A goes on with 3.
        assert!(t.push(A, 3, "BE", b"p3").is_empty(), "B may still bring 2");
        // B's next fragment is 4: now M = 3 and 2 is below it.
        let out = t.push(B, 4, "BE", b"p4");
        assert_eq!(out, [b"p3".to_vec(), b"p4".to_vec()]);
        let s = t.r.stats();
        assert_eq!((s.lost, s.discarded, s.delivered), (1, 1, 3));
    }

    #[test]
    fn another_start_waits_until_every_member_received() {
        let mut t = T::new(SeqFormat::Short, &[A, B]);
        // The peer starts at 4094, not 0: a lower number may still come on B.
        assert!(t.push(A, 4095, "BE", b"p1").is_empty());
        assert!(t.push(A, 1, "BE", b"p3").is_empty());
        let out = t.push(B, 4094, "BE", b"p0");
        assert_eq!(out, [b"p0".to_vec(), b"p1".to_vec()]);
        // 0 (p2) is missing but B may still bring it; then B's next is 2: 0 is lost.
        assert_eq!(t.push(B, 2, "BE", b"p4"), [b"p3".to_vec(), b"p4".to_vec()]);
        let s = t.r.stats();
        assert_eq!((s.lost, s.delivered), (1, 4));
    }

    #[test]
    fn a_start_half_the_circle_from_the_expected_stays_on_one_lap() {
        // Expected 0, the peer starts near 2047 (12 bits: half the circle away). The first
        // number to arrive must not put the next ones on another lap.
        let mut t = T::new(SeqFormat::Short, &[A, B]);
        assert!(t.push(B, 2048, "", b"b").is_empty());
        assert!(t.push(A, 2047, "B", b"a").is_empty());
        assert_eq!(t.push(A, 2049, "E", b"c"), [b"abc".to_vec()]);
        assert_eq!(t.push(B, 2050, "BE", b"d"), [b"d".to_vec()]);
        let s = t.r.stats();
        assert_eq!((s.lost, s.discarded), (0, 0));
    }

    #[test]
    fn broken_packets_are_discarded() {
        let mut t = T::new(SeqFormat::Long, &[A]);
        // A beginning without an end, then a middle without a beginning.
        assert!(t.push(A, 0, "B", b"x").is_empty());
        assert_eq!(t.push(A, 1, "BE", b"ok"), [b"ok".to_vec()]);
        assert!(t.push(A, 3, "", b"y").is_empty());
        assert_eq!(t.push(A, 4, "BE", b"ok2"), [b"ok2".to_vec()]);
        let s = t.r.stats();
        assert_eq!((s.lost, s.discarded, s.delivered), (1, 2, 2));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut t = T::new(SeqFormat::Long, &[A, B]);
        t.push(A, 0, "B", b"a");
        t.push(B, 0, "B", b"a");
        assert_eq!(t.push(A, 1, "E", b"b"), [b"ab".to_vec()]);
        assert!(t.push(B, 1, "E", b"b").is_empty());
        assert_eq!(t.r.stats().duplicates, 2);
    }

    #[test]
    fn sequence_numbers_wrap() {
        for format in [SeqFormat::Short, SeqFormat::Long] {
            let top = format.mask();
            let mut t = T::new(format, &[A, B]);
            assert!(t.push(A, top - 1, "B", b"1").is_empty());
            assert!(t.push(A, 0, "", b"3").is_empty());
            assert!(t.push(B, top, "", b"2").is_empty());
            assert_eq!(t.push(B, 1, "E", b"4"), [b"1234".to_vec()], "{format:?}");
            // Many more laps: numbers keep counting up through several wraps.
            let mut seq = 2;
            for i in 0..3 * 4096 {
                let m = if i % 2 == 0 { A } else { B };
                assert_eq!(t.push(m, seq, "BE", b"z").len(), 1);
                seq = format.add(seq, 1);
            }
        }
    }

    #[test]
    fn a_new_member_holds_m_until_it_receives() {
        let mut t = T::new(SeqFormat::Long, &[A]);
        assert_eq!(t.push(A, 0, "BE", b"p0"), [b"p0".to_vec()]);
        t.r.add_member(B);
        // 1 went on the new link B; A goes on with 2, 3.
        assert!(t.push(A, 2, "BE", b"p2").is_empty());
        assert!(t.push(A, 3, "BE", b"p3").is_empty());
        let out = t.push(B, 1, "BE", b"p1");
        assert_eq!(out.len(), 3);
        assert_eq!(t.r.stats().lost, 0);
    }

    #[test]
    fn a_member_leaving_mid_packet_loses_only_that_packet() {
        let mut t = T::new(SeqFormat::Long, &[A, B]);
        assert!(t.push(A, 0, "B", b"p0a").is_empty());
        // 1 (p0's middle) was in flight on B when B went down.
        assert!(t.push(A, 2, "E", b"p0c").is_empty());
        assert!(t.push(A, 3, "BE", b"p3").is_empty());
        t.r.remove_member(B, t.now);
        let out: Vec<_> = std::iter::from_fn(|| t.r.poll_packet()).collect();
        assert_eq!(out, [b"p3".to_vec()]);
        let s = t.r.stats();
        assert_eq!((s.lost, s.discarded), (1, 2));
        assert_eq!(t.r.members().collect::<Vec<_>>(), [A]);
        // The last member leaving: what is held can never complete.
        assert!(t.push(A, 4, "B", b"p4").is_empty());
        t.r.remove_member(A, t.now);
        assert_eq!((t.r.held_fragments(), t.r.poll_timeout()), (0, None));
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let cfg = ReassemblyConfig {
            max_fragments: 4,
            max_bytes: 100,
            ..ReassemblyConfig::default()
        };
        let mut t = T::with(SeqFormat::Long, &[A, B], cfg);
        // B never receives: nothing can be declared lost, so fragments pile up.
        t.push(A, 0, "BE", b"held");
        for seq in 1..10 {
            t.push(A, seq * 2, "B", &[0; 10]);
            assert!(t.r.held_fragments() <= 4);
        }
        assert!(t.r.stats().evicted > 0);
        // A big one pushes out by bytes.
        t.push(A, 100, "B", &[0; 95]);
        assert!(t.r.held_bytes() <= 100);
        assert_eq!(t.r.held_fragments(), 1);
    }

    #[test]
    fn a_blocked_head_is_given_up_after_max_wait() {
        let mut t = T::new(SeqFormat::Long, &[A, B]);
        // B is silent and the peer did not start at 0: the start is unknown, 10 waits.
        assert!(t.push(A, 10, "BE", b"p0").is_empty());
        let due = t.r.poll_timeout().expect("a deadline while blocked");
        assert_eq!(due, t.now + Duration::from_secs(2));
        t.r.handle_timeout(due);
        assert_eq!(t.r.poll_packet(), Some(b"p0".to_vec()));
        assert_eq!(t.r.stats().lost, 0, "numbers before the start are not lost");
        // A gap at 11 that B never fills: given up after max_wait, 12 is delivered.
        t.now = due;
        assert!(t.push(A, 12, "BE", b"p2").is_empty());
        let due = t.r.poll_timeout().unwrap();
        t.r.handle_timeout(due - Duration::from_millis(1));
        assert_eq!(t.r.poll_packet(), None, "not before the deadline");
        t.r.handle_timeout(due);
        assert_eq!(t.r.poll_packet(), Some(b"p2".to_vec()));
        assert_eq!(t.r.poll_timeout(), None);
        assert_eq!(t.r.stats().lost, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            member: u8,
            step: i8,
            begin: bool,
            end: bool,
            len: usize,
        },
        Add(u8),
        Remove(u8),
        Wait(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            8 => (0u8..4, -3i8..6, any::<bool>(), any::<bool>(), 0usize..200)
                .prop_map(|(member, step, begin, end, len)| {
                    Op::Push { member, step, begin, end, len }
                }),
            1 => (0u8..4).prop_map(Op::Add),
            1 => (0u8..4).prop_map(Op::Remove),
            1 => (0u64..1500).prop_map(Op::Wait),
        ]
    }

    proptest::proptest! {
        /// Arbitrary fragments, members coming and going, time passing, small limits (the
        /// fuzz target's checks): bounds kept, counters consistent, nothing held at the end.
        #[test]
        fn arbitrary_input_keeps_the_bounds(
            ops in proptest::collection::vec(op(), 0..300),
            short: bool,
            max_fragments in 1usize..12,
            max_bytes in 50usize..2000,
        ) {
            let format = SeqFormat::new(short);
            let cfg = ReassemblyConfig {
                max_fragments,
                max_bytes,
                mrru: 300,
                max_wait: Duration::from_millis(500),
                ..ReassemblyConfig::default()
            };
            let mut r = Reassembler::new(format, cfg);
            let mut now = Instant::now();
            let mut seq = format.mask() - 20;
            let mut delivered = 0;
            for op in ops {
                match op {
                    Op::Push { member, step, begin, end, len } => {
                        seq = format.add(seq, step as u32);
                        r.push(member, MpHeader { begin, end, seq }, &vec![7; len], now);
                    }
                    Op::Add(m) => r.add_member(m),
                    Op::Remove(m) => r.remove_member(m, now),
                    Op::Wait(ms) => {
                        now += Duration::from_millis(ms);
                        r.handle_timeout(now);
                    }
                }
                proptest::prop_assert!(r.held_fragments() <= max_fragments);
                proptest::prop_assert!(r.held_bytes() <= max_bytes);
                proptest::prop_assert!(r.poll_timeout().is_none() || r.held_fragments() > 0);
                while let Some(p) = r.poll_packet() {
                    proptest::prop_assert!(p.len() <= 300);
                    delivered += 1;
                }
                let s = r.stats();
                proptest::prop_assert_eq!(s.delivered, delivered);
                proptest::prop_assert!(s.delivered + s.discarded + s.duplicates <= s.fragments);
            }
            let members: Vec<u8> = r.members().collect();
            for m in members {
                r.remove_member(m, now);
            }
            proptest::prop_assert_eq!((r.held_fragments(), r.held_bytes()), (0, 0));
            proptest::prop_assert_eq!(r.poll_timeout(), None);
        }
    }

    #[test]
    fn oversize_packets_are_discarded() {
        let cfg = ReassemblyConfig {
            mrru: 4,
            ..ReassemblyConfig::default()
        };
        let mut t = T::with(SeqFormat::Long, &[A], cfg);
        t.push(A, 0, "B", b"abc");
        assert!(t.push(A, 1, "E", b"de").is_empty());
        assert_eq!(t.push(A, 2, "BE", b"abcd"), [b"abcd".to_vec()]);
        assert_eq!(t.r.stats().discarded, 2);
    }
}
