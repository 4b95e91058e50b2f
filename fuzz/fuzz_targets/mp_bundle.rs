//! A Multilink bundle's network layer (`ppp::mp::BundleSession`: the bundle, its IPCP and
//! IPv4) fed arbitrary frames from several member links, with members joining and leaving,
//! arbitrary member states for sending, and the clock moving.
//!
//! Checks: no panic; every MP frame it sends fits its member's MRU and names a member that
//! can carry it; delivered IP packets fit the MRRU; events make sense (no `Up` twice
//! without a `NetworkDown` between, `send_ip` only works while up); a deadline is never
//! left in the past.
//!
//! Input: `config byte, then ops`. The config byte picks the header formats (bits 0, 1),
//! the role (bit 2: IPCP client or server) and the MRRUs (bits 3–7). Each op byte (high
//! 3 bits: what, low 2 bits: the member) feeds a frame whose protocol and content come
//! from the input, adds or removes a member, sends an IP packet or moves the clock.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::ppp::IpcpConfig;
use eqlplus_dialer::ppp::mp::{
    BundleConfig, BundleEvent, BundleSession, BundleSessionConfig, LinkState, Negotiated,
};
use libfuzzer_sys::fuzz_target;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

/// Protocols worth feeding: MP, IPCP, IPv4, and one the bundle does not run.
const PROTOCOLS: [u16; 4] = [0x003d, 0x8021, 0x0021, 0x0057];

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut input)) = data.split_first() else {
        return;
    };
    let mrru = 296 + u16::from(config >> 3) * 40;
    let negotiated = Negotiated {
        our_mrru: mrru,
        peer_mrru: mrru,
        tx_short_seq: config & 1 != 0,
        rx_short_seq: config & 2 != 0,
        peer_endpoint: None,
    };
    let ipcp = if config & 4 == 0 {
        IpcpConfig::client()
    } else {
        IpcpConfig::server(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), &[])
    };
    let mut bundle_cfg = BundleConfig::from_negotiated(&negotiated);
    bundle_cfg.reassembly.max_fragments = 16;
    bundle_cfg.reassembly.max_bytes = 8 * 1024;
    let mut b: BundleSession<u8> =
        BundleSession::new(BundleSessionConfig::new(bundle_cfg, ipcp), 0);
    let mut now = epoch();
    let mut up = false;
    // Member states as the sender sees them: rate, queue, MRU, up.
    let mut links: Vec<LinkState<u8>> = (0..4)
        .map(|id| LinkState {
            id,
            rate: 1000 * u64::from(id),
            queued: 0,
            mru: 296 + u16::from(id) * 300,
            up: true,
        })
        .collect();

    let check_frames = |frames: &[eqlplus_dialer::ppp::mp::Outgoing<u8>],
                        links: &[LinkState<u8>]| {
        for f in frames {
            let l = links
                .iter()
                .find(|l| l.id == f.member)
                .expect("a known member");
            assert!(
                l.up && l.rate > 0,
                "frame for a member that cannot carry it"
            );
            assert!(
                f.info.len() <= usize::from(l.mru),
                "frame over the member's MRU"
            );
        }
    };

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let member = op & 3;
        match op >> 5 {
            // A frame: protocol from bits 2–3, then a length byte and the content.
            0..=2 => {
                let protocol = PROTOCOLS[usize::from(op >> 2 & 3)];
                let len = usize::from(byte(&mut input));
                let info = take(&mut input, len);
                b.handle_frame(member, protocol, info, now);
            }
            3 => b.add_member(member, now),
            4 => b.remove_member(member, now),
            // Change what the sender knows of a member.
            5 => {
                let l = &mut links[usize::from(member)];
                let v = byte(&mut input);
                match op >> 2 & 7 {
                    0 => l.up = !l.up,
                    1 => l.rate = u64::from(v) * 100,
                    2 => l.queued = usize::from(v) * 64,
                    _ => l.mru = 128 + u16::from(v) * 8,
                }
            }
            // Send an IP packet of `n * 16` bytes.
            6 => {
                let len = usize::from(byte(&mut input)) * 16;
                let packet = vec![0x45; len];
                match b.send_ip(&packet, &links) {
                    Ok(frames) => {
                        assert!(up, "send_ip worked while not up");
                        check_frames(&frames, &links);
                    }
                    Err(_) => {}
                }
            }
            // The clock moves by up to 3.1 s; timers run.
            _ => {
                now += Duration::from_millis(u64::from(op & 0x1f) * 100);
                if b.poll_timeout().is_some_and(|t| t <= now) {
                    b.handle_timeout(now);
                }
                assert!(
                    b.poll_timeout().is_none_or(|t| t > now),
                    "deadline left in the past"
                );
            }
        }
        let frames = b.poll_transmit(&links);
        check_frames(&frames, &links);
        let mut rejects = 0;
        while let Some((protocol, _)) = b.poll_protocol_reject() {
            assert!(
                ![0x003d, 0x8021, 0x0021].contains(&protocol),
                "rejected a bundle protocol"
            );
            rejects += 1;
            assert!(rejects <= 8, "unbounded Protocol-Rejects");
        }
        while let Some(p) = b.poll_ip() {
            assert!(p.len() <= usize::from(mrru), "packet over the MRRU");
        }
        while let Some(e) = b.poll_event() {
            match e {
                BundleEvent::Up { .. } => {
                    assert!(!up, "Up twice");
                    up = true;
                }
                BundleEvent::NetworkDown { .. } => up = false,
                BundleEvent::Failed { .. } => up = false,
            }
        }
        assert_eq!(up, b.is_up());
        let _ = b.stats();
    }
});
