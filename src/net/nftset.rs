//! Replacing the elements of nftables sets and maps over netlink, from the process: one
//! nfnetlink batch is one nf_tables transaction, so the kernel switches every set of the batch
//! from its old elements to its new ones atomically, as `nft -f` does, without starting a
//! process per change (least-loaded may change the pick table many times a second).
//!
//! Only element updates go this way (flush a set, add its elements); tables, chains and rules
//! are made by `nft` ([`super::nft`]), rarely. The replies are read by [`super::walk`].

use std::io;

use netlink_sys::Socket;

use super::walk::{Message, Messages};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = (NFNL_SUBSYS_NFTABLES << 8) | 12;
const NFT_MSG_DELSETELEM: u16 = (NFNL_SUBSYS_NFTABLES << 8) | 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
/// `NFPROTO_INET`: the table family `inet`.
pub const FAMILY_INET: u8 = 1;

/// The new contents of one set or map: its elements are replaced by these (key, and the
/// value for a map), in the kernel's byte layout of the set's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetContents {
    pub set: String,
    pub elements: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Replaces the contents of `sets` of table `family` `table` in one transaction; returns when
/// the kernel has applied it (or refused it: nothing then changed). Must be called from a
/// thread in the network namespace to change; the kernel's answer is awaited on a blocking
/// thread, bounded by a deadline.
pub async fn replace(family: u8, table: &str, sets: &[SetContents]) -> io::Result<()> {
    let (batch, acks) = encode_replace(family, table, sets);
    let socket = super::request::send(&batch)?;
    super::request::off_runtime("nf_tables reply reader", move || read_acks(&socket, acks)).await
}

/// Waits for `acks` acknowledgements; the first error is the batch's (the kernel then applied
/// none of it).
fn read_acks(socket: &Socket, mut acks: usize) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    while acks > 0 {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "nf_tables closed the socket before answering",
            ));
        }
        for message in Messages::new(&buf[..n]) {
            match message? {
                Message::Ack => acks = acks.saturating_sub(1),
                Message::Error(code) => return Err(io::Error::from_raw_os_error(code)),
                Message::Done | Message::Other { .. } => {}
            }
        }
    }
    Ok(())
}

/// The batch that replaces the sets' contents, and how many acknowledgements it asks for.
pub fn encode_replace(family: u8, table: &str, sets: &[SetContents]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut seq = 0u32;
    let mut acks = 0;
    let mut message =
        |out: &mut Vec<u8>, kind: u16, flags: u16, family: u8, res_id: u16, body: &[u8]| {
            seq += 1;
            let len = 16 + 4 + body.len();
            out.extend_from_slice(&(len as u32).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&flags.to_ne_bytes());
            out.extend_from_slice(&seq.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&[family, 0]);
            out.extend_from_slice(&res_id.to_be_bytes());
            out.extend_from_slice(body);
            pad(out);
        };
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for contents in sets {
        let mut names = Vec::new();
        attr(&mut names, NFTA_SET_ELEM_LIST_TABLE, &c_string(table));
        attr(&mut names, NFTA_SET_ELEM_LIST_SET, &c_string(&contents.set));
        // Without a list of elements, a delete flushes the set.
        message(
            &mut out,
            NFT_MSG_DELSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            family,
            0,
            &names,
        );
        acks += 1;
        if contents.elements.is_empty() {
            continue;
        }
        let mut list = Vec::new();
        for (key, data) in &contents.elements {
            let mut element = Vec::new();
            nested(&mut element, NFTA_SET_ELEM_KEY, |v| {
                attr(v, NFTA_DATA_VALUE, key)
            });
            if let Some(data) = data {
                nested(&mut element, NFTA_SET_ELEM_DATA, |v| {
                    attr(v, NFTA_DATA_VALUE, data)
                });
            }
            nested(&mut list, NFTA_LIST_ELEM, |v| v.extend_from_slice(&element));
        }
        let mut body = names;
        nested(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS, |v| {
            v.extend_from_slice(&list)
        });
        message(
            &mut out,
            NFT_MSG_NEWSETELEM,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            family,
            0,
            &body,
        );
        acks += 1;
    }
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (out, acks)
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(out, kind | NLA_F_NESTED, &inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::walk::attributes;

    #[test]
    fn a_batch_flushes_and_fills_each_set_between_begin_and_end() {
        let sets = [
            SetContents {
                set: "pick".into(),
                elements: vec![(
                    0u32.to_ne_bytes().to_vec(),
                    Some(0xe101u32.to_ne_bytes().to_vec()),
                )],
            },
            SetContents {
                set: "slaves".into(),
                elements: vec![],
            },
        ];
        let (batch, acks) = encode_replace(FAMILY_INET, "eqlplus", &sets);
        assert_eq!(acks, 3, "flush pick, fill pick, flush slaves");
        let kinds: Vec<u16> = Messages::new(&batch)
            .map(|m| match m.unwrap() {
                Message::Other { kind, .. } => kind,
                _ => panic!("only requests"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                NFT_MSG_DELSETELEM,
                NFT_MSG_NEWSETELEM,
                NFT_MSG_DELSETELEM,
                NFNL_MSG_BATCH_END
            ]
        );
        // The fill names table and set and carries key → value.
        let fill = Messages::new(&batch)
            .filter_map(|m| match m.unwrap() {
                Message::Other { kind, payload } if kind == NFT_MSG_NEWSETELEM => Some(payload),
                _ => None,
            })
            .next()
            .unwrap();
        assert_eq!(fill[..4], [FAMILY_INET, 0, 0, 0]);
        let attrs: Vec<(u16, &[u8])> = attributes(&fill[4..]).map(Result::unwrap).collect();
        assert_eq!(attrs[0], (NFTA_SET_ELEM_LIST_TABLE, &b"eqlplus\0"[..]));
        assert_eq!(attrs[1], (NFTA_SET_ELEM_LIST_SET, &b"pick\0"[..]));
        let element = attributes(attrs[2].1).next().unwrap().unwrap();
        assert_eq!(element.0, NFTA_LIST_ELEM);
        let parts: Vec<(u16, &[u8])> = attributes(element.1).map(Result::unwrap).collect();
        fn value(v: &[u8]) -> (u16, &[u8]) {
            attributes(v).next().unwrap().unwrap()
        }
        assert_eq!(parts[0].0, NFTA_SET_ELEM_KEY);
        assert_eq!(
            value(parts[0].1),
            (NFTA_DATA_VALUE, &0u32.to_ne_bytes()[..])
        );
        assert_eq!(parts[1].0, NFTA_SET_ELEM_DATA);
        assert_eq!(
            value(parts[1].1),
            (NFTA_DATA_VALUE, &0xe101u32.to_ne_bytes()[..])
        );
    }
}
