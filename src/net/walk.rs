//! A checked walk over netlink datagrams (messages, then attributes), shared by the conntrack
//! dump reader and the kernel change watcher. Every length is checked; nothing panics on any
//! input (the netlink-packet crates' parsers do, on malformed attributes).

use std::io;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// One netlink message of a datagram.
pub(crate) enum Message<'a> {
    Done,
    /// An error message with code 0.
    Ack,
    /// The positive errno of an error message.
    Error(i32),
    Other {
        kind: u16,
        payload: &'a [u8],
    },
}

/// The netlink messages of a datagram: a typed walk over the bytes, every length checked.
pub(crate) struct Messages<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Messages<'a> {
    pub(crate) fn new(datagram: &'a [u8]) -> Self {
        Messages {
            rest: datagram,
            offset: 0,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Message<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let invalid = |offset: usize, what: &str| {
            Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink message at byte {offset}: {what}"),
            )))
        };
        let Some(header) = self.rest.get(..16) else {
            self.rest = &[];
            return invalid(self.offset, "shorter than its 16-byte header");
        };
        let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let Some(payload) = self.rest.get(16..length.max(16)) else {
            self.rest = &[];
            return invalid(self.offset, "its length runs past the datagram");
        };
        let step = (length.max(16) + 3) & !3;
        self.rest = self.rest.get(step..).unwrap_or(&[]);
        self.offset += step;
        Some(Ok(match kind {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => match payload.get(..4) {
                Some(code) => match i32::from_ne_bytes([code[0], code[1], code[2], code[3]]) {
                    0 => Message::Ack,
                    code => Message::Error(code.saturating_neg()),
                },
                None => return invalid(self.offset - step, "an error message without its code"),
            },
            kind => Message::Other { kind, payload },
        }))
    }
}

/// An attribute whose length runs past its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

/// The attributes (type without the nested/byte-order flags, value) in `data`; a malformed
/// one is the last item, as `Err(Truncated)` (`map_while(Result::ok)` stops before it).
pub(crate) fn attributes(mut data: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Truncated>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let parsed = data.get(..4).and_then(|header| {
            let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
            let kind = u16::from_ne_bytes([header[2], header[3]]) & 0x3fff;
            let value = data.get(4..length.max(4))?;
            Some((kind, value, (length.max(4) + 3) & !3))
        });
        match parsed {
            Some((kind, value, step)) => {
                data = data.get(step..).unwrap_or(&[]);
                Some(Ok((kind, value)))
            }
            None => {
                data = &[];
                Some(Err(Truncated))
            }
        }
    })
}
