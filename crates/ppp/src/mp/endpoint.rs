//! The Endpoint Discriminator (LCP option 19, RFC 1990 §5.1.3): who the far end of a link
//! is, so that links from the same system join the same bundle.

use std::fmt;
use std::net::Ipv4Addr;

use thiserror::Error;

/// Longest address of any class (pppd's `MAX_ENDP_LEN`).
pub const MAX_ADDRESS_LEN: usize = 20;

/// Endpoint Discriminator classes (RFC 1990 §5.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointClass {
    /// 0: no address (the peer has nothing better).
    Null,
    /// 1: locally assigned, up to 20 bytes.
    Local,
    /// 2: an IPv4 address.
    Ip,
    /// 3: an IEEE 802.1 MAC address.
    Mac,
    /// 4: a block of PPP magic numbers, up to 20 bytes (pppd's `endpoint magic:…`).
    Magic,
    /// 5: a public switched network directory number, up to 15 bytes.
    Phone,
}

impl EndpointClass {
    /// The class of wire value `class`, if it is one of RFC 1990's.
    pub fn from_u8(class: u8) -> Option<Self> {
        Some(match class {
            0 => EndpointClass::Null,
            1 => EndpointClass::Local,
            2 => EndpointClass::Ip,
            3 => EndpointClass::Mac,
            4 => EndpointClass::Magic,
            5 => EndpointClass::Phone,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether an address of `len` bytes fits this class.
    fn allows_len(self, len: usize) -> bool {
        match self {
            EndpointClass::Null => len == 0,
            EndpointClass::Ip => len == 4,
            EndpointClass::Mac => len == 6,
            EndpointClass::Local | EndpointClass::Magic => len <= MAX_ADDRESS_LEN,
            EndpointClass::Phone => len <= 15,
        }
    }

    /// pppd's names, which also name bundles in its logs and its `BUNDLE` variable.
    fn name(self) -> &'static str {
        match self {
            EndpointClass::Null => "null",
            EndpointClass::Local => "local",
            EndpointClass::Ip => "IP",
            EndpointClass::Mac => "MAC",
            EndpointClass::Magic => "magic",
            EndpointClass::Phone => "phone",
        }
    }
}

/// Why an Endpoint Discriminator was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum EndpointError {
    /// No class byte.
    #[error("empty endpoint discriminator")]
    Empty,
    /// Not one of classes 0–5.
    #[error("unknown endpoint discriminator class {0}")]
    UnknownClass(u8),
    /// The address length does not fit the class.
    #[error("endpoint discriminator address of {len} bytes does not fit class {class:?}")]
    BadLength {
        /// The class.
        class: EndpointClass,
        /// The address length.
        len: usize,
    },
}

/// An Endpoint Discriminator: a class and its address. `Copy` (a fixed 20-byte buffer) so
/// that LCP's option sets stay plain values.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointDiscriminator {
    class: EndpointClass,
    len: u8,
    address: [u8; MAX_ADDRESS_LEN],
}

impl EndpointDiscriminator {
    /// A discriminator of `class` with `address`, checked against the class's lengths.
    pub fn new(class: EndpointClass, address: &[u8]) -> Result<Self, EndpointError> {
        if !class.allows_len(address.len()) {
            return Err(EndpointError::BadLength {
                class,
                len: address.len(),
            });
        }
        let mut buf = [0; MAX_ADDRESS_LEN];
        buf[..address.len()].copy_from_slice(address);
        Ok(EndpointDiscriminator {
            class,
            len: address.len() as u8,
            address: buf,
        })
    }

    /// A block of magic numbers (class 4), as pppd's `endpoint magic:…`; at most 5 are kept.
    pub fn magic(numbers: &[u32]) -> Self {
        let mut buf = [0; MAX_ADDRESS_LEN];
        let numbers = &numbers[..numbers.len().min(MAX_ADDRESS_LEN / 4)];
        for (chunk, n) in buf.chunks_exact_mut(4).zip(numbers) {
            chunk.copy_from_slice(&n.to_be_bytes());
        }
        EndpointDiscriminator {
            class: EndpointClass::Magic,
            len: (numbers.len() * 4) as u8,
            address: buf,
        }
    }

    /// An IPv4 address (class 2).
    pub fn ip(addr: Ipv4Addr) -> Self {
        let mut buf = [0; MAX_ADDRESS_LEN];
        buf[..4].copy_from_slice(&addr.octets());
        EndpointDiscriminator {
            class: EndpointClass::Ip,
            len: 4,
            address: buf,
        }
    }

    /// Parse the option's value (class byte, then the address).
    pub fn parse(value: &[u8]) -> Result<Self, EndpointError> {
        let Some((&class, address)) = value.split_first() else {
            return Err(EndpointError::Empty);
        };
        let class = EndpointClass::from_u8(class).ok_or(EndpointError::UnknownClass(class))?;
        Self::new(class, address)
    }

    /// Append the option's value (class byte, then the address).
    pub fn emit_value(&self, out: &mut Vec<u8>) {
        out.push(self.class.as_u8());
        out.extend_from_slice(self.address());
    }

    /// The class.
    pub fn class(&self) -> EndpointClass {
        self.class
    }

    /// The address bytes.
    pub fn address(&self) -> &[u8] {
        &self.address[..usize::from(self.len).min(MAX_ADDRESS_LEN)]
    }
}

/// pppd's notation (`epdisc_to_str`): `null`, `IP:10.0.0.1`, `MAC:00:11:…`,
/// `magic:0a0b0c0d.01020304`, `local:61.62`, so logs read alike on both ends.
impl fmt::Display for EndpointDiscriminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.address();
        match (self.class, a) {
            (EndpointClass::Null, []) => return f.write_str("null"),
            (EndpointClass::Ip, &[a0, a1, a2, a3]) => {
                return write!(f, "IP:{}", Ipv4Addr::new(a0, a1, a2, a3));
            }
            _ => {}
        }
        let (sep, group) = match self.class {
            EndpointClass::Mac if a.len() == 6 => (':', 1),
            EndpointClass::Magic if a.len().is_multiple_of(4) => ('.', 4),
            _ => ('.', 1),
        };
        f.write_str(self.class.name())?;
        for (i, chunk) in a.chunks(group).enumerate() {
            if i == 0 {
                f.write_str(":")?;
            } else {
                write!(f, "{sep}")?;
            }
            for b in chunk {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EndpointDiscriminator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointDiscriminator({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_check_lengths() {
        assert!(EndpointDiscriminator::parse(&[0]).is_ok());
        assert!(EndpointDiscriminator::parse(&[0, 1]).is_err());
        assert!(EndpointDiscriminator::parse(&[2, 10, 0, 0, 1]).is_ok());
        assert!(EndpointDiscriminator::parse(&[2, 10, 0, 0]).is_err());
        assert!(EndpointDiscriminator::parse(&[3, 1, 2, 3, 4, 5, 6]).is_ok());
        assert!(EndpointDiscriminator::parse(&[4; 21]).is_ok());
        assert!(EndpointDiscriminator::parse(&[4; 22]).is_err());
        assert!(EndpointDiscriminator::parse(&[5; 16]).is_ok());
        assert!(EndpointDiscriminator::parse(&[5; 17]).is_err());
        assert_eq!(
            EndpointDiscriminator::parse(&[6, 1]),
            Err(EndpointError::UnknownClass(6))
        );
        assert!(EndpointDiscriminator::parse(&[]).is_err());
    }

    #[test]
    fn reads_as_pppd_writes_it() {
        let m = EndpointDiscriminator::magic(&[0x0a0b_0c0d, 0x0102_0304]);
        assert_eq!(m.to_string(), "magic:0a0b0c0d.01020304");
        let mut v = Vec::new();
        m.emit_value(&mut v);
        assert_eq!(v, [4, 10, 11, 12, 13, 1, 2, 3, 4]);
        assert_eq!(EndpointDiscriminator::parse(&v), Ok(m));
        assert_eq!(
            EndpointDiscriminator::ip(Ipv4Addr::new(10, 0, 0, 1)).to_string(),
            "IP:10.0.0.1"
        );
        let mac =
            EndpointDiscriminator::new(EndpointClass::Mac, &[0, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(mac.unwrap().to_string(), "MAC:00:11:22:33:44:55");
        let local = EndpointDiscriminator::new(EndpointClass::Local, b"ab").unwrap();
        assert_eq!(local.to_string(), "local:61.62");
        assert_eq!(
            EndpointDiscriminator::new(EndpointClass::Null, &[])
                .unwrap()
                .to_string(),
            "null"
        );
    }
}
