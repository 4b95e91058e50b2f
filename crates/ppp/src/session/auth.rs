//! The Authenticate phase: the PAP/CHAP roles in either direction, started when LCP opens,
//! fed the authentication packets and turned into success or failure.

use std::time::Instant;

use super::{DownReason, Event, LOG_TARGET, Phase, Session};
use crate::auth::{AuthOutcome, AuthRole};
use crate::chap::{self, ChapPeer, ChapServer, ChapServerConfig};
use crate::lcp::{self, AuthProtocol};
use crate::packet::ControlPacket;
use crate::pap::{self, PapClient, PapServer};

/// One authentication role with the protocol it speaks.
#[derive(Debug)]
pub(super) struct AuthSlot {
    protocol: u16,
    role: Box<dyn AuthRole>,
    done: bool,
}

fn auth_protocol_number(p: AuthProtocol) -> u16 {
    match p {
        AuthProtocol::Pap => lcp::PAP,
        AuthProtocol::ChapMd5 => lcp::CHAP,
    }
}

impl Session {
    /// LCP is open: authenticate the peer with `them` and ourselves with `us` (as LCP agreed),
    /// or go straight to the Network phase when neither is asked for.
    pub(super) fn start_authentication(
        &mut self,
        them: Option<AuthProtocol>,
        us: Option<AuthProtocol>,
        now: Instant,
    ) {
        if !self.cfg.require_auth.is_empty() && them.is_none() {
            let reason = "peer refused to authenticate with PAP or CHAP".to_string();
            self.events.push_back(Event::AuthFailed {
                reason: reason.clone(),
            });
            self.close_with(
                DownReason::AuthFailed { reason },
                "Authentication required",
                now,
            );
            return;
        }
        self.auth_them = them.map(|p| self.authenticator(p));
        self.auth_us = us.and_then(|p| self.authenticatee(p));
        if self.auth_us.is_none() && self.auth_them.is_none() {
            self.enter_network(now);
            return;
        }
        self.set_phase(Phase::Authenticate);
        for slot in self.auth_slots() {
            slot.role.start(now);
        }
    }

    /// LCP left Opened or the session ended: the roles are gone (a renegotiation starts anew).
    pub(super) fn stop_authentication(&mut self) {
        self.auth_us = None;
        self.auth_them = None;
    }

    /// The running roles, ours first.
    fn auth_slots(&mut self) -> impl Iterator<Item = &mut AuthSlot> {
        [&mut self.auth_us, &mut self.auth_them]
            .into_iter()
            .flatten()
    }

    /// The roles' retransmission and timeout timers.
    pub(super) fn auth_timers(&mut self, now: Instant) {
        for slot in self.auth_slots() {
            slot.role.handle_timeout(now);
        }
    }

    /// The roles' earliest deadline.
    pub(super) fn auth_poll_timeout(&self) -> Option<Instant> {
        [&self.auth_us, &self.auth_them]
            .into_iter()
            .flatten()
            .filter_map(|s| s.role.poll_timeout())
            .min()
    }

    /// The directions still authenticating, in words.
    pub(super) fn auth_unfinished(&self) -> Vec<&'static str> {
        [
            (&self.auth_us, "authenticating us"),
            (&self.auth_them, "authenticating the peer"),
        ]
        .into_iter()
        .filter(|(s, _)| s.as_ref().is_some_and(|s| !s.done))
        .map(|(_, w)| w)
        .collect()
    }

    pub(super) fn auth_input(&mut self, protocol: u16, info: &[u8], now: Instant) {
        if !matches!(self.phase, Phase::Authenticate | Phase::Network) {
            return;
        }
        let Ok(pkt) = ControlPacket::parse(info) else {
            self.stats.rx_malformed += 1;
            return;
        };
        // Requests/challenges go to one direction, answers to the other.
        let for_authenticator = match protocol {
            pap::PROTOCOL => pkt.code == pap::AUTH_REQUEST,
            _ => pkt.code == chap::RESPONSE,
        };
        let slot = if for_authenticator {
            &mut self.auth_them
        } else {
            &mut self.auth_us
        };
        match slot {
            Some(s) if s.protocol == protocol => s.role.input(pkt, now),
            _ if !self.log_verbose => {}
            _ => debug!(
                protocol = format_args!("{protocol:#06x}"),
                code = pkt.code,
                "auth packet for no running role dropped"
            ),
        }
    }

    pub(super) fn pump_auth(&mut self, now: Instant) -> bool {
        let mut packets = Vec::new();
        let mut outcomes = Vec::new();
        for slot in [&mut self.auth_us, &mut self.auth_them]
            .into_iter()
            .flatten()
        {
            packets
                .extend(std::iter::from_fn(|| slot.role.poll_packet()).map(|p| (slot.protocol, p)));
            if let Some(o) = slot.role.poll_outcome() {
                if let AuthOutcome::Success { peer_name } = &o {
                    slot.done = true;
                    if !peer_name.is_empty() {
                        self.peer_name = Some(peer_name.clone());
                    }
                }
                outcomes.push(o);
            }
        }
        let progress = !packets.is_empty() || !outcomes.is_empty();
        for (protocol, pkt) in packets {
            self.queue_control(protocol, &pkt);
        }
        for o in outcomes {
            self.auth_outcome(o, now);
        }
        progress
    }

    pub(super) fn auth_outcome(&mut self, outcome: AuthOutcome, now: Instant) {
        match outcome {
            AuthOutcome::Failure(reason) => {
                debug!(%reason, "authentication failed");
                self.events.push_back(Event::AuthFailed {
                    reason: reason.clone(),
                });
                self.stop_authentication();
                self.close_with(
                    DownReason::AuthFailed { reason },
                    "Authentication failed",
                    now,
                );
            }
            AuthOutcome::Success { .. } if self.phase != Phase::Authenticate => {}
            AuthOutcome::Success { .. } => {
                let all_done = [&self.auth_us, &self.auth_them]
                    .into_iter()
                    .flatten()
                    .all(|s| s.done);
                if all_done {
                    let peer_name = self.peer_name.clone();
                    self.events.push_back(Event::Authenticated { peer_name });
                    self.enter_network(now);
                }
            }
        }
    }

    pub(super) fn authenticator(&mut self, p: AuthProtocol) -> AuthSlot {
        let role: Box<dyn AuthRole> = match p {
            AuthProtocol::Pap => Box::new(PapServer::new(
                self.cfg.secrets.clone(),
                self.cfg.auth_timeout,
            )),
            AuthProtocol::ChapMd5 => Box::new(ChapServer::new(
                ChapServerConfig {
                    name: self.cfg.name.clone(),
                    restart: self.cfg.fsm.restart,
                    max_transmits: self.cfg.fsm.max_configure,
                    rechallenge: self.cfg.chap_rechallenge,
                },
                self.cfg.secrets.clone(),
                self.rng.next_u64(),
            )),
        };
        AuthSlot {
            protocol: auth_protocol_number(p),
            role,
            done: false,
        }
    }

    pub(super) fn authenticatee(&mut self, p: AuthProtocol) -> Option<AuthSlot> {
        let creds = self.cfg.credentials.clone()?;
        // A fresh PAP identifier per negotiation: stale Acks must not match.
        self.pap_id = self.pap_id.wrapping_add(1);
        let role: Box<dyn AuthRole> = match p {
            AuthProtocol::Pap => Box::new(PapClient::new(
                creds,
                self.cfg.fsm.restart,
                self.cfg.fsm.max_configure,
                self.pap_id,
            )),
            AuthProtocol::ChapMd5 => Box::new(ChapPeer::new(creds, self.cfg.auth_timeout)),
        };
        Some(AuthSlot {
            protocol: auth_protocol_number(p),
            role,
            done: false,
        })
    }
}
