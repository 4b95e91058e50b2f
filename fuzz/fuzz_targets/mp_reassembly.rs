//! Multilink reassembly (`ppp::mp::Reassembler`) fed arbitrary fragments from several
//! member links, with members joining and leaving and the clock moving, under small
//! memory limits.
//!
//! Checks: no panic; never more fragments or bytes held than the limits; every delivered
//! packet within the MRRU; the counters add up (no more packets delivered than fragments
//! received); a deadline is never in the past after it was handled; at the end, with the
//! clock run on and every member gone, nothing is held.
//!
//! Input: `config byte, then ops`. The config byte picks short or long sequence numbers
//! (bit 0) and the limits (bits 1–7). Each op byte (high 3 bits: what, low 2 bits: the
//! member, bits 2–4: an argument) pushes a fragment whose header and data come from the
//! input (raw header bytes parsed as the wire would be, or a header built near the last
//! sequence number so the fuzzer reaches reassembly without guessing numbers), adds or
//! removes a member, or moves the clock.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::ppp::mp::{MpHeader, Reassembler, ReassemblyConfig, SeqFormat};
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

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut input)) = data.split_first() else {
        return;
    };
    let format = SeqFormat::new(config & 1 != 0);
    let cfg = ReassemblyConfig {
        max_fragments: 1 + usize::from(config >> 1 & 0x0f),
        max_bytes: 64 << (config >> 5),
        mrru: 64 + usize::from(config >> 3 & 0x0f) * 32,
        max_wait: Duration::from_millis(500),
        // Any start: the fuzzer picks the numbers.
        ..ReassemblyConfig::default()
    };
    let mut r: Reassembler<u8> = Reassembler::new(format, cfg);
    let mut now = epoch();
    let mut last_seq = 0u32;
    let mut delivered = 0u64;

    let mut check = |r: &mut Reassembler<u8>| {
        assert!(r.held_fragments() <= cfg.max_fragments, "fragment bound");
        assert!(r.held_bytes() <= cfg.max_bytes, "byte bound");
        while let Some(p) = r.poll_packet() {
            assert!(p.len() <= cfg.mrru, "packet over the MRRU");
            delivered += 1;
        }
        let s = r.stats();
        assert_eq!(s.delivered, delivered);
        assert!(s.delivered <= s.fragments);
        assert!(s.evicted <= s.discarded);
        assert!(s.delivered + s.discarded + s.duplicates <= s.fragments);
        assert!(
            r.poll_timeout().is_none() || r.held_fragments() > 0,
            "a deadline with nothing held"
        );
    };

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let member = op & 3;
        let arg = op >> 2 & 7;
        match op >> 5 {
            // Raw header bytes as received, then `arg * 8` bytes of data.
            0 | 1 => {
                let raw = take(&mut input, format.header_len() + usize::from(arg) * 8);
                if let Ok((header, payload)) = MpHeader::parse(raw, format) {
                    last_seq = header.seq;
                    r.push(member, header, payload, now);
                }
            }
            // A header near the last number: `arg` is the step (−2..=5), the next byte the
            // flags (bits 7, 6) and the data length (bits 0–5).
            2 | 3 => {
                let flags = byte(&mut input);
                last_seq = format.add(last_seq, u32::from(arg).wrapping_sub(2));
                let header = MpHeader {
                    begin: flags & 0x80 != 0,
                    end: flags & 0x40 != 0,
                    seq: last_seq,
                };
                let payload = take(&mut input, usize::from(flags & 0x3f));
                r.push(member, header, payload, now);
            }
            4 => r.add_member(member),
            5 => r.remove_member(member, now),
            // The clock moves by up to 700 ms, timers run.
            6 => {
                now += Duration::from_millis(u64::from(arg) * 100);
                r.handle_timeout(now);
            }
            // The clock jumps to the deadline.
            _ => {
                if let Some(t) = r.poll_timeout() {
                    now = now.max(t);
                    r.handle_timeout(now);
                    assert!(
                        r.poll_timeout().is_none_or(|t| t > now),
                        "deadline not moved on"
                    );
                }
            }
        }
        check(&mut r);
    }

    // Every member leaves and the clock runs on: nothing may stay held.
    let members: Vec<u8> = r.members().collect();
    for m in members {
        r.remove_member(m, now);
        check(&mut r);
    }
    assert_eq!(r.poll_timeout(), None, "a deadline with no members");
    assert_eq!(r.held_fragments(), 0, "fragments held with no members");
    assert_eq!(r.held_bytes(), 0);
});
