//! RFC 1662 framing: the streaming `Decoder` on arbitrary bytes in arbitrary
//! chunks, and an `Encoder` → `Decoder` roundtrip of the input itself.
//!
//! Checks: no panic, frames within the MRU, the same frames and counters for
//! any chunking and as a byte-at-a-time reference model; encoding escapes
//! exactly what the ACCM says and decodes back to the input.
//!
//! Input: `accm[4] mru_byte chunk_seed data...`.
#![no_main]

use eqlplus_dialer::ppp::hdlc::{
    Decoder, DecoderStats, ESCAPE, ESCAPE_XOR, Encoder, FCS_GOOD, FCS_INIT, FCS_LEN, FLAG, Header,
    MAX_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

/// Deterministic chunk lengths from a seed taken from the input (the project's one PRNG).
struct Chunks(Option<fastrand::Rng>);

impl Chunks {
    fn seeded(seed: u64) -> Chunks {
        Chunks(Some(fastrand::Rng::with_seed(seed)))
    }

    /// Everything at once.
    fn whole() -> Chunks {
        Chunks(None)
    }

    fn next_len(&mut self, max: usize) -> usize {
        let Some(rng) = &mut self.0 else {
            return max;
        };
        // Mostly small chunks (splits inside escapes and flags), sometimes large ones.
        let len = if rng.bool() {
            rng.usize(..8)
        } else {
            rng.usize(..512)
        };
        len.clamp(1, max.max(1))
    }
}

/// Bit-at-a-time FCS (RFC 1662 §C.2), independent of the library's tables.
fn fcs_bitwise(data: &[u8]) -> u16 {
    let mut fcs = FCS_INIT;
    for &b in data {
        fcs ^= u16::from(b);
        for _ in 0..8 {
            fcs = if fcs & 1 != 0 {
                (fcs >> 1) ^ 0x8408
            } else {
                fcs >> 1
            };
        }
    }
    fcs
}

/// The decoder's specified behaviour, one byte at a time: the fast paths
/// (word-at-a-time scanning, branch-free unescaping) must match it exactly.
fn reference_decode(input: &[u8], accm: u32, mru: usize) -> (Vec<Vec<u8>>, DecoderStats) {
    let max_len = mru + MAX_HEADER_LEN + FCS_LEN;
    let (mut hunting, mut escaped) = (true, false);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut stats = DecoderStats::default();
    for &b in input {
        if hunting {
            if b == FLAG {
                (hunting, escaped) = (false, false);
                buf.clear();
            }
        } else if b == FLAG {
            if escaped {
                stats.aborted += 1; // 7d 7e
            } else if buf.is_empty() {
                continue; // inter-frame fill
            } else if buf.len() < 1 + FCS_LEN {
                stats.aborted += 1; // runt
            } else if fcs_bitwise(&buf) != FCS_GOOD {
                stats.bad_fcs += 1;
            } else {
                stats.frames += 1;
                frames.push(buf[..buf.len() - FCS_LEN].to_vec());
            }
            buf.clear();
            escaped = false;
        } else if b == ESCAPE {
            if escaped {
                stats.aborted += 1; // 7d 7d
                (hunting, escaped) = (true, false);
                buf.clear();
            } else {
                escaped = true;
            }
        } else if b < 0x20 && accm & (1 << b) != 0 {
            // Inserted by the line: dropped, escape state kept.
        } else if buf.len() >= max_len {
            stats.oversize += 1;
            (hunting, escaped) = (true, false);
            buf.clear();
        } else {
            buf.push(if escaped { b ^ ESCAPE_XOR } else { b });
            escaped = false;
        }
    }
    (frames, stats)
}

/// Feed `input` to `dec` in chunks; returns the frames.
fn decode_chunked(
    dec: &mut Decoder,
    mut input: &[u8],
    chunks: &mut Chunks,
    max_frame: usize,
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !input.is_empty() {
        let mut piece = &input[..chunks.next_len(input.len())];
        input = &input[piece.len()..];
        while !piece.is_empty() {
            let (used, frame) = dec.push(piece);
            assert!(used <= piece.len());
            if let Some(frame) = frame {
                assert!(used > 0, "a frame ends at a consumed flag");
                assert_eq!(piece[used - 1], FLAG);
                assert!(
                    !frame.is_empty() && frame.len() <= max_frame,
                    "frame of {} bytes",
                    frame.len()
                );
                let _ = Header::parse(frame);
                frames.push(frame.to_vec());
            } else {
                assert_eq!(used, piece.len(), "no frame: the whole chunk is consumed");
            }
            piece = &piece[used..];
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let accm = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mru = usize::from(data[4]) * 8;
    let seed = data[5];
    let payload = &data[6..];

    // 1. Arbitrary bytes, arbitrary chunking: never panics, frames within the MRU,
    //    and the result does not depend on the chunking.
    let mut dec = Decoder::new(mru);
    dec.set_accm(accm);
    let chunked = decode_chunked(
        &mut dec,
        payload,
        &mut Chunks::seeded(u64::from(seed)),
        mru + MAX_HEADER_LEN,
    );
    let mut whole = Decoder::new(mru);
    whole.set_accm(accm);
    let at_once = decode_chunked(
        &mut whole,
        payload,
        &mut Chunks::whole(),
        mru + MAX_HEADER_LEN,
    );
    assert_eq!(chunked, at_once, "chunking changed the frames");
    assert_eq!(dec.stats(), whole.stats());
    let (want, want_stats) = reference_decode(payload, accm, mru);
    assert_eq!(chunked, want, "differs from the byte-at-a-time reference");
    assert_eq!(dec.stats(), want_stats);

    // 2. Roundtrip: the input as payload, escaped with the input's ACCM.
    let enc = Encoder::new(accm);
    let header: &[u8] = if seed & 1 == 0 {
        &[0xff, 0x03]
    } else {
        &[0x21]
    };
    let mut wire = Vec::new();
    enc.encode(header, payload, &mut wire);
    assert_eq!(wire.first(), Some(&FLAG));
    assert_eq!(wire.last(), Some(&FLAG));
    assert_eq!(
        wire.iter().filter(|&&b| b == FLAG).count(),
        2,
        "flags only at the ends"
    );
    for &b in &wire {
        assert!(
            b >= 0x20 || accm & (1 << b) == 0,
            "unescaped ACCM byte {b:#04x}"
        );
    }
    // A second frame behind the first, to check the decoder resynchronises.
    enc.encode(header, b"tail", &mut wire);
    let mru = payload.len().max(4);
    let mut dec = Decoder::new(mru);
    dec.set_accm(accm);
    let frames = decode_chunked(
        &mut dec,
        &wire,
        &mut Chunks::seeded(u64::from(seed)),
        mru + MAX_HEADER_LEN,
    );
    let want = [[header, payload].concat(), [header, b"tail"].concat()];
    assert_eq!(frames, want);
    let stats = dec.stats();
    assert_eq!((stats.frames, stats.bad_fcs, stats.aborted), (2, 0, 0));
});
