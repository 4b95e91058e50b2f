//! A Multilink bundle, sans-IO: the reassembler, the scheduler and the transmit sequence
//! counter shared by N member links. Member ids are the caller's (e.g. its line index).
//!
//! The bundle works on PPP information fields: [`Bundle::handle_mp_frame`] takes the
//! information field of a 0x003d frame received on a member, [`Bundle::send`] returns the
//! information fields of the 0x003d frames to send on each member (the member link frames
//! them, with its own ACCM and compression). Reassembled packets come out with their PPP
//! protocol number, whatever it is (IPv4, IPCP, …): what runs over the bundle is the
//! caller's.
//!
//! Inside a fragment stream the packet starts with its own protocol field. We send it
//! compressed when below 0x100 (as Linux does, `mp_protocol_compress`) unless told not to,
//! and accept both forms.

use std::time::Instant;

use thiserror::Error;

use super::Negotiated;
use super::header::{MpHeader, MpHeaderError, SeqFormat};
use super::reassembly::{Reassembler, ReassemblyConfig, ReassemblyStats};
use super::scheduler::{LinkState, ScheduleError, SchedulerConfig, schedule};
use crate::hdlc::{emit_protocol, parse_protocol};

/// How a bundle sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleConfig {
    /// Header format of the fragments we send (short if we acknowledged the peer's SSNHF).
    pub tx_format: SeqFormat,
    /// Header format of the fragments we receive (short if the peer acknowledged ours).
    pub rx_format: SeqFormat,
    /// Largest packet (information field) we may send: the peer's MRRU.
    pub peer_mrru: u16,
    /// Reassembly limits; its `mrru` is ours (plus the packet's protocol field).
    pub reassembly: ReassemblyConfig,
    /// How packets are split.
    pub scheduler: SchedulerConfig,
    /// Send the packet's protocol field in one byte when it can be (Linux does).
    pub compress_protocol: bool,
}

impl BundleConfig {
    /// The configuration LCP agreed on (on the bundle's first link).
    pub fn from_negotiated(n: &Negotiated) -> Self {
        BundleConfig {
            tx_format: n.tx_format(),
            rx_format: n.rx_format(),
            peer_mrru: n.peer_mrru,
            reassembly: ReassemblyConfig {
                // MRRU counts the information field; the protocol field comes on top.
                mrru: usize::from(n.our_mrru) + 2,
                ..ReassemblyConfig::default()
            },
            scheduler: SchedulerConfig::default(),
            compress_protocol: true,
        }
    }
}

/// Why the bundle refused a frame or a packet.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    /// A received fragment's MP header was short.
    #[error(transparent)]
    Header(#[from] MpHeaderError),
    /// A packet larger than the peer's MRRU.
    #[error("packet of {len} bytes exceeds the peer's MRRU of {mrru}")]
    TooBig {
        /// Packet length.
        len: usize,
        /// The peer's MRRU.
        mrru: u16,
    },
    /// No member can carry the packet.
    #[error(transparent)]
    NoLink(#[from] ScheduleError),
}

/// One MP frame to send: the information field of a 0x003d frame on `member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<K> {
    /// The member link to send it on.
    pub member: K,
    /// MP header and fragment data.
    pub info: Vec<u8>,
}

/// Bundle counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BundleStats {
    /// The reassembler's.
    pub rx: ReassemblyStats,
    /// Received fragments too short for their header.
    pub rx_malformed: u64,
    /// Reassembled packets without a valid protocol field (dropped).
    pub rx_bad_protocol: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Fragments sent.
    pub tx_fragments: u64,
}

/// One bundle: what its member links share.
#[derive(Debug)]
pub struct Bundle<K> {
    cfg: BundleConfig,
    reassembler: Reassembler<K>,
    /// Sequence number of our next fragment.
    tx_seq: u32,
    /// Our first sequence number, again when the bundle starts over.
    first_seq: u32,
    stats: BundleStats,
}

impl<K: Copy + Eq> Bundle<K> {
    /// A bundle without members; our fragments are numbered from `first_seq` on (0, as
    /// Linux does: receivers expect it, see [`ReassemblyConfig::first_seq`]).
    pub fn new(cfg: BundleConfig, first_seq: u32) -> Self {
        Bundle {
            reassembler: Reassembler::new(cfg.rx_format, cfg.reassembly),
            tx_seq: first_seq & cfg.tx_format.mask(),
            first_seq: first_seq & cfg.tx_format.mask(),
            cfg,
            stats: BundleStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BundleConfig {
        &self.cfg
    }

    /// A member link joined the bundle.
    pub fn add_member(&mut self, member: K) {
        self.reassembler.add_member(member);
    }

    /// A member link left (went down): fragments in flight on it are given up. With the
    /// last one gone the bundle starts over (numbering and reassembly): pppd makes a new
    /// bundle when a link joins again, and numbers its fragments from 0 again.
    pub fn remove_member(&mut self, member: K, now: Instant) {
        self.reassembler.remove_member(member, now);
        if self.reassembler.members().next().is_none() {
            self.reassembler.reset();
            self.tx_seq = self.first_seq;
        }
    }

    /// Member links known.
    pub fn members(&self) -> impl Iterator<Item = K> + '_ {
        self.reassembler.members()
    }

    /// The information field of a 0x003d frame received on `member`.
    pub fn handle_mp_frame(
        &mut self,
        member: K,
        info: &[u8],
        now: Instant,
    ) -> Result<(), BundleError> {
        match MpHeader::parse(info, self.cfg.rx_format) {
            Ok((header, data)) => {
                self.reassembler.push(member, header, data, now);
                Ok(())
            }
            Err(e) => {
                self.stats.rx_malformed += 1;
                Err(e.into())
            }
        }
    }

    /// Next reassembled packet: its protocol and information field, in order.
    pub fn poll_packet(&mut self) -> Option<(u16, Vec<u8>)> {
        while let Some(raw) = self.reassembler.poll_packet() {
            match parse_protocol(&raw) {
                Ok((protocol, info)) => return Some((protocol, info.to_vec())),
                Err(_) => self.stats.rx_bad_protocol += 1,
            }
        }
        None
    }

    /// When [`Bundle::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reassembler.poll_timeout()
    }

    /// Run the reassembly timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reassembler.handle_timeout(now);
    }

    /// Split a packet of `protocol` over the members as they are now (`members`: rate,
    /// queue, MRU, up); returns the MP frames to send, in sequence order.
    pub fn send(
        &mut self,
        protocol: u16,
        packet: &[u8],
        members: &[LinkState<K>],
    ) -> Result<Vec<Outgoing<K>>, BundleError> {
        if packet.len() > usize::from(self.cfg.peer_mrru) {
            return Err(BundleError::TooBig {
                len: packet.len(),
                mrru: self.cfg.peer_mrru,
            });
        }
        let (p, n) = emit_protocol(protocol, self.cfg.compress_protocol);
        let mut whole = Vec::with_capacity(n + packet.len());
        whole.extend_from_slice(&p[..n]);
        whole.extend_from_slice(packet);
        let format = self.cfg.tx_format;
        // Rotate the members per packet so that ties (idle links of one speed) do not
        // always go to the same one: every member keeps receiving, which lets the far
        // end's reassembly see losses early (M moves on every link).
        let mut rotated = members.to_vec();
        if !rotated.is_empty() {
            let by = (self.stats.tx_packets % rotated.len() as u64) as usize;
            rotated.rotate_left(by);
        }
        let plan = schedule(
            &self.cfg.scheduler,
            format,
            whole.len(),
            self.tx_seq,
            &rotated,
        )?;
        self.tx_seq = format.add(self.tx_seq, plan.len() as u32);
        self.stats.tx_packets += 1;
        self.stats.tx_fragments += plan.len() as u64;
        Ok(plan
            .into_iter()
            .map(|f| {
                let mut info = Vec::with_capacity(format.header_len() + f.range.len());
                f.header.emit(format, &mut info);
                info.extend_from_slice(whole.get(f.range).unwrap_or_default());
                Outgoing {
                    member: f.link,
                    info,
                }
            })
            .collect())
    }

    /// Counters.
    pub fn stats(&self) -> BundleStats {
        BundleStats {
            rx: self.reassembler.stats(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(tx_short: bool, rx_short: bool) -> Negotiated {
        Negotiated {
            our_mrru: 1500,
            peer_mrru: 1500,
            tx_short_seq: tx_short,
            rx_short_seq: rx_short,
            peer_endpoint: None,
        }
    }

    fn link(id: u8, rate: u64) -> LinkState<u8> {
        LinkState {
            id,
            rate,
            queued: 0,
            mru: 1500,
            up: true,
        }
    }

    #[test]
    fn two_bundles_talk_through_their_members() {
        let now = Instant::now();
        // Our side sends short headers, the far side long ones, as SSNHF would have it.
        let mut ours = Bundle::new(
            BundleConfig::from_negotiated(&negotiated(true, false)),
            4090,
        );
        let mut theirs = Bundle::new(BundleConfig::from_negotiated(&negotiated(false, true)), 0);
        for m in [1, 2] {
            ours.add_member(m);
            theirs.add_member(m);
        }
        let links = [link(1, 10_000), link(2, 10_000)];
        let ip: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        for (proto, pkt) in [
            (0x0021, &ip[..]),
            (0x8021, &[1, 1, 0, 4][..]),
            (0x0021, &ip[..100]),
        ] {
            let frames = ours.send(proto, pkt, &links).unwrap();
            // Across links in reverse: the far side reorders.
            for f in frames.iter().rev() {
                theirs.handle_mp_frame(f.member, &f.info, now).unwrap();
            }
            assert_eq!(theirs.poll_packet(), Some((proto, pkt.to_vec())));
        }
        let s = ours.stats();
        assert_eq!((s.tx_packets, s.tx_fragments), (3, 4));
        // The 1400-byte packet: short headers, IPv4's protocol field in one byte.
        let first = ours.send(0x0021, &ip, &links).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].info[0] & 0xc0, 0x80, "B on the first fragment");
        assert_eq!(first[0].info[2], 0x21, "compressed protocol field");
        assert_eq!(first[1].info[0] & 0xc0, 0x40, "E on the last fragment");
    }

    #[test]
    fn uncompressed_protocol_fields_are_read_and_errors_counted() {
        let now = Instant::now();
        let mut b: Bundle<u8> =
            Bundle::new(BundleConfig::from_negotiated(&negotiated(false, false)), 0);
        b.add_member(1);
        // B+E, seq 0, protocol 00 21 uncompressed.
        b.handle_mp_frame(1, &[0xc0, 0, 0, 0, 0x00, 0x21, 0x45], now)
            .unwrap();
        assert_eq!(b.poll_packet(), Some((0x0021, vec![0x45])));
        // An even protocol field: dropped and counted.
        b.handle_mp_frame(1, &[0xc0, 0, 0, 1, 0x00, 0x20, 0x45], now)
            .unwrap();
        assert_eq!(b.poll_packet(), None);
        assert!(b.handle_mp_frame(1, &[0xc0, 0], now).is_err());
        let s = b.stats();
        assert_eq!(
            (s.rx_bad_protocol, s.rx_malformed, s.rx.delivered),
            (1, 1, 2)
        );
    }

    /// Linux (pppd's kernel side) makes a fragment for every free channel, even an empty
    /// one, and compresses the packet's protocol field: such fragments join as well.
    #[test]
    fn linux_style_fragments_with_empty_ones_are_joined() {
        let now = Instant::now();
        let mut b: Bundle<u8> =
            Bundle::new(BundleConfig::from_negotiated(&negotiated(false, false)), 0);
        for m in 0..3 {
            b.add_member(m);
        }
        // Long headers: B + seq 0 with "21 45 00", seq 1 empty, E + seq 2 empty.
        b.handle_mp_frame(0, &[0x80, 0, 0, 0, 0x21, 0x45, 0x00], now)
            .unwrap();
        b.handle_mp_frame(2, &[0x40, 0, 0, 2], now).unwrap();
        assert_eq!(b.poll_packet(), None);
        b.handle_mp_frame(1, &[0x00, 0, 0, 1], now).unwrap();
        assert_eq!(b.poll_packet(), Some((0x0021, vec![0x45, 0x00])));
        // The next packet whole on one channel, empty fragments on the others.
        b.handle_mp_frame(1, &[0x80, 0, 0, 3, 0x21, 0x45], now)
            .unwrap();
        b.handle_mp_frame(0, &[0x00, 0, 0, 4], now).unwrap();
        b.handle_mp_frame(2, &[0x40, 0, 0, 5], now).unwrap();
        assert_eq!(b.poll_packet(), Some((0x0021, vec![0x45])));
        let s = b.stats();
        assert_eq!((s.rx.delivered, s.rx.lost, s.rx.discarded), (2, 0, 0));
    }

    #[test]
    fn an_emptied_bundle_starts_over() {
        let now = Instant::now();
        let mut b: Bundle<u8> =
            Bundle::new(BundleConfig::from_negotiated(&negotiated(false, false)), 0);
        b.add_member(1);
        for seq in 0..5u8 {
            b.handle_mp_frame(1, &[0xc0, 0, 0, seq, 0x21, seq], now)
                .unwrap();
        }
        // A fragment left waiting for its end when the last member goes.
        b.handle_mp_frame(1, &[0x80, 0, 0, 5, 0x21], now).unwrap();
        let sent = b.send(0x0021, &[1], &[link(1, 1000)]).unwrap();
        assert_eq!(sent[0].info[..4], [0xc0, 0, 0, 0]);
        b.remove_member(1, now);
        assert_eq!(b.members().count(), 0);
        // The peer's new bundle numbers from 0 again: not duplicates.
        b.add_member(2);
        b.handle_mp_frame(2, &[0xc0, 0, 0, 0, 0x21, 9], now)
            .unwrap();
        let got: Vec<_> = std::iter::from_fn(|| b.poll_packet()).collect();
        assert_eq!(got.len(), 6);
        assert_eq!(got[5], (0x0021, vec![9]));
        let s = b.stats();
        assert_eq!((s.rx.duplicates, s.rx.discarded), (0, 1));
        let sent = b.send(0x0021, &[1], &[link(2, 1000)]).unwrap();
        assert_eq!(
            sent[0].info[..4],
            [0xc0, 0, 0, 0],
            "numbering starts over too"
        );
    }

    #[test]
    fn small_packets_take_turns_on_idle_links() {
        let mut b: Bundle<u8> =
            Bundle::new(BundleConfig::from_negotiated(&negotiated(false, false)), 0);
        let links = [link(1, 10_000), link(2, 10_000), link(3, 10_000)];
        let members: Vec<u8> = (0..6)
            .map(|_| b.send(0x0021, &[0x45; 40], &links).unwrap()[0].member)
            .collect();
        assert_eq!(members, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn packets_over_the_peers_mrru_are_refused() {
        let mut b: Bundle<u8> =
            Bundle::new(BundleConfig::from_negotiated(&negotiated(false, false)), 0);
        assert_eq!(
            b.send(0x0021, &[0; 1501], &[link(1, 1000)]),
            Err(BundleError::TooBig {
                len: 1501,
                mrru: 1500
            })
        );
        assert_eq!(
            b.send(0x0021, &[0; 10], &[]),
            Err(BundleError::NoLink(ScheduleError::NoLink))
        );
    }
}
