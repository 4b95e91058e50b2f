//! Received frames: the receive settings LCP agreed on, the demultiplexing of frames to the
//! protocols, Protocol-Reject, and the rate limit of per-frame log lines.

use std::time::{Duration, Instant};

use super::{LOG_TARGET, Phase, Session};
use crate::chap;
use crate::fsm::State;
use crate::hdlc::{Header, MAX_HEADER_LEN};
use crate::ipcp;
use crate::lcp;
use crate::packet::{CONFIGURE_ACK, CONFIGURE_REQUEST, PROTOCOL_REJECT};
use crate::pap;

/// Protocols from here on are per-link control (LCP, PAP, CHAP, LQR…, RFC 1661 §2); below
/// are the network layer and its NCPs, which belong to the bundle under Multilink.
pub(super) const LINK_CONTROL: u16 = 0xc000;

/// The kind of a received frame for the log rate limit (`None`: never logged per packet).
fn frame_kind(protocol: u16, info: &[u8]) -> Option<&'static str> {
    let code = info.first().copied().unwrap_or(0);
    Some(match protocol {
        lcp::PROTOCOL => match code {
            1 => "LCP Configure-Requests",
            2 => "LCP Configure-Acks",
            3 => "LCP Configure-Naks",
            4 => "LCP Configure-Rejects",
            5 => "LCP Terminate-Requests",
            6 => "LCP Terminate-Acks",
            7 => "LCP Code-Rejects",
            8 => "LCP Protocol-Rejects",
            9 => "LCP Echo-Requests",
            10 => "LCP Echo-Replies",
            11 => "LCP Discard-Requests",
            _ => "LCP packets of unknown codes",
        },
        ipcp::PROTOCOL => match code {
            1 => "IPCP Configure-Requests",
            2..=4 => "IPCP Configure answers",
            _ => "other IPCP packets",
        },
        pap::PROTOCOL => "PAP packets",
        chap::PROTOCOL => "CHAP packets",
        ipcp::IPV4 => return None,
        _ => "frames of unknown protocols",
    })
}

/// Frames of one kind logged per window at most; the rest are summed up.
const LOG_BURST: u32 = 5;

/// The rate limit's window.
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Per-kind log rate limit: the first [`LOG_BURST`] frames of a kind in each
/// [`LOG_WINDOW`] are logged in full; for the others one summary line ("N more
/// LCP Configure-Requests suppressed") comes at the next window or at the end.
/// Kinds are the fixed names of [`frame_kind`], so the table stays small.
#[derive(Debug, Default)]
pub(super) struct LogLimiter {
    kinds: Vec<KindCount>,
}

#[derive(Debug)]
struct KindCount {
    kind: &'static str,
    window: Instant,
    seen: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Whether this frame of `kind` may be logged.
    pub(super) fn allow(&mut self, kind: &'static str, now: Instant) -> bool {
        let i = match self.kinds.iter().position(|k| k.kind == kind) {
            Some(i) => i,
            None => {
                self.kinds.push(KindCount {
                    kind,
                    window: now,
                    seen: 0,
                    suppressed: 0,
                });
                self.kinds.len() - 1
            }
        };
        let k = &mut self.kinds[i];
        if now.saturating_duration_since(k.window) >= LOG_WINDOW {
            k.report();
            k.window = now;
            k.seen = 0;
        }
        k.seen = k.seen.saturating_add(1);
        if k.seen <= LOG_BURST {
            return true;
        }
        k.suppressed += 1;
        false
    }

    /// Report what is still suppressed (at the end of the session).
    pub(super) fn flush(&mut self) {
        for k in &mut self.kinds {
            k.report();
        }
    }

    /// Frames of each kind suppressed and not yet reported.
    #[cfg(test)]
    fn suppressed(&self, kind: &str) -> u64 {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .map_or(0, |k| k.suppressed)
    }
}

impl KindCount {
    fn report(&mut self) {
        if self.suppressed > 0 {
            info!(
                "PPP: {} more {} suppressed (log rate limit)",
                self.suppressed, self.kind
            );
            self.suppressed = 0;
        }
    }
}

impl Session {
    /// Receive ACCM and MRU follow LCP: negotiated values while open, defaults otherwise.
    pub(super) fn rx_settings(&self) -> (u32, usize) {
        let link = self.link_parameters().unwrap_or_default();
        (link.rx_accm, usize::from(link.mru))
    }

    pub(super) fn sync_decoder(&mut self) {
        let (accm, mru) = self.rx_settings();
        self.decoder.set_accm(accm);
        self.decoder.set_mru(mru);
    }

    pub(super) fn rx_mru(&self) -> usize {
        self.rx_settings().1
    }

    /// Feed one whole frame as a Linux PPP channel reads it: `protocol (2 bytes) +
    /// information`, without flags, escaping or FCS (the kernel's `ppp_async` removed them).
    /// A leading `ff 03` and a one-byte (compressed) protocol are accepted as well, as on the
    /// HDLC path. One call, one frame: a read of a `/dev/ppp` file gives exactly one.
    ///
    /// Meant for [`Framing::Unframed`](super::Framing::Unframed), but the frame is handled
    /// the same under either framing (it bypasses the HDLC decoder).
    pub fn handle_frame_input(&mut self, frame: &[u8], now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        self.stats.rx_bytes += frame.len() as u64;
        // The HDLC decoder's bound, for the same frames: the MRU plus a full header.
        if frame.len() > self.rx_mru() + MAX_HEADER_LEN {
            self.stats.rx_oversize += 1;
            return;
        }
        self.stats.rx_frames += 1;
        self.handle_frame(frame, now);
        self.pump(now);
    }

    pub(super) fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        let Ok((header, info)) = Header::parse(frame) else {
            self.stats.rx_malformed += 1;
            return;
        };
        // A flooding peer must not flood the log: the first few frames of each
        // kind per second are logged, the rest summed up.
        self.log_verbose = match frame_kind(header.protocol, info) {
            Some(kind) => self.log_limit.allow(kind, now),
            None => true,
        };
        self.lcp.fsm.set_verbose(self.log_verbose);
        self.ipcp.set_verbose(self.log_verbose);
        let code = info.first().copied();
        match header.protocol {
            lcp::PROTOCOL | ipcp::PROTOCOL => {
                let i = usize::from(header.protocol == ipcp::PROTOCOL);
                self.heard[i] = true;
                match code {
                    Some(CONFIGURE_REQUEST) => {
                        self.rx_conf_requests[i] = self.rx_conf_requests[i].saturating_add(1);
                    }
                    Some(CONFIGURE_ACK) => {
                        self.rx_conf_acks[i] = self.rx_conf_acks[i].saturating_add(1);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        // Any intact frame proves the peer is alive (lcp-echo-adaptive), except our own
        // coming back from a looped line (a modem in command mode with echo on): our
        // Echo-Requests, and IP packets from our own address (the peer never sends those;
        // a tracking probe a second would otherwise keep a dead link "alive").
        let own_ip = header.protocol == ipcp::IPV4 && self.is_own_ip(info);
        if own_ip {
            self.stats.rx_ip_dropped += 1;
            return;
        }
        if header.protocol != lcp::PROTOCOL || !self.lcp.is_own_echo(info) {
            self.lcp.note_traffic();
        }
        if header.protocol < LINK_CONTROL && self.carries_bundle_frames() {
            // A bundle member: network protocols, their NCPs and MP go to the bundle.
            self.receive_for_bundle(header.protocol, info);
            return;
        }
        match header.protocol {
            lcp::PROTOCOL => match self.lcp.input(info, now) {
                Ok(Some(notice)) => self.lcp_notice(notice, now),
                Ok(None) => {}
                Err(e) => self.malformed("LCP", e),
            },
            pap::PROTOCOL | chap::PROTOCOL => self.auth_input(header.protocol, info, now),
            ipcp::PROTOCOL if self.phase == Phase::Network => {
                if let Err(e) = self.ipcp.input(info, now) {
                    self.malformed("IPCP", e);
                }
            }
            // NCP traffic before the Network phase is silently discarded (RFC 1661 §3.4).
            ipcp::PROTOCOL => {}
            ipcp::IPV4 => self.receive_ip(info),
            other => self.protocol_reject(other, info),
        }
    }

    /// An IPv4 packet whose source is our own address: ours, come back.
    fn is_own_ip(&self, packet: &[u8]) -> bool {
        let local = self.ipcp.negotiator().local();
        !local.is_unspecified()
            && packet
                .get(12..16)
                .is_some_and(|src| src == local.octets().as_slice())
    }

    pub(super) fn malformed(&mut self, what: &str, e: impl std::fmt::Display) {
        self.stats.rx_malformed += 1;
        if self.log_verbose {
            debug!(protocol = what, error = %e, "malformed packet dropped");
        }
    }

    /// Unknown protocol (IPv6CP, CCP, ...): Protocol-Reject, only while LCP is open.
    pub(super) fn protocol_reject(&mut self, protocol: u16, info: &[u8]) {
        self.stats.rx_unknown_protocol += 1;
        if self.lcp.fsm.state() != State::Opened {
            return;
        }
        if self.log_verbose {
            debug!(
                protocol = format_args!("{protocol:#06x}"),
                "Protocol-Reject"
            );
        }
        let room = usize::from(self.lcp.fsm.negotiator().peer().mru).saturating_sub(6);
        let mut data = protocol.to_be_bytes().to_vec();
        data.extend_from_slice(&info[..info.len().min(room)]);
        let id = self.lcp.fsm.fresh_id();
        self.lcp.fsm.send(PROTOCOL_REJECT, id, &data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_logs_a_burst_then_sums_up_per_second() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        let allowed = (0..1000)
            .filter(|_| l.allow("LCP Configure-Requests", t0))
            .count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert_eq!(
            l.suppressed("LCP Configure-Requests"),
            1000 - u64::from(LOG_BURST)
        );
        // Another kind has its own budget.
        assert!(l.allow("LCP Echo-Requests", t0));
        // The next window reports the sum and starts a new burst.
        assert!(l.allow("LCP Configure-Requests", t0 + LOG_WINDOW));
        assert_eq!(l.suppressed("LCP Configure-Requests"), 0);
        l.flush();
    }
}
