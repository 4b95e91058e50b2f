//! RFC 1662 asynchronous HDLC-like framing.
//!
//! A frame on the wire is `7e [ff 03] proto info FCS 7e`, where every byte that
//! is a flag (0x7e), an escape (0x7d) or a control character selected by the
//! sender's ACCM is replaced by `7d, byte ^ 0x20`. The FCS is the 16-bit CRC of
//! RFC 1662 §C.2 (CRC-16/X-25), sent least significant byte first.
//!
//! This module only does byte-level framing and header compression:
//! - [`Decoder`] turns an arbitrary stream of byte chunks into frames (the bytes
//!   between flags, unescaped, FCS checked and removed);
//! - [`Encoder`] turns `(header, payload)` into one escaped frame;
//! - [`Header`] emits and parses the address/control and protocol fields with
//!   ACFC/PFC. Whether compression may be used is decided by the caller (the
//!   session knows what LCP negotiated); the decoder side always accepts both the
//!   compressed and the uncompressed forms, as RFC 1661 §6.5/§6.6 recommend.
//!
//! Speed matters (the target is over 1 GB/s per direction on one core, see
//! `benches/hdlc.rs`): the FCS is computed slice-by-16 with const-built tables.
//! How bytes are (un)escaped depends on the ACCM:
//! - few escaped characters (the negotiated ACCM 0: only 0x7d and 0x7e) — runs of
//!   plain bytes are found eight at a time with word-wide (SWAR) compares and
//!   copied in bulk;
//! - many (the default all-ones ACCM: about one random byte in seven) — a
//!   branch-free loop handles every byte the same way, so the scattered escapes
//!   cost no mispredicted branches.

use thiserror::Error;

/// Flag sequence delimiting frames.
pub const FLAG: u8 = 0x7e;
/// Control escape: the next byte is XORed with [`ESCAPE_XOR`].
pub const ESCAPE: u8 = 0x7d;
/// Value XORed into an escaped byte.
pub const ESCAPE_XOR: u8 = 0x20;
/// HDLC all-stations address.
pub const ADDRESS: u8 = 0xff;
/// HDLC unnumbered-information control field.
pub const CONTROL: u8 = 0x03;
/// Initial FCS value.
pub const FCS_INIT: u16 = 0xffff;
/// FCS residue of a frame that arrived intact (FCS computed over data + its FCS).
pub const FCS_GOOD: u16 = 0xf0b8;
/// ACCM that escapes every control character: the default until LCP says otherwise.
pub const ACCM_ALL: u32 = 0xffff_ffff;
/// Bytes of FCS at the end of every frame.
pub const FCS_LEN: usize = 2;
/// Largest header: address, control and a two-byte protocol.
pub const MAX_HEADER_LEN: usize = 4;

/// Bytes [`fcs16`] consumes per step.
const FCS_SLICE: usize = 16;

/// `FCS_TABLES[k][b]` is the FCS contribution of byte `b` followed by `k` zero
/// bytes; table 0 is the classic RFC 1662 table. Sixteen tables (8 KiB) let
/// [`fcs16`] consume sixteen bytes per step (slice-by-16).
static FCS_TABLES: [[u16; 256]; FCS_SLICE] = build_fcs_tables();

const fn build_fcs_tables() -> [[u16; 256]; FCS_SLICE] {
    let mut t = [[0u16; 256]; FCS_SLICE];
    let mut i = 0;
    while i < 256 {
        let mut v = i as u16;
        let mut bit = 0;
        while bit < 8 {
            v = if v & 1 != 0 {
                (v >> 1) ^ 0x8408
            } else {
                v >> 1
            };
            bit += 1;
        }
        t[0][i] = v;
        i += 1;
    }
    let mut k = 1;
    while k < FCS_SLICE {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Continue an FCS-16 computation over `data` (start with [`FCS_INIT`]).
///
/// The value to transmit is `!fcs16(FCS_INIT, data)`, low byte first; a received
/// frame including its FCS is intact when `fcs16(FCS_INIT, frame) == FCS_GOOD`.
pub fn fcs16(mut fcs: u16, data: &[u8]) -> u16 {
    let t = &FCS_TABLES;
    let mut chunks = data.chunks_exact(FCS_SLICE);
    for c in &mut chunks {
        // The running FCS only overlaps the first two bytes; the other fourteen
        // are looked up independently, so the chain per step is short.
        let [f0, f1] = fcs.to_le_bytes();
        fcs = t[15][usize::from(c[0] ^ f0)]
            ^ t[14][usize::from(c[1] ^ f1)]
            ^ t[13][usize::from(c[2])]
            ^ t[12][usize::from(c[3])]
            ^ t[11][usize::from(c[4])]
            ^ t[10][usize::from(c[5])]
            ^ t[9][usize::from(c[6])]
            ^ t[8][usize::from(c[7])]
            ^ t[7][usize::from(c[8])]
            ^ t[6][usize::from(c[9])]
            ^ t[5][usize::from(c[10])]
            ^ t[4][usize::from(c[11])]
            ^ t[3][usize::from(c[12])]
            ^ t[2][usize::from(c[13])]
            ^ t[1][usize::from(c[14])]
            ^ t[0][usize::from(c[15])];
    }
    for &b in chunks.remainder() {
        fcs = (fcs >> 8) ^ t[0][usize::from((fcs as u8) ^ b)];
    }
    fcs
}

/// Word-at-a-time (SWAR) byte tests on eight bytes in a `u64`.
mod swar {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;

    /// Bit 7 of each byte of the result is set where that byte of `x` is below
    /// `n` (n <= 0x80). Exact for the lowest flagged byte; bytes above a true
    /// hit may be flagged falsely (borrow), which the callers never rely on.
    #[inline(always)]
    fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(LO * u64::from(n)) & !x & HI
    }

    /// Flags bytes equal to `b` (same exactness as [`below`]).
    #[inline(always)]
    fn equal(x: u64, b: u8) -> u64 {
        below(x ^ (LO * u64::from(b)), 1)
    }

    /// Bit 7 of each byte of the result is set exactly where that byte of `x`
    /// equals `b` (no borrow between bytes, unlike [`equal`]).
    #[inline(always)]
    pub(super) fn equal_exact(x: u64, b: u8) -> u64 {
        let y = x ^ (LO * u64::from(b));
        !(((y & !HI).wrapping_add(!HI)) | y | !HI)
    }

    /// Non-zero if some byte of the word stops the branch-free decoder: a
    /// flag, a control character (possibly one to drop), or an escape that
    /// follows an escape (`escapes` from [`equal_exact`]; `after_escape` for
    /// the byte before the word). False alarms are fine: the caller then takes
    /// the word byte by byte.
    #[inline(always)]
    pub(super) fn decode_stop(x: u64, escapes: u64, after_escape: bool) -> u64 {
        let previous = (escapes << 8) | (u64::from(after_escape) << 7);
        equal(x, super::FLAG) | below(x, 0x20) | (escapes & previous)
    }

    /// Unescapes a word with no flag, control character or double escape in it
    /// (`escapes` from [`equal_exact`]): returns the word with every byte after
    /// an escape XORed with 0x20, for each byte how many kept (non-escape) bytes
    /// precede it in the word, and how many bytes are kept.
    #[inline(always)]
    pub(super) fn unescape(x: u64, escapes: u64, after_escape: bool) -> (u64, u64, usize) {
        let previous = (escapes << 8) | (u64::from(after_escape) << 7);
        // Bit 7 of the byte after an escape, moved to bit 5: 0x20.
        let unescaped = x ^ (previous >> 2);
        let keep = (!escapes & HI) >> 7;
        // Byte k of `keep * LO` is the number of kept bytes in 0..=k (at most 8: no carry).
        let inclusive = keep.wrapping_mul(LO);
        (unescaped, inclusive << 8, (inclusive >> 56) as usize)
    }

    /// The eight bytes at `data[at..]` as a little-endian word.
    #[inline(always)]
    pub(super) fn word(data: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(w)
    }

    /// Flags 0x7d and 0x7e, and with `controls` also every byte below 0x20: the
    /// candidates for escaping. The lowest flagged byte is always a true candidate.
    #[inline(always)]
    pub(super) fn candidates(x: u64, controls: bool) -> u64 {
        let m = equal(x, super::ESCAPE) | equal(x, super::FLAG);
        if controls { m | below(x, 0x20) } else { m }
    }

    /// Index of the first byte of `data[from..]` that `hit` accepts among the
    /// candidates, or `data.len()`.
    #[inline(always)]
    pub(super) fn find(
        data: &[u8],
        mut from: usize,
        controls: bool,
        hit: impl Fn(u8) -> bool,
    ) -> usize {
        while from + 8 <= data.len() {
            let m = candidates(word(data, from), controls);
            if m == 0 {
                from += 8;
                continue;
            }
            let k = from + (m.trailing_zeros() / 8) as usize;
            if hit(data[k]) {
                return k;
            }
            from = k + 1;
        }
        data[from..]
            .iter()
            .position(|&b| hit(b))
            .map_or(data.len(), |p| from + p)
    }
}

/// Whether the branch-free per-byte loops beat run scanning: with this many
/// control characters in the ACCM, escapes are too frequent (in random data,
/// one byte in 26 or more) for copying runs to pay.
fn dense(accm: u32) -> bool {
    accm.count_ones() >= 8
}

/// Byte classes used by the decoder's scanning loop.
const CLASS_DATA: u8 = 0;
const CLASS_FLAG: u8 = 1;
const CLASS_ESCAPE: u8 = 2;
/// An unescaped control character that is in the receive ACCM: inserted by a
/// modem or line (XON/XOFF, ...) and dropped, RFC 1662 §7.1.
const CLASS_DROP: u8 = 3;

/// Counters kept by the [`Decoder`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames delivered with a good FCS.
    pub frames: u64,
    /// Frames whose FCS did not match.
    pub bad_fcs: u64,
    /// Frames longer than the decoder's limit, discarded.
    pub oversize: u64,
    /// Frames aborted by `7d 7e` or too short to hold a protocol and an FCS.
    pub aborted: u64,
}

/// Streaming frame decoder: feed it byte chunks as they come off the line.
///
/// ```
/// use eqlplus_ppp::hdlc::Decoder;
/// let mut dec = Decoder::new(1500);
/// let mut input: &[u8] = &[0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7e];
/// while !input.is_empty() {
///     let (used, frame) = dec.push(input);
///     if let Some(frame) = frame { let _ = frame; /* bad FCS here, so never reached */ }
///     input = &input[used..];
/// }
/// ```
#[derive(Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Longest accepted frame content, FCS included.
    max_len: usize,
    class: [u8; 256],
    accm: u32,
    /// [`dense`] for `accm`: use the branch-free loop.
    dense: bool,
    escaped: bool,
    /// Discarding until the next flag (start-up garbage, oversize frame).
    hunting: bool,
    /// `buf` holds a frame handed out by the previous `push`.
    delivered: bool,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(1500)
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("max_len", &self.max_len)
            .field("accm", &format_args!("{:#010x}", self.accm))
            .field("buffered", &self.buf.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Decoder {
    /// A decoder accepting information fields of up to `mru` bytes (plus a full
    /// uncompressed header and the FCS), with the default all-ones receive ACCM.
    pub fn new(mru: usize) -> Self {
        let mut d = Decoder {
            buf: Vec::with_capacity(mru + MAX_HEADER_LEN + FCS_LEN),
            max_len: mru + MAX_HEADER_LEN + FCS_LEN,
            class: [CLASS_DATA; 256],
            accm: 0,
            dense: false,
            escaped: false,
            // Anything before the first flag (modem chatter) is not a frame.
            hunting: true,
            delivered: false,
            stats: DecoderStats::default(),
        };
        d.set_accm(ACCM_ALL);
        d
    }

    /// Change the receive MRU (information field bytes).
    pub fn set_mru(&mut self, mru: usize) {
        self.max_len = mru + MAX_HEADER_LEN + FCS_LEN;
    }

    /// Change the receive ACCM: unescaped control characters whose bit is set are dropped.
    pub fn set_accm(&mut self, accm: u32) {
        self.accm = accm;
        self.dense = dense(accm);
        for c in 0..32u8 {
            self.class[usize::from(c)] = if accm & (1 << c) != 0 {
                CLASS_DROP
            } else {
                CLASS_DATA
            };
        }
        self.class[usize::from(FLAG)] = CLASS_FLAG;
        self.class[usize::from(ESCAPE)] = CLASS_ESCAPE;
    }

    /// The current receive ACCM.
    pub fn accm(&self) -> u32 {
        self.accm
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Consume bytes from `input` until a frame is complete or `input` is used up.
    ///
    /// Returns how many bytes were consumed and, if a frame ended, its content
    /// without flags, escapes or FCS (address/control and protocol still in
    /// place). Call again with the rest of the input. The frame borrows the
    /// decoder's buffer, which is reused: no allocation per frame.
    pub fn push<'a>(&'a mut self, input: &[u8]) -> (usize, Option<&'a [u8]>) {
        if self.delivered {
            self.buf.clear();
            self.delivered = false;
        }
        let mut i = 0;
        while i < input.len() {
            if self.hunting {
                // Skip to the next flag; the frame in progress is already counted.
                match input[i..].iter().position(|&b| b == FLAG) {
                    Some(p) => {
                        i += p + 1;
                        self.reset_frame();
                        continue;
                    }
                    None => return (input.len(), None),
                }
            }
            if self.dense {
                // Branch-free loop up to the next flag, abort or full buffer.
                i += self.unescape_dense(&input[i..]);
            } else if !self.escaped {
                // Copy the run of plain data bytes in one go.
                let class = &self.class;
                let end = swar::find(input, i, self.accm != 0, |b| {
                    class[usize::from(b)] != CLASS_DATA
                });
                let run = end - i;
                if run > 0 {
                    if self.buf.len() + run > self.max_len {
                        self.oversize();
                        i += run;
                        continue;
                    }
                    self.buf.extend_from_slice(&input[i..end]);
                    i += run;
                    continue;
                }
            }
            if i == input.len() {
                break;
            }
            let b = input[i];
            i += 1;
            match self.class[usize::from(b)] {
                CLASS_FLAG => {
                    if self.end_of_frame() {
                        self.delivered = true;
                        let len = self.buf.len() - FCS_LEN;
                        return (i, Some(&self.buf[..len]));
                    }
                }
                CLASS_ESCAPE => {
                    // `7d 7d` is not a valid sequence; treat the second as data
                    // escaping would make ambiguous, so abort like ppp_async.
                    if self.escaped {
                        self.abort();
                    } else {
                        self.escaped = true;
                    }
                }
                CLASS_DROP => {}
                _ => {
                    let byte = if self.escaped { b ^ ESCAPE_XOR } else { b };
                    self.escaped = false;
                    if self.buf.len() >= self.max_len {
                        self.oversize();
                    } else {
                        self.buf.push(byte);
                    }
                }
            }
        }
        (input.len(), None)
    }

    /// Unescape `input` into `buf` without a branch per byte, stopping before a
    /// flag, before a byte to drop (line noise: rare, and handled by the caller),
    /// before an escape that follows an escape (an abort), or when `buf` could
    /// overflow; returns the bytes consumed. The byte it stops at (if any) is
    /// left to the caller's per-byte handling.
    ///
    /// With dropped bytes excluded, whether a byte is unescaped depends only on
    /// the byte before it, so no state is carried from byte to byte but the
    /// output length.
    fn unescape_dense(&mut self, input: &[u8]) -> usize {
        // Every input byte yields at most one output byte, so taking no more than
        // the room left can never overflow; the caller handles a full buffer.
        let n = input.len().min(self.max_len.saturating_sub(self.buf.len()));
        let input = &input[..n];
        let start = self.buf.len();
        self.buf.resize(start + n, 0);
        let out = &mut self.buf[start..];
        let class = &self.class;
        let mut after_escape = self.escaped;
        let mut len = 0;
        let mut used = 0;
        'words: loop {
            // Eight bytes at a time while no byte in the word needs a decision.
            while used + 8 <= n {
                let w = swar::word(input, used);
                let escapes = swar::equal_exact(w, ESCAPE);
                if swar::decode_stop(w, escapes, after_escape) != 0 {
                    break;
                }
                let (unescaped, positions, kept) = swar::unescape(w, escapes, after_escape);
                // Each byte is stored at its position among the kept bytes; an
                // escape byte's store is overwritten by the byte after it.
                let out8: &mut [u8; 8] = (&mut out[len..len + 8]).try_into().expect("8 bytes");
                for k in 0..8 {
                    out8[(positions >> (8 * k)) as usize & 7] = (unescaped >> (8 * k)) as u8;
                }
                after_escape = escapes >> 63 != 0;
                len += kept;
                used += 8;
            }
            // Byte by byte through the word that stopped (or the tail).
            let end = (used + 8).min(n);
            for &b in &input[used..end] {
                let c = class[usize::from(b)];
                let is_escape = c == CLASS_ESCAPE;
                // Non-short-circuit operators: a branch on the byte's class would be
                // mispredicted on every escape.
                if (c == CLASS_FLAG) | (c == CLASS_DROP) | (is_escape & after_escape) {
                    break 'words;
                }
                out[len] = b ^ (u8::from(after_escape) * ESCAPE_XOR);
                len += usize::from(!is_escape);
                after_escape = is_escape;
                used += 1;
            }
            if used == n {
                break;
            }
        }
        self.escaped = after_escape;
        self.buf.truncate(start + len);
        used
    }

    /// A flag arrived: decide what the bytes since the previous flag were.
    /// Returns true when `buf` holds a good frame (FCS still attached).
    fn end_of_frame(&mut self) -> bool {
        if self.escaped {
            // `7d 7e` is the abort sequence, RFC 1662 §4.3.
            self.stats.aborted += 1;
            self.reset_frame();
            return false;
        }
        match self.buf.len() {
            0 => false, // back-to-back flags: inter-frame fill
            // At least a one-byte (compressed) protocol plus the FCS.
            n if n < 1 + FCS_LEN => {
                self.stats.aborted += 1;
                self.reset_frame();
                false
            }
            _ if fcs16(FCS_INIT, &self.buf) != FCS_GOOD => {
                self.stats.bad_fcs += 1;
                self.reset_frame();
                false
            }
            _ => {
                self.stats.frames += 1;
                true
            }
        }
    }

    fn oversize(&mut self) {
        self.stats.oversize += 1;
        self.hunting = true;
        self.buf.clear();
        self.escaped = false;
    }

    fn abort(&mut self) {
        self.stats.aborted += 1;
        self.hunting = true;
        self.buf.clear();
        self.escaped = false;
    }

    fn reset_frame(&mut self) {
        self.buf.clear();
        self.escaped = false;
        self.hunting = false;
    }
}

/// Frame encoder for one direction of a link.
#[derive(Clone)]
pub struct Encoder {
    accm: u32,
    escape: [bool; 256],
    /// For the branch-free loop: the one or two bytes each byte becomes (low
    /// byte first) in bits 0-15, bit 16 set when it is escaped (two bytes).
    expand: [u32; 256],
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(ACCM_ALL)
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("accm", &format_args!("{:#010x}", self.accm))
            .finish()
    }
}

impl Encoder {
    /// An encoder escaping the control characters selected by `accm` (the
    /// peer's receive ACCM) plus, always, the flag and escape bytes.
    pub const fn new(accm: u32) -> Self {
        let escape = escape_table(accm);
        let mut expand = [0u32; 256];
        let mut b = 0;
        while b < 256 {
            let second = (b as u32 ^ ESCAPE_XOR as u32) << 8;
            expand[b] = if escape[b] {
                ESCAPE as u32 | 1 << 16
            } else {
                b as u32
            } | second;
            b += 1;
        }
        Encoder {
            accm,
            escape,
            expand,
        }
    }

    /// Change the transmit ACCM.
    pub fn set_accm(&mut self, accm: u32) {
        *self = Encoder::new(accm);
    }

    /// The current transmit ACCM.
    pub fn accm(&self) -> u32 {
        self.accm
    }

    /// Append one complete frame to `out`: opening flag, escaped `header` and
    /// `payload`, escaped FCS, closing flag.
    ///
    /// Every frame gets an opening flag, even back to back: a doubled flag is an
    /// empty frame every receiver ignores, and a lone frame after line noise then
    /// still starts cleanly.
    pub fn encode(&self, header: &[u8], payload: &[u8], out: &mut Vec<u8>) {
        // Room for the common case (few escapes); `extend` grows it if needed.
        out.reserve(header.len() + payload.len() + payload.len() / 16 + 8);
        out.push(FLAG);
        self.escape_into(header, out);
        self.escape_into(payload, out);
        let fcs = !fcs16(fcs16(FCS_INIT, header), payload);
        self.escape_into(&fcs.to_le_bytes(), out);
        out.push(FLAG);
    }

    /// Like [`Encoder::encode`] but escaping with the all-ones ACCM regardless of
    /// the negotiated one: used for LCP negotiation packets (RFC 1662 §7.1).
    pub fn encode_default_accm(header: &[u8], payload: &[u8], out: &mut Vec<u8>) {
        DEFAULT_ENCODER.encode(header, payload, out);
    }

    fn escape_into(&self, data: &[u8], out: &mut Vec<u8>) {
        if dense(self.accm) {
            self.escape_dense(data, out);
        } else {
            self.escape_sparse(data, out);
        }
    }

    /// Runs of bytes that need no escape are found eight at a time and copied whole.
    fn escape_sparse(&self, data: &[u8], out: &mut Vec<u8>) {
        let mut from = 0;
        loop {
            let k = swar::find(data, from, self.accm != 0, |b| self.escape[usize::from(b)]);
            out.extend_from_slice(&data[from..k]);
            let Some(&b) = data.get(k) else {
                return;
            };
            out.push(ESCAPE);
            out.push(b ^ ESCAPE_XOR);
            from = k + 1;
        }
    }

    /// Every byte the same way, no branch on its value: store the two bytes
    /// `ESCAPE, b ^ 0x20` (or `b` and a byte the next store overwrites) and
    /// advance by two or one. Four bytes per step, so the output position, the
    /// only state carried along, is updated once per step.
    fn escape_dense(&self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + 2 * data.len(), 0);
        let buf = &mut out[start..];
        let t = &self.expand;
        let mut len = 0;
        let mut quads = data.chunks_exact(4);
        for q in &mut quads {
            let e = [
                t[usize::from(q[0])],
                t[usize::from(q[1])],
                t[usize::from(q[2])],
                t[usize::from(q[3])],
            ];
            let step = |x: u32| 1 + (x >> 16 & 1) as usize;
            let o1 = step(e[0]);
            let o2 = o1 + step(e[1]);
            let o3 = o2 + step(e[2]);
            let w = &mut buf[len..len + 8];
            w[0..2].copy_from_slice(&(e[0] as u16).to_le_bytes());
            w[o1..o1 + 2].copy_from_slice(&(e[1] as u16).to_le_bytes());
            w[o2..o2 + 2].copy_from_slice(&(e[2] as u16).to_le_bytes());
            w[o3..o3 + 2].copy_from_slice(&(e[3] as u16).to_le_bytes());
            len += o3 + step(e[3]);
        }
        for &b in quads.remainder() {
            let e = t[usize::from(b)];
            buf[len..len + 2].copy_from_slice(&(e as u16).to_le_bytes());
            len += 1 + (e >> 16 & 1) as usize;
        }
        out.truncate(start + len);
    }
}

static DEFAULT_ENCODER: Encoder = Encoder::new(ACCM_ALL);

/// Which bytes the encoder escapes: ACCM-selected control characters, flag, escape.
const fn escape_table(accm: u32) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 32 {
        t[c] = accm & (1 << c) != 0;
        c += 1;
    }
    t[FLAG as usize] = true;
    t[ESCAPE as usize] = true;
    t
}

/// Why a frame's address/control/protocol header could not be parsed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The frame ended inside the header.
    #[error("frame too short for a PPP header")]
    Truncated,
    /// Address was 0xff but control was not 0x03.
    #[error("bad HDLC control field {0:#04x}")]
    BadControl(u8),
    /// Protocol numbers have an odd low byte and an even high byte (RFC 1661 §2).
    #[error("invalid protocol field {0:#06x}")]
    BadProtocol(u16),
}

/// The PPP header in front of the information field, with optional compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// PPP protocol number.
    pub protocol: u16,
}

impl Header {
    /// Emit the header into a small buffer, returning it and its length.
    ///
    /// `acfc` omits `ff 03`; `pfc` sends protocols below 0x100 as one byte.
    /// The caller must never compress LCP frames (RFC 1661 §6.6); the session
    /// never asks it to.
    pub fn emit(&self, acfc: bool, pfc: bool) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let mut n = 0;
        if !acfc {
            h[0] = ADDRESS;
            h[1] = CONTROL;
            n = 2;
        }
        let (p, len) = emit_protocol(self.protocol, pfc);
        h[n..n + len].copy_from_slice(&p[..len]);
        (h, n + len)
    }

    /// Parse the header of a decoded frame, accepting compressed and
    /// uncompressed forms. Returns the header and the information field.
    pub fn parse(frame: &[u8]) -> Result<(Header, &[u8]), HeaderError> {
        let rest = match frame {
            [ADDRESS, CONTROL, rest @ ..] => rest,
            [ADDRESS, c, ..] => return Err(HeaderError::BadControl(*c)),
            [] => return Err(HeaderError::Truncated),
            rest => rest,
        };
        let (protocol, info) = parse_protocol(rest)?;
        Ok((Header { protocol }, info))
    }
}

/// Emit a protocol field alone, one byte when `pfc` allows it (below 0x100).
///
/// Shared with Multilink, whose reassembled packets start with a protocol field of their own.
pub fn emit_protocol(protocol: u16, pfc: bool) -> ([u8; 2], usize) {
    let [hi, lo] = protocol.to_be_bytes();
    if pfc && hi == 0 {
        ([lo, 0], 1)
    } else {
        ([hi, lo], 2)
    }
}

/// Parse a protocol field alone (compressed or not) and return it with what follows.
///
/// Shared with Multilink, whose reassembled packets start with a protocol field of their own.
pub fn parse_protocol(buf: &[u8]) -> Result<(u16, &[u8]), HeaderError> {
    let (protocol, info) = match buf {
        // An odd first byte is a compressed (one-byte) protocol field.
        [p, info @ ..] if p & 1 == 1 => (u16::from(*p), info),
        [hi, lo, info @ ..] => (u16::from_be_bytes([*hi, *lo]), info),
        _ => return Err(HeaderError::Truncated),
    };
    if protocol & 0x0001 == 0 || protocol & 0x0100 != 0 {
        return Err(HeaderError::BadProtocol(protocol));
    }
    Ok((protocol, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit-at-a-time FCS straight from RFC 1662 §C.2's description, to check the tables.
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

    /// The decoder's behaviour one byte at a time, as RFC 1662 describes it: the
    /// model the fast paths must match exactly (frames and counters).
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
                    stats.aborted += 1;
                } else if buf.is_empty() {
                    continue;
                } else if buf.len() < 1 + FCS_LEN {
                    stats.aborted += 1;
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
                    stats.aborted += 1;
                    (hunting, escaped) = (true, false);
                    buf.clear();
                } else {
                    escaped = true;
                }
            } else if b < 0x20 && accm & (1 << b) != 0 {
                // dropped
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

    /// Bytes that exercise every class: flags, escapes, control characters, data.
    fn wire_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(FLAG),
            Just(ESCAPE),
            0u8..0x20,
            any::<u8>(),
            any::<u8>()
        ]
    }

    fn decode_all(dec: &mut Decoder, mut input: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, f) = dec.push(input);
            if let Some(f) = f {
                out.push(f.to_vec());
            }
            input = &input[n..];
        }
        out
    }

    #[test]
    fn fcs_table_matches_rfc1662() {
        // First entries of the fcstab printed in RFC 1662 §C.2.
        assert_eq!(
            &FCS_TABLES[0][..8],
            &[
                0x0000, 0x1189, 0x2312, 0x329b, 0x4624, 0x57ad, 0x6536, 0x74bf
            ]
        );
        assert_eq!(FCS_TABLES[0][255], 0x0f78);
    }

    #[test]
    fn fcs_check_value() {
        // CRC-16/X-25 catalogue check value: !fcs("123456789") == 0x906e.
        assert_eq!(!fcs16(FCS_INIT, b"123456789"), 0x906e);
        assert_eq!(fcs_bitwise(b"123456789"), fcs16(FCS_INIT, b"123456789"));
    }

    #[test]
    fn fcs_good_residue() {
        let data = b"\xff\x03\xc0\x21\x09\x01\x00\x08\x00\x00\x00\x00";
        let fcs = !fcs16(FCS_INIT, data);
        let mut framed = data.to_vec();
        framed.extend_from_slice(&fcs.to_le_bytes());
        assert_eq!(fcs16(FCS_INIT, &framed), FCS_GOOD);
    }

    /// pppd's first LCP Configure-Request (asyncmap 0, magic 0x12345678, pfc,
    /// acfc), as it appears on the wire: everything below 0x20 escaped because
    /// LCP negotiation always uses the all-ones ACCM.
    #[test]
    fn golden_lcp_configure_request_frame() {
        let pkt = [
            0x01, 0x01, 0x00, 0x14, // Configure-Request id 1 len 20
            0x02, 0x06, 0x00, 0x00, 0x00, 0x00, // ACCM 0
            0x05, 0x06, 0x12, 0x34, 0x56, 0x78, // magic
            0x07, 0x02, // PFC
            0x08, 0x02, // ACFC
        ];
        let (h, n) = Header { protocol: 0xc021 }.emit(false, false);
        let mut out = Vec::new();
        Encoder::new(ACCM_ALL).encode(&h[..n], &pkt, &mut out);
        // 0x12 of the magic number is a control character too; FCS 0xef4c
        // (computed with the bit-serial reference below) goes out low byte first.
        let expect = [
            0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7d, 0x21, 0x7d, 0x21, 0x7d, 0x20, 0x7d, 0x34,
            0x7d, 0x22, 0x7d, 0x26, 0x7d, 0x20, 0x7d, 0x20, 0x7d, 0x20, 0x7d, 0x20, 0x7d, 0x25,
            0x7d, 0x26, 0x7d, 0x32, 0x34, 0x56, 0x78, 0x7d, 0x27, 0x7d, 0x22, 0x7d, 0x28, 0x7d,
            0x22, 0x4c, 0xef, 0x7e,
        ];
        let header_and_pkt = [&[0xffu8, 0x03, 0xc0, 0x21][..], &pkt[..]].concat();
        assert_eq!(!fcs_bitwise(&header_and_pkt), 0xef4c);
        assert_eq!(out, expect);

        let mut dec = Decoder::new(1500);
        let frames = decode_all(&mut dec, &out);
        assert_eq!(frames.len(), 1);
        let (hdr, info) = Header::parse(&frames[0]).unwrap();
        assert_eq!(hdr.protocol, 0xc021);
        assert_eq!(info, &pkt);
    }

    #[test]
    fn decoder_handles_split_input_and_idle_flags() {
        let mut enc_out = Vec::new();
        let enc = Encoder::new(0);
        enc.encode(
            &[0xff, 0x03, 0x00, 0x21],
            b"hello\x7e\x7d\x11world",
            &mut enc_out,
        );
        enc.encode(&[0x21], b"second", &mut enc_out);
        let mut wire = b"garbage CONNECT 115200\r\n".to_vec();
        wire.extend_from_slice(&[0x7e, 0x7e, 0x7e]);
        wire.extend_from_slice(&enc_out);
        let mut dec = Decoder::new(1500);
        dec.set_accm(0);
        let mut frames = Vec::new();
        for b in wire.chunks(3) {
            frames.extend(decode_all(&mut dec, b));
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(
            Header::parse(&frames[0]).unwrap().1,
            b"hello\x7e\x7d\x11world"
        );
        let (h, info) = Header::parse(&frames[1]).unwrap();
        assert_eq!((h.protocol, info), (0x21, &b"second"[..]));
        assert_eq!(dec.stats().bad_fcs, 0);
    }

    #[test]
    fn decoder_drops_unescaped_accm_chars() {
        let mut out = Vec::new();
        Encoder::new(ACCM_ALL).encode(&[0xff, 0x03, 0x00, 0x21], b"\x11\x13data", &mut out);
        // A modem inserts XON/XOFF (0x11, 0x13) in the middle of the frame.
        let mut noisy = out[..5].to_vec();
        noisy.extend_from_slice(&[0x11, 0x13]);
        noisy.extend_from_slice(&out[5..]);
        let mut dec = Decoder::new(1500);
        let frames = decode_all(&mut dec, &noisy);
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][4..], b"\x11\x13data");
    }

    #[test]
    fn decoder_counts_bad_fcs_and_resyncs() {
        let mut out = Vec::new();
        let enc = Encoder::new(0);
        enc.encode(&[0x21], b"one", &mut out);
        let corrupt = out.len() / 2;
        out[corrupt] ^= 0x01;
        enc.encode(&[0x21], b"two", &mut out);
        let mut dec = Decoder::new(1500);
        let frames = decode_all(&mut dec, &out);
        assert_eq!(frames, vec![b"\x21two".to_vec()]);
        assert_eq!(dec.stats().bad_fcs, 1);
    }

    #[test]
    fn decoder_enforces_mru_and_recovers() {
        let enc = Encoder::new(0);
        let mut out = Vec::new();
        enc.encode(&[0x21], &[0x55; 200], &mut out);
        enc.encode(&[0x21], &[0x66; 100], &mut out);
        let mut dec = Decoder::new(100);
        let frames = decode_all(&mut dec, &out);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 101);
        assert_eq!(dec.stats().oversize, 1);
    }

    #[test]
    fn decoder_counts_abort_and_runt() {
        let mut dec = Decoder::new(1500);
        let wire = [0x7e, 0x21, 0x01, 0x7d, 0x7e, 0x21, 0x7e, 0x7e];
        assert!(decode_all(&mut dec, &wire).is_empty());
        assert_eq!(dec.stats().aborted, 2); // the abort, then the 1-byte runt
    }

    #[test]
    fn header_compression_forms() {
        for (acfc, pfc, want) in [
            (false, false, &[0xff, 0x03, 0x00, 0x21][..]),
            (true, false, &[0x00, 0x21][..]),
            (false, true, &[0xff, 0x03, 0x21][..]),
            (true, true, &[0x21][..]),
        ] {
            let (h, n) = Header { protocol: 0x0021 }.emit(acfc, pfc);
            assert_eq!(&h[..n], want);
            let (p, info) = Header::parse(&h[..n]).unwrap();
            assert_eq!((p.protocol, info.len()), (0x21, 0));
        }
        // Protocols >= 0x100 are never compressed.
        let (h, n) = Header { protocol: 0xc021 }.emit(true, true);
        assert_eq!(&h[..n], &[0xc0, 0x21]);
        assert_eq!(
            Header::parse(&[0xff, 0x05, 0x00]),
            Err(HeaderError::BadControl(0x05))
        );
        assert_eq!(
            Header::parse(&[0x00, 0x20]),
            Err(HeaderError::BadProtocol(0x20))
        );
        assert_eq!(Header::parse(&[0xc0]), Err(HeaderError::Truncated));
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn fcs_tables_equal_bitwise(data in proptest::collection::vec(any::<u8>(), 0..100), split in 0usize..100) {
            prop_assert_eq!(fcs16(FCS_INIT, &data), fcs_bitwise(&data));
            let (a, b) = data.split_at(split.min(data.len()));
            prop_assert_eq!(fcs16(fcs16(FCS_INIT, a), b), fcs_bitwise(&data));
        }

        #[test]
        fn encode_decode_roundtrip(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..5),
            tx_accm in any::<u32>(),
            chunk in 1usize..64,
        ) {
            let enc = Encoder::new(tx_accm);
            let mut wire = Vec::new();
            for p in &payloads {
                enc.encode(&[0xff, 0x03], p, &mut wire);
            }
            // Nothing the receiver would drop may appear unescaped.
            for &b in &wire {
                prop_assert!(b >= 0x20 || tx_accm & (1 << b) == 0);
            }
            let mut dec = Decoder::new(400);
            dec.set_accm(tx_accm);
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                got.extend(decode_all(&mut dec, c));
            }
            let want: Vec<Vec<u8>> = payloads.iter().map(|p| [&[0xff, 0x03][..], p].concat()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn decoder_matches_bytewise_reference(
            data in proptest::collection::vec(wire_byte(), 0..3000),
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6),
            accm in prop_oneof![Just(ACCM_ALL), Just(0u32), any::<u32>()],
            tx_accm in prop_oneof![Just(ACCM_ALL), Just(0u32), any::<u32>()],
            mru in 0usize..160,
            chunk in 1usize..200,
        ) {
            // Noise with good frames mixed in, so every path (good FCS too) is hit.
            let mut wire = data.clone();
            let enc = Encoder::new(tx_accm);
            for (i, f) in frames.iter().enumerate() {
                let mut framed = Vec::new();
                enc.encode(&[0x21], f, &mut framed);
                let at = (i * 997) % (wire.len() + 1);
                wire.splice(at..at, framed);
            }
            let (want, want_stats) = reference_decode(&wire, accm, mru);
            let mut dec = Decoder::new(mru);
            dec.set_accm(accm);
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                got.extend(decode_all(&mut dec, c));
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(dec.stats(), want_stats);
        }

        #[test]
        fn encoder_matches_bytewise_reference(
            data in proptest::collection::vec(wire_byte(), 0..600),
            accm in prop_oneof![Just(ACCM_ALL), Just(0u32), any::<u32>()],
        ) {
            let mut want = vec![FLAG];
            let fcs = !fcs_bitwise(&data);
            for &b in data.iter().chain(&fcs.to_le_bytes()) {
                if b == FLAG || b == ESCAPE || (b < 0x20 && accm & (1 << b) != 0) {
                    want.extend([ESCAPE, b ^ ESCAPE_XOR]);
                } else {
                    want.push(b);
                }
            }
            want.push(FLAG);
            let mut got = vec![0xaa]; // appends, keeping what is there
            Encoder::new(accm).encode(&[], &data, &mut got);
            prop_assert_eq!(&got[1..], &want[..]);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), accm in any::<u32>(), mru in 0usize..100) {
            let mut dec = Decoder::new(mru);
            dec.set_accm(accm);
            for f in decode_all(&mut dec, &data) {
                prop_assert!(f.len() <= mru + MAX_HEADER_LEN);
                let _ = Header::parse(&f);
            }
        }
    }
}
