//! Throughput of the RFC 1662 framing codec (`ppp::hdlc`) on 1500-byte packets
//! of random data, with the two transmit ACCMs that matter:
//!
//! - `0xffffffff`: the default until LCP negotiates, and always used for LCP
//!   negotiation packets; all control characters are escaped (~14% of random bytes);
//! - `0x00000000`: what pppd negotiates; only 0x7d and 0x7e are escaped (~0.8%).
//!
//! Throughput is counted in payload bytes (the 1500-byte packets), for encode
//! and decode alike. Run with `cargo bench --bench hdlc`.
//!
//! Measured on the 2-core dev VM (shared, best of three 2 s runs), MB/s:
//!
//! | benchmark             | before (slice-by-8, run scan) | after |
//! |-----------------------|------------------------------:|------:|
//! | encode, ACCM ffffffff |                           452 |  1343 |
//! | encode, ACCM 00000000 |                          1148 |  1936 |
//! | decode, ACCM ffffffff |                           334 |  1117 |
//! | decode, ACCM 00000000 |                          1014 |  1839 |
//! | fcs16 alone           |                          1712 |  2986 |
//!
//! The FCS is now 35-45% of encode/decode time with the all-ones ACCM; a
//! carry-less-multiply (PCLMULQDQ) FCS would be the next step.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eqlplus_dialer::ppp::hdlc::{Decoder, Encoder, FCS_INIT, fcs16};

const PACKET: usize = 1500;
/// Packets per iteration: enough that per-call overhead is averaged in, small enough for L1/L2.
const PACKETS: usize = 32;
/// Uncompressed PPP header for IPv4 (ff 03 00 21).
const HEADER: [u8; 4] = [0xff, 0x03, 0x00, 0x21];
const ACCMS: [(u32, &str); 2] = [(0xffff_ffff, "accm-ffffffff"), (0, "accm-00000000")];

/// Deterministic random packets (a fixed seed).
fn packets() -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    (0..PACKETS)
        .map(|_| (0..PACKET).map(|_| rng.u8(..)).collect())
        .collect()
}

fn encode(c: &mut Criterion) {
    let packets = packets();
    let mut group = c.benchmark_group("hdlc-encode");
    group.throughput(Throughput::Bytes((PACKET * PACKETS) as u64));
    for (accm, name) in ACCMS {
        let enc = Encoder::new(accm);
        let mut out = Vec::with_capacity(2 * PACKET * PACKETS);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                for p in &packets {
                    enc.encode(&HEADER, black_box(p), &mut out);
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let packets = packets();
    let mut group = c.benchmark_group("hdlc-decode");
    group.throughput(Throughput::Bytes((PACKET * PACKETS) as u64));
    for (accm, name) in ACCMS {
        let mut wire = Vec::new();
        for p in &packets {
            Encoder::new(accm).encode(&HEADER, p, &mut wire);
        }
        let mut dec = Decoder::new(PACKET);
        dec.set_accm(accm);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut input: &[u8] = black_box(&wire);
                let mut frames = 0usize;
                while !input.is_empty() {
                    let (used, frame) = dec.push(input);
                    if let Some(f) = frame {
                        frames += f.len();
                    }
                    input = &input[used..];
                }
                assert_eq!(frames, (PACKET + HEADER.len()) * PACKETS);
                frames
            })
        });
    }
    group.finish();
}

fn fcs(c: &mut Criterion) {
    let packets = packets();
    let mut group = c.benchmark_group("hdlc-fcs16");
    group.throughput(Throughput::Bytes(PACKET as u64));
    group.bench_function("1500", |b| {
        b.iter(|| fcs16(FCS_INIT, black_box(&packets[0])))
    });
    group.finish();
}

criterion_group!(benches, encode, decode, fcs);
criterion_main!(benches);
