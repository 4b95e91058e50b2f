//! Property tests of the transmit scheduler and the reassembler together: packets split
//! over simulated member links with their own rates and delays (FIFO each, so fragments
//! reorder across links only), loss, duplication and a link leaving mid-stream. Whatever
//! happens, the receiver delivers sent packets intact and in order, never a corrupted or
//! reordered one; a packet that does not arrive had a fragment lost; memory stays bounded.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::header::{MpHeader, SeqFormat};
use super::reassembly::{Reassembler, ReassemblyConfig};
use super::scheduler::{LinkState, SchedulerConfig, schedule};

#[derive(Debug, Clone)]
struct SimLink {
    /// Bytes per second.
    rate: u64,
    delay_ms: u64,
    jitter_ms: u64,
    loss_pct: u32,
    dup_pct: u32,
    mru: u16,
}

#[derive(Debug, Clone)]
struct Scenario {
    links: Vec<SimLink>,
    /// Packet lengths (at least 4: the packet's number goes first).
    packets: Vec<usize>,
    /// Pacing: the sender offers this fraction of the links' capacity, in percent.
    load_pct: u64,
    short: bool,
    /// Link `.0` leaves when packet `.1` is sent.
    leave: Option<(usize, usize)>,
    /// Small reassembly limits (evictions expected).
    tight: bool,
    seed: u64,
}

fn link() -> impl Strategy<Value = SimLink> {
    (
        1_000u64..200_000,
        0u64..300,
        0u64..50,
        prop_oneof![Just(0u32), 1u32..15],
        prop_oneof![Just(0u32), 1u32..10],
        prop_oneof![Just(1500u16), 296u16..1500],
    )
        .prop_map(
            |(rate, delay_ms, jitter_ms, loss_pct, dup_pct, mru)| SimLink {
                rate,
                delay_ms,
                jitter_ms,
                loss_pct,
                dup_pct,
                mru,
            },
        )
}

fn scenario(lossless: bool) -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(link(), 1..=4),
        proptest::collection::vec(prop_oneof![4usize..300, 300usize..=1500], 1..120),
        20u64..150,
        any::<bool>(),
        proptest::option::of((0usize..4, 0usize..120)),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            move |(mut links, packets, load_pct, short, leave, tight, seed)| {
                if lossless {
                    for l in &mut links {
                        l.loss_pct = 0;
                        l.dup_pct = 0;
                    }
                }
                let leave = leave
                    .filter(|_| !lossless)
                    .map(|(l, p)| (l % links.len(), p % packets.len()));
                Scenario {
                    links,
                    packets,
                    load_pct,
                    short,
                    leave,
                    tight: tight && !lossless,
                    seed,
                }
            },
        )
}

fn packet(n: usize, len: usize) -> Vec<u8> {
    let mut p = (n as u32).to_be_bytes().to_vec();
    p.extend((4..len).map(|i| (i as u8) ^ (n as u8).wrapping_mul(31)));
    p
}

/// One fragment on the wire.
struct Arrival {
    at: Duration,
    link: usize,
    /// Order of sending on its link (FIFO tie-break).
    order: u64,
    header: MpHeader,
    data: Vec<u8>,
    packet: usize,
}

fn run(s: &Scenario) -> Result<(), TestCaseError> {
    let mut rng = fastrand::Rng::with_seed(s.seed);
    let format = SeqFormat::new(s.short);
    let first_seq = rng.u32(..) & format.mask();
    // The receiver expects the sender's first number (as with Linux's 0), or not.
    let expected = if rng.bool() { first_seq } else { 0 };
    let cfg = if s.tight {
        ReassemblyConfig {
            max_fragments: 8,
            max_bytes: 3000,
            mrru: 1500,
            max_wait: Duration::from_millis(500),
            first_seq: expected,
        }
    } else {
        ReassemblyConfig {
            max_fragments: 4096,
            max_bytes: 1 << 24,
            mrru: 1500,
            // Only the final drain may give up a gap: everything in flight lands before.
            max_wait: Duration::from_secs(3600),
            first_seq: expected,
        }
    };
    let capacity: u64 = s.links.iter().map(|l| l.rate).sum();

    // ---- the sender ----
    let mut busy_until = vec![Duration::ZERO; s.links.len()];
    let mut last_arrival = vec![Duration::ZERO; s.links.len()];
    let mut order = 0u64;
    let mut arrivals = Vec::new();
    // Packets with a fragment that never arrived (line loss, or its link left).
    let mut damaged = vec![false; s.packets.len()];
    let mut now = Duration::ZERO;
    let mut seq = first_seq;
    let mut gone: Option<(usize, Duration)> = None;
    for (n, &len) in s.packets.iter().enumerate() {
        if let Some((l, at)) = s.leave
            && at == n
        {
            gone = Some((l, now));
        }
        let states: Vec<LinkState<usize>> = s
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| LinkState {
                id: i,
                rate: l.rate,
                queued: (busy_until[i].saturating_sub(now).as_secs_f64() * l.rate as f64) as usize,
                mru: l.mru,
                up: gone.is_none_or(|(g, _)| g != i),
            })
            .collect();
        let data = packet(n, len);
        let Ok(plan) = schedule(&SchedulerConfig::default(), format, len, seq, &states) else {
            // The only link left: nothing can be sent any more.
            damaged[n] = true;
            continue;
        };
        seq = format.add(seq, plan.len() as u32);
        for f in plan {
            let l = &s.links[f.link];
            prop_assert!(f.range.len() + format.header_len() <= usize::from(l.mru));
            let bytes = (f.range.len() + format.header_len() + 8) as f64;
            let start = busy_until[f.link].max(now);
            busy_until[f.link] = start + Duration::from_secs_f64(bytes / l.rate as f64);
            let jitter = Duration::from_millis(rng.u64(0..=l.jitter_ms));
            let at = (busy_until[f.link] + Duration::from_millis(l.delay_ms) + jitter)
                .max(last_arrival[f.link]);
            last_arrival[f.link] = at;
            let copies = if rng.u32(0..100) < l.dup_pct { 2 } else { 1 };
            let mut arrived = false;
            for _ in 0..copies {
                let lost_on_line = rng.u32(0..100) < l.loss_pct;
                let cut = gone.is_some_and(|(g, _)| g == f.link);
                if lost_on_line || cut {
                    continue;
                }
                arrived = true;
                order += 1;
                arrivals.push(Arrival {
                    at,
                    link: f.link,
                    order,
                    header: f.header,
                    data: data[f.range.clone()].to_vec(),
                    packet: n,
                });
            }
            damaged[n] |= !arrived;
        }
        let gap = len as f64 / capacity as f64 * 100.0 / s.load_pct as f64;
        now += Duration::from_secs_f64(gap);
    }
    // The link that leaves: what was still on its way when it went is lost.
    if let Some((l, at)) = gone {
        arrivals.retain(|a| {
            let keep = a.link != l || a.at <= at;
            damaged[a.packet] |= !keep;
            keep
        });
    }
    arrivals.sort_by_key(|a| (a.at, a.link, a.order));

    // ---- the receiver ----
    let epoch = Instant::now();
    let mut r = Reassembler::new(format, cfg);
    for i in 0..s.links.len() {
        r.add_member(i);
    }
    let mut delivered: Vec<usize> = Vec::new();
    let check = |r: &mut Reassembler<usize>, delivered: &mut Vec<usize>| {
        prop_assert!(r.held_fragments() <= cfg.max_fragments);
        prop_assert!(r.held_bytes() <= cfg.max_bytes);
        while let Some(p) = r.poll_packet() {
            let id = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
            prop_assert!(id < s.packets.len(), "unknown packet {}", id);
            prop_assert_eq!(&p, &packet(id, s.packets[id]), "packet {} corrupted", id);
            prop_assert!(
                delivered.last().is_none_or(|&last| id > last),
                "packet {} after {:?}",
                id,
                delivered.last()
            );
            delivered.push(id);
        }
        Ok(())
    };
    let mut removed = false;
    for a in &arrivals {
        while let Some(t) = r.poll_timeout().filter(|&t| t <= epoch + a.at) {
            r.handle_timeout(t);
            check(&mut r, &mut delivered)?;
        }
        if let Some((l, at)) = gone
            && !removed
            && at <= a.at
        {
            r.remove_member(l, epoch + at);
            removed = true;
            check(&mut r, &mut delivered)?;
        }
        r.push(a.link, a.header, &a.data, epoch + a.at);
        check(&mut r, &mut delivered)?;
    }
    if let Some((l, at)) = gone.filter(|_| !removed) {
        r.remove_member(l, epoch + at);
    }
    // The line goes quiet: whatever still waits is given up in bounded time.
    for _ in 0..10_000 {
        let Some(t) = r.poll_timeout() else { break };
        r.handle_timeout(t);
        check(&mut r, &mut delivered)?;
    }
    prop_assert_eq!(r.poll_timeout(), None);
    prop_assert_eq!(r.held_fragments(), 0);
    prop_assert_eq!(r.stats().delivered, delivered.len() as u64);

    if !s.tight {
        for (n, &d) in damaged.iter().enumerate() {
            if !d {
                prop_assert!(delivered.contains(&n), "intact packet {} not delivered", n);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No loss: every packet arrives, intact and in order.
    #[test]
    fn lossless_links_deliver_everything(s in scenario(true)) {
        run(&s)?;
    }

    /// Loss, duplication, a link leaving, small memory limits: never a wrong packet, and
    /// without evictions every packet whose fragments all arrived is delivered.
    #[test]
    fn lossy_links_deliver_intact_packets_in_order(s in scenario(false)) {
        run(&s)?;
    }
}
