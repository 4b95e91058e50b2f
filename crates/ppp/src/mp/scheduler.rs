//! Transmit side of Multilink: how to split one packet over the member links.
//!
//! The aim is that every link finishes its part at the same moment, so the receiver gets
//! the whole packet as early as the links allow and its reassembly waits least. A link
//! with `queued` bytes waiting at `rate` bytes/s finishes a share `s` at
//! `(queued + s) / rate`; water-filling finds the finish time `T` for which the shares
//! `max(0, rate·T − queued)` add up to the packet, so a busy link gets less and a link
//! whose queue alone runs past `T` gets nothing. Small packets (below
//! [`SchedulerConfig::whole_below`]) and splits that would leave a share below
//! [`SchedulerConfig::min_fragment`] use fewer links, down to one: the fragment headers
//! and the reassembly wait are not worth it for a few bytes. A packet sent whole still has
//! an MP header (B and E set) and takes one sequence number, so the order is kept.
//!
//! A share larger than its link's MRU (minus the MP header) becomes several fragments on
//! that link, with consecutive numbers; links are FIFO, so they arrive in order.

use std::ops::Range;

use thiserror::Error;

use super::header::{MpHeader, SeqFormat};

/// What the scheduler knows of one member link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkState<K> {
    /// The caller's id of the link.
    pub id: K,
    /// Estimated sending rate in bytes per second (0: unusable).
    pub rate: u64,
    /// Bytes already waiting to go out on the link.
    pub queued: usize,
    /// The peer's MRU on this link: a fragment's MP header and data must fit.
    pub mru: u16,
    /// The link can carry traffic now.
    pub up: bool,
}

/// Tuning of the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Packets shorter than this go whole on one link.
    pub whole_below: usize,
    /// No fragment of a split is made smaller than this (fewer links are used instead).
    pub min_fragment: usize,
    /// With `Some(b)`, a link with more than `b` bytes queued is busy: packets are split only
    /// over the links that are not, and go whole on the first link to finish when every link
    /// is busy (as Linux's `ppp_mp_explode` splits only over free channels). A bundle that
    /// keeps its links busy gains nothing from splitting but pays a fragment's header and
    /// framing per share: about 3 % of a full packet over 4 links. `None`: always split.
    pub busy_above: Option<usize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            whole_below: 256,
            min_fragment: 64,
            busy_above: None,
        }
    }
}

/// Why a packet cannot be scheduled.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleError {
    /// No link is up with a non-zero rate.
    #[error("no member link can carry traffic")]
    NoLink,
}

/// One fragment to send: on `link`, with `header`, carrying `packet[range]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<K> {
    /// The link to send it on.
    pub link: K,
    /// Its MP header.
    pub header: MpHeader,
    /// The bytes of the packet it carries.
    pub range: Range<usize>,
}

/// Split a packet of `len` bytes (its PPP protocol field included) over `links`, numbering
/// the fragments from `first_seq` on in `format`. The fragments come in sequence order;
/// the caller's counter moves on by their number.
pub fn schedule<K: Copy>(
    cfg: &SchedulerConfig,
    format: SeqFormat,
    len: usize,
    first_seq: u32,
    links: &[LinkState<K>],
) -> Result<Vec<Planned<K>>, ScheduleError> {
    let usable: Vec<&LinkState<K>> = links.iter().filter(|l| l.up && l.rate > 0).collect();
    if usable.is_empty() {
        return Err(ScheduleError::NoLink);
    }
    let free = |l: &&LinkState<K>| cfg.busy_above.is_none_or(|b| l.queued <= b);
    let shares = if len < cfg.whole_below || usable.len() == 1 || !usable.iter().any(free) {
        whole(&usable, len)
    } else if usable.iter().all(free) {
        split(cfg, &usable, len)
    } else {
        // Busy links sit this one out (a share of zero).
        let mut allowed: Vec<bool> = usable.iter().map(free).collect();
        split_over(cfg, &usable, &mut allowed, len)
    };
    // Shares in the order the links start on this packet (earliest free first), so the
    // lower numbers are the ones sent first.
    let mut order: Vec<usize> = (0..usable.len()).filter(|&i| shares[i] > 0).collect();
    order.sort_by(|&a, &b| free_at(usable[a]).total_cmp(&free_at(usable[b])));
    if order.is_empty() {
        // Only for an empty packet: one empty fragment on the first link to be free.
        order = first_free(&usable).into_iter().collect();
    }
    let mut out = Vec::new();
    let mut at = 0;
    let mut seq = first_seq;
    for i in order {
        let link = usable[i];
        let max = usize::from(link.mru)
            .saturating_sub(format.header_len())
            .max(1);
        let end = at + shares[i];
        loop {
            let stop = end.min(at + max);
            out.push(Planned {
                link: link.id,
                header: MpHeader {
                    begin: at == 0,
                    end: false,
                    seq,
                },
                range: at..stop,
            });
            seq = format.add(seq, 1);
            at = stop;
            if at >= end {
                break;
            }
        }
    }
    if let Some(last) = out.last_mut() {
        last.header.end = true;
    }
    Ok(out)
}

/// When a link will have sent what it has queued.
fn free_at<K>(l: &LinkState<K>) -> f64 {
    l.queued as f64 / l.rate as f64
}

fn first_free<K>(links: &[&LinkState<K>]) -> Option<usize> {
    (0..links.len()).min_by(|&a, &b| free_at(links[a]).total_cmp(&free_at(links[b])))
}

/// The whole packet on the link that would finish it first.
fn whole<K>(links: &[&LinkState<K>], len: usize) -> Vec<usize> {
    let finish = |l: &LinkState<K>| (l.queued + len) as f64 / l.rate as f64;
    let best = (0..links.len()).min_by(|&a, &b| finish(links[a]).total_cmp(&finish(links[b])));
    (0..links.len())
        .map(|i| if Some(i) == best { len } else { 0 })
        .collect()
}

/// Water-filling shares, dropping links whose share would be below the minimum fragment.
fn split<K>(cfg: &SchedulerConfig, links: &[&LinkState<K>], len: usize) -> Vec<usize> {
    split_over(cfg, links, &mut vec![true; links.len()], len)
}

/// [`split`] over the `allowed` links only.
fn split_over<K>(
    cfg: &SchedulerConfig,
    links: &[&LinkState<K>],
    allowed: &mut [bool],
    len: usize,
) -> Vec<usize> {
    loop {
        let shares = water_fill(links, allowed, len);
        let small = (0..links.len())
            .filter(|&i| shares[i] > 0 && shares[i] < cfg.min_fragment)
            .min_by_key(|&i| shares[i]);
        match small {
            Some(i) if shares.iter().filter(|&&s| s > 0).count() > 1 => allowed[i] = false,
            _ => return shares,
        }
    }
}

/// Shares of `len` over the allowed links so that all finish together, in whole bytes.
fn water_fill<K>(links: &[&LinkState<K>], allowed: &[bool], len: usize) -> Vec<usize> {
    let mut by_free: Vec<usize> = (0..links.len()).filter(|&i| allowed[i]).collect();
    by_free.sort_by(|&a, &b| free_at(links[a]).total_cmp(&free_at(links[b])));
    // Add links in the order they become free while they would start before T.
    let (mut rates, mut queued, mut t) = (0.0, 0.0, 0.0);
    let mut active = 0;
    for &i in &by_free {
        let l = links[i];
        if active > 0 && free_at(l) >= t {
            break;
        }
        rates += l.rate as f64;
        queued += l.queued as f64;
        t = (len as f64 + queued) / rates;
        active += 1;
    }
    let mut shares = vec![0; links.len()];
    let mut given = 0;
    for &i in &by_free[..active] {
        let l = links[i];
        let s = (l.rate as f64 * t - l.queued as f64).floor().max(0.0) as usize;
        let s = s.min(len - given);
        shares[i] = s;
        given += s;
    }
    // Rounding leftovers go to the fastest active link.
    if let Some(&fastest) = by_free[..active].iter().max_by_key(|&&i| links[i].rate) {
        shares[fastest] += len - given;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: u8, rate: u64, queued: usize) -> LinkState<u8> {
        LinkState {
            id,
            rate,
            queued,
            mru: 1500,
            up: true,
        }
    }

    /// Bytes per link, and a check of the invariants every schedule must keep.
    fn plan(len: usize, links: &[LinkState<u8>]) -> Vec<(u8, usize)> {
        plan_with(&SchedulerConfig::default(), len, links)
    }

    fn plan_with(cfg: &SchedulerConfig, len: usize, links: &[LinkState<u8>]) -> Vec<(u8, usize)> {
        let format = SeqFormat::Long;
        let out = schedule(cfg, format, len, 10, links).unwrap();
        let mut at = 0;
        for (n, f) in out.iter().enumerate() {
            assert_eq!(f.range.start, at, "contiguous");
            at = f.range.end;
            assert_eq!(f.header.seq, 10 + n as u32);
            assert_eq!(f.header.begin, n == 0);
            assert_eq!(f.header.end, n == out.len() - 1);
            let l = links.iter().find(|l| l.id == f.link).unwrap();
            assert!(f.range.len() + format.header_len() <= usize::from(l.mru));
            assert!(l.up && l.rate > 0);
        }
        assert_eq!(at, len);
        let mut per: Vec<(u8, usize)> = Vec::new();
        for f in out {
            match per.iter_mut().find(|(id, _)| *id == f.link) {
                Some((_, n)) => *n += f.range.len(),
                None => per.push((f.link, f.range.len())),
            }
        }
        per.sort();
        per
    }

    /// With `busy_above`, a split uses only the free links, and a packet goes whole on the
    /// first link to finish when none is free.
    #[test]
    fn busy_links_take_whole_packets() {
        let cfg = SchedulerConfig {
            busy_above: Some(0),
            ..SchedulerConfig::default()
        };
        let per_link = |links: &[LinkState<u8>]| plan_with(&cfg, 1500, links);
        // Every link busy: whole, on the one that finishes it first.
        let busy = [
            link(1, 10_000, 3000),
            link(2, 10_000, 900),
            link(3, 5_000, 100),
        ];
        assert_eq!(per_link(&busy), [(2, 1500)]);
        // Two free links share it; the busy one sits it out.
        let some_free = [link(1, 10_000, 0), link(2, 10_000, 900), link(3, 10_000, 0)];
        assert_eq!(per_link(&some_free), [(1, 750), (3, 750)]);
        // All free: the plain split.
        let free = [link(1, 10_000, 0), link(2, 10_000, 0)];
        assert_eq!(per_link(&free), [(1, 750), (2, 750)]);
    }

    #[test]
    fn equal_links_take_halves() {
        assert_eq!(
            plan(1500, &[link(1, 7000, 0), link(2, 7000, 0)]),
            [(1, 750), (2, 750)]
        );
    }

    #[test]
    fn shares_follow_the_rates() {
        // 1 Mbit/s and 256 kbit/s: 125000 and 32000 bytes/s, about 80/20.
        let per = plan(1500, &[link(1, 125_000, 0), link(2, 32_000, 0)]);
        assert_eq!(per, [(1, 1195), (2, 305)]);
    }

    #[test]
    fn a_queued_link_gets_less_or_nothing() {
        let per = plan(1500, &[link(1, 10_000, 500), link(2, 10_000, 0)]);
        assert_eq!(per, [(1, 500), (2, 1000)]);
        let per = plan(1500, &[link(1, 10_000, 5000), link(2, 10_000, 0)]);
        assert_eq!(per, [(2, 1500)]);
    }

    #[test]
    fn small_packets_go_whole_on_the_link_that_finishes_first() {
        let links = [
            link(1, 10_000, 300),
            link(2, 5_000, 0),
            link(3, 10_000, 100),
        ];
        // 100 bytes: link 2 finishes at 0.02 s, link 3 at 0.02 s too, link 1 at 0.04 s.
        assert_eq!(plan(100, &links[..2]), [(2, 100)]);
        assert_eq!(
            plan(100, &[link(1, 10_000, 300), link(3, 10_000, 100)]),
            [(3, 100)]
        );
    }

    #[test]
    fn tiny_shares_are_not_worth_a_fragment() {
        // 1 Mbit/s next to 9600 bit/s: the slow link's share of 300 bytes would be 2 bytes.
        let per = plan(300, &[link(1, 125_000, 0), link(2, 1_200, 0)]);
        assert_eq!(per, [(1, 300)]);
    }

    #[test]
    fn fragments_fit_each_links_mru() {
        let mut small = link(1, 10_000, 0);
        small.mru = 296;
        let per = plan(1500, &[small, link(2, 10_000, 0)]);
        assert_eq!(per, [(1, 750), (2, 750)]);
        // A whole packet larger than its link's MRU is cut on that link alone.
        let out = schedule(
            &SchedulerConfig::default(),
            SeqFormat::Short,
            700,
            4095,
            &[small],
        )
        .unwrap();
        let lens: Vec<_> = out.iter().map(|f| f.range.len()).collect();
        assert_eq!(lens, [294, 294, 112]);
        let seqs: Vec<_> = out.iter().map(|f| f.header.seq).collect();
        assert_eq!(seqs, [4095, 0, 1]);
    }

    #[test]
    fn down_and_zero_rate_links_get_nothing() {
        let mut down = link(1, 100_000, 0);
        down.up = false;
        let per = plan(1500, &[down, link(2, 0, 0), link(3, 1_000, 0)]);
        assert_eq!(per, [(3, 1500)]);
        assert_eq!(
            schedule(&SchedulerConfig::default(), SeqFormat::Long, 10, 0, &[down]),
            Err(ScheduleError::NoLink)
        );
    }

    proptest::proptest! {
        /// Any links, any length: contiguous cover, consecutive numbers, B on the first and
        /// E on the last, within each MRU, only usable links (checked in `plan`).
        #[test]
        fn schedules_are_well_formed(
            len in 0usize..4000,
            links in proptest::collection::vec(
                (0u64..300_000, 0usize..20_000, 128u16..=1500, proptest::bool::weighted(0.9)),
                1..6,
            ),
        ) {
            let links: Vec<_> = links
                .into_iter()
                .enumerate()
                .map(|(i, (rate, queued, mru, up))| {
                    LinkState { id: i as u8, rate, queued, mru, up }
                })
                .collect();
            if links.iter().any(|l| l.up && l.rate > 0) {
                plan(len, &links);
            } else {
                proptest::prop_assert_eq!(
                    schedule(&SchedulerConfig::default(), SeqFormat::Long, len, 0, &links),
                    Err(ScheduleError::NoLink)
                );
            }
        }
    }

    #[test]
    fn all_links_finish_together() {
        let links = [
            link(1, 50_000, 1000),
            link(2, 20_000, 100),
            link(3, 5_000, 0),
        ];
        let per = plan(3000, &links);
        let finish: Vec<f64> = per
            .iter()
            .map(|&(id, n)| {
                let l = links.iter().find(|l| l.id == id).unwrap();
                (l.queued + n) as f64 / l.rate as f64
            })
            .collect();
        for f in &finish {
            assert!((f - finish[0]).abs() < 0.002, "{finish:?}");
        }
    }
}
