//! Typed views over PPP control packets (LCP, IPCP, PAP, CHAP all share the
//! `code | identifier | length | data` layout) and over configuration options.
//!
//! Parsing never panics: every accessor checks lengths and returns a
//! [`PacketError`]. Emitting appends to a caller-owned `Vec<u8>`.

use std::net::Ipv4Addr;

use thiserror::Error;

/// Configure-Request.
pub const CONFIGURE_REQUEST: u8 = 1;
/// Configure-Ack.
pub const CONFIGURE_ACK: u8 = 2;
/// Configure-Nak.
pub const CONFIGURE_NAK: u8 = 3;
/// Configure-Reject.
pub const CONFIGURE_REJECT: u8 = 4;
/// Terminate-Request.
pub const TERMINATE_REQUEST: u8 = 5;
/// Terminate-Ack.
pub const TERMINATE_ACK: u8 = 6;
/// Code-Reject.
pub const CODE_REJECT: u8 = 7;
/// Protocol-Reject (LCP only).
pub const PROTOCOL_REJECT: u8 = 8;
/// Echo-Request (LCP only).
pub const ECHO_REQUEST: u8 = 9;
/// Echo-Reply (LCP only).
pub const ECHO_REPLY: u8 = 10;
/// Discard-Request (LCP only).
pub const DISCARD_REQUEST: u8 = 11;

/// Length of the code/identifier/length header.
pub const HEADER_LEN: usize = 4;

/// Why a control packet or option list was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than the 4-byte header.
    #[error("packet shorter than its header")]
    Truncated,
    /// The length field is below 4 or beyond the received bytes.
    #[error("packet length field {field} does not fit {available} received bytes")]
    BadLength {
        /// Value of the length field.
        field: usize,
        /// Bytes actually received.
        available: usize,
    },
    /// An option's length byte is below 2 or runs past the end of the list.
    #[error("malformed configuration option list")]
    BadOption,
}

/// A parsed control packet borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket<'a> {
    /// Packet code.
    pub code: u8,
    /// Identifier used to match requests and replies.
    pub id: u8,
    /// Data after the header, trimmed to the length field (trailing padding dropped).
    pub data: &'a [u8],
}

impl<'a> ControlPacket<'a> {
    /// Parse a packet; bytes past the length field are padding and ignored (RFC 1661 §5).
    pub fn parse(buf: &'a [u8]) -> Result<Self, PacketError> {
        let [code, id, l0, l1, ..] = *buf else {
            return Err(PacketError::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < HEADER_LEN || len > buf.len() {
            return Err(PacketError::BadLength {
                field: len,
                available: buf.len(),
            });
        }
        Ok(ControlPacket {
            code,
            id,
            data: &buf[HEADER_LEN..len],
        })
    }

    /// Append a packet with this code, id and data to `out`.
    ///
    /// `data` longer than 65531 bytes is truncated so the length field stays valid.
    pub fn emit(code: u8, id: u8, data: &[u8], out: &mut Vec<u8>) {
        let data = &data[..data.len().min(usize::from(u16::MAX) - HEADER_LEN)];
        let len = (data.len() + HEADER_LEN) as u16;
        out.extend_from_slice(&[code, id]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(data);
    }

    /// A freshly allocated packet.
    pub fn to_vec(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + data.len());
        Self::emit(code, id, data, &mut v);
        v
    }
}

/// One configuration option: `type | length | value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigOption<'a> {
    /// Option type.
    pub kind: u8,
    /// Option value (after the two-byte type/length header).
    pub value: &'a [u8],
}

impl<'a> ConfigOption<'a> {
    /// The value as a big-endian u16, if it is exactly two bytes.
    pub fn as_u16(&self) -> Option<u16> {
        <[u8; 2]>::try_from(self.value).ok().map(u16::from_be_bytes)
    }

    /// The value as a big-endian u32, if it is exactly four bytes.
    pub fn as_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.value).ok().map(u32::from_be_bytes)
    }

    /// The value as an IPv4 address, if it is exactly four bytes.
    pub fn as_ipv4(&self) -> Option<Ipv4Addr> {
        self.as_u32().map(Ipv4Addr::from)
    }

    /// Append the option, header included, to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        emit_option(out, self.kind, self.value);
    }
}

/// Append an option of type `kind` with `value` (at most 253 bytes are kept).
pub fn emit_option(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = &value[..value.len().min(253)];
    out.push(kind);
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
}

/// Iterator over an option list; yields an error (once, then stops) on a bad length.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// View `data` (a Configure-* packet's data) as options.
    pub fn new(data: &'a [u8]) -> Self {
        Options { rest: data }
    }

    /// Check the whole list is well formed without looking at the values.
    pub fn validate(data: &[u8]) -> Result<(), PacketError> {
        Options::new(data).try_for_each(|o| o.map(|_| ()))
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<ConfigOption<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, tail) = self.rest.split_first()?;
        let Some(&len) = tail.first() else {
            self.rest = &[];
            return Some(Err(PacketError::BadOption));
        };
        let len = usize::from(len);
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(PacketError::BadOption));
        }
        let value = &self.rest[2..len];
        self.rest = &self.rest[len..];
        Some(Ok(ConfigOption { kind, value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit_packet() {
        let bytes = [1, 7, 0, 6, 0xaa, 0xbb, 0xcc /* padding */];
        let p = ControlPacket::parse(&bytes).unwrap();
        assert_eq!((p.code, p.id, p.data), (1, 7, &[0xaa, 0xbb][..]));
        assert_eq!(ControlPacket::to_vec(1, 7, &[0xaa, 0xbb]), &bytes[..6]);
    }

    #[test]
    fn bad_packets_are_errors() {
        assert_eq!(
            ControlPacket::parse(&[1, 2, 0]),
            Err(PacketError::Truncated)
        );
        assert!(matches!(
            ControlPacket::parse(&[1, 2, 0, 3]),
            Err(PacketError::BadLength { .. })
        ));
        assert!(matches!(
            ControlPacket::parse(&[1, 2, 0, 9, 0]),
            Err(PacketError::BadLength { .. })
        ));
    }

    #[test]
    fn options_iterate_and_reject_bad_lengths() {
        let data = [1, 4, 0x05, 0xdc, 7, 2];
        let opts: Vec<_> = Options::new(&data).collect::<Result<_, _>>().unwrap();
        assert_eq!(opts.len(), 2);
        assert_eq!(opts[0].as_u16(), Some(1500));
        assert_eq!(opts[1].value, &[] as &[u8]);
        for bad in [&[1u8, 0][..], &[1, 1], &[1, 5, 0, 0], &[7]] {
            assert_eq!(
                Options::validate(bad),
                Err(PacketError::BadOption),
                "{bad:?}"
            );
        }
        assert_eq!(Options::validate(&[]), Ok(()));
    }
}
