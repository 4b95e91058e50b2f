//! The Multilink header (RFC 1990 §3): protocol 0x003d, then the B(egin) and E(nd) bits and a
//! 24-bit (long format) or 12-bit (short format, if the receiver asked for it with the SSNHF
//! option) sequence number, then the fragment's bytes.
//!
//! ```text
//! long:  |B|E|0|0|0|0|0|0|  sequence number (24 bits)  |  fragment data…
//! short: |B|E|0|0| seq (12 bits) |                        fragment data…
//! ```
//!
//! Sequence numbers wrap; [`SeqFormat`] has the serial arithmetic for both widths.

use thiserror::Error;

/// PPP protocol number of Multilink fragments.
pub const PROTOCOL: u16 = 0x003d;

/// The B (first fragment of a packet) bit.
const BEGIN: u8 = 0x80;
/// The E (last fragment of a packet) bit.
const END: u8 = 0x40;

/// The header format, which fixes the sequence number's width.
///
/// Each direction has its own: a side that acknowledged the peer's SSNHF option sends short
/// headers, a side whose SSNHF was acknowledged receives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqFormat {
    /// 24-bit sequence numbers, 4-byte header (the default).
    Long,
    /// 12-bit sequence numbers, 2-byte header (RFC 1990 §5.1.2).
    Short,
}

impl SeqFormat {
    /// The format for a direction where short sequence numbers were (not) agreed.
    pub const fn new(short: bool) -> Self {
        if short {
            SeqFormat::Short
        } else {
            SeqFormat::Long
        }
    }

    /// Width of the sequence number in bits.
    pub const fn bits(self) -> u32 {
        match self {
            SeqFormat::Long => 24,
            SeqFormat::Short => 12,
        }
    }

    /// Number of distinct sequence numbers.
    pub const fn modulus(self) -> u32 {
        1 << self.bits()
    }

    /// Mask of the sequence number bits.
    pub const fn mask(self) -> u32 {
        self.modulus() - 1
    }

    /// Bytes of the MP header (after the PPP protocol field).
    pub const fn header_len(self) -> usize {
        match self {
            SeqFormat::Long => 4,
            SeqFormat::Short => 2,
        }
    }

    /// `seq + n`, wrapped.
    pub const fn add(self, seq: u32, n: u32) -> u32 {
        seq.wrapping_add(n) & self.mask()
    }

    /// The signed distance `a - b` in serial arithmetic: the shorter way round the circle,
    /// so that numbers just past a wrap count as later.
    pub const fn distance(self, a: u32, b: u32) -> i32 {
        let m = self.modulus();
        let d = a.wrapping_sub(b) & self.mask();
        if d >= m / 2 {
            d as i32 - m as i32
        } else {
            d as i32
        }
    }

    /// `a` comes before `b` (serial arithmetic).
    pub const fn is_before(self, a: u32, b: u32) -> bool {
        self.distance(a, b) < 0
    }

    /// Unwrap `seq` onto a 64-bit line: the number congruent to `seq` nearest `reference`.
    /// Keeping unwrapped numbers lets the reassembler sort and compare without caring about
    /// the wrap; `reference` should stay at or above [`SeqFormat::modulus`] so the result
    /// cannot go below zero (it saturates at 0 if it would).
    pub const fn unwrap(self, reference: u64, seq: u32) -> u64 {
        let d = self.distance(seq, (reference & self.mask() as u64) as u32);
        reference.saturating_add_signed(d as i64)
    }
}

/// Why an MP header could not be read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MpHeaderError {
    /// Fewer bytes than the header of the agreed format.
    #[error("Multilink fragment of {got} bytes is shorter than its {need}-byte header")]
    Truncated {
        /// Header length of the format.
        need: usize,
        /// Bytes received.
        got: usize,
    },
}

/// One Multilink fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpHeader {
    /// First fragment of a packet.
    pub begin: bool,
    /// Last fragment of a packet.
    pub end: bool,
    /// Sequence number (only the format's low bits are sent).
    pub seq: u32,
}

impl MpHeader {
    /// Parse the header of a fragment (the PPP information field of a 0x003d frame) in
    /// `format`; returns it and the fragment data. The reserved bits are ignored, as Linux
    /// does, so that a peer setting them still gets through.
    pub fn parse(buf: &[u8], format: SeqFormat) -> Result<(MpHeader, &[u8]), MpHeaderError> {
        let need = format.header_len();
        let (Some(head), Some(data)) = (buf.get(..need), buf.get(need..)) else {
            return Err(MpHeaderError::Truncated {
                need,
                got: buf.len(),
            });
        };
        let seq = match *head {
            [b0, b1] => u32::from(b0 & 0x0f) << 8 | u32::from(b1),
            [_, b1, b2, b3] => u32::from_be_bytes([0, b1, b2, b3]),
            _ => 0, // not reached: `need` is 2 or 4
        };
        let flags = head.first().copied().unwrap_or(0);
        Ok((
            MpHeader {
                begin: flags & BEGIN != 0,
                end: flags & END != 0,
                seq,
            },
            data,
        ))
    }

    /// The header's bytes in `format`, with their length (2 or 4).
    pub fn to_bytes(&self, format: SeqFormat) -> ([u8; 4], usize) {
        let flags = if self.begin { BEGIN } else { 0 } | if self.end { END } else { 0 };
        let seq = self.seq & format.mask();
        let [_, b1, b2, b3] = seq.to_be_bytes();
        match format {
            SeqFormat::Long => ([flags, b1, b2, b3], 4),
            SeqFormat::Short => ([flags | b2, b3, 0, 0], 2),
        }
    }

    /// Append the header in `format` to `out`.
    pub fn emit(&self, format: SeqFormat, out: &mut Vec<u8>) {
        let (bytes, len) = self.to_bytes(format);
        out.extend_from_slice(&bytes[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn long_and_short_headers_on_the_wire() {
        let h = MpHeader {
            begin: true,
            end: false,
            seq: 0x0012_3456,
        };
        let mut out = Vec::new();
        h.emit(SeqFormat::Long, &mut out);
        assert_eq!(out, [0x80, 0x12, 0x34, 0x56]);
        let h = MpHeader {
            begin: false,
            end: true,
            seq: 0xabc,
        };
        out.clear();
        h.emit(SeqFormat::Short, &mut out);
        assert_eq!(out, [0x4a, 0xbc]);
        out.extend_from_slice(b"data");
        assert_eq!(
            MpHeader::parse(&out, SeqFormat::Short),
            Ok((h, &b"data"[..]))
        );
    }

    #[test]
    fn reserved_bits_are_ignored_and_short_input_is_an_error() {
        let (h, rest) = MpHeader::parse(&[0xff, 0, 0, 1], SeqFormat::Long).unwrap();
        assert_eq!((h.begin, h.end, h.seq, rest.len()), (true, true, 1, 0));
        let (h, _) = MpHeader::parse(&[0x3f, 0xff], SeqFormat::Short).unwrap();
        assert_eq!((h.begin, h.end, h.seq), (false, false, 0xfff));
        assert_eq!(
            MpHeader::parse(&[0x80, 0, 0], SeqFormat::Long),
            Err(MpHeaderError::Truncated { need: 4, got: 3 })
        );
        assert!(MpHeader::parse(&[0x80], SeqFormat::Short).is_err());
    }

    #[test]
    fn serial_arithmetic_wraps() {
        for f in [SeqFormat::Short, SeqFormat::Long] {
            let top = f.mask();
            assert_eq!(f.add(top, 1), 0);
            assert_eq!(f.distance(0, top), 1);
            assert_eq!(f.distance(top, 0), -1);
            assert!(f.is_before(top, 2));
            assert!(!f.is_before(2, top));
            let base = u64::from(f.modulus()) * 5;
            assert_eq!(
                f.unwrap(base + u64::from(top), 3),
                base + u64::from(top) + 4
            );
            assert_eq!(f.unwrap(base + 2, top), base - 1);
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(
            bytes in proptest::collection::vec(any::<u8>(), 0..8),
            short: bool,
        ) {
            let f = SeqFormat::new(short);
            if let Ok((h, rest)) = MpHeader::parse(&bytes, f) {
                let mut out = Vec::new();
                h.emit(f, &mut out);
                out.extend_from_slice(rest);
                prop_assert_eq!(out.len(), bytes.len());
                // Equal up to the reserved bits.
                let (h2, rest2) = MpHeader::parse(&out, f).unwrap();
                prop_assert_eq!((h2, rest2), (h, rest));
            }
        }

        #[test]
        fn unwrap_inverts_wrapping(
            base in 1u64 << 30..1u64 << 40,
            step in -2000i64..2000,
            short: bool,
        ) {
            let f = SeqFormat::new(short);
            let target = base.saturating_add_signed(step);
            let seq = (target & u64::from(f.mask())) as u32;
            prop_assert_eq!(f.unwrap(base, seq), target);
        }
    }
}
