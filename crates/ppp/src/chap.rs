//! CHAP with MD5, RFC 1994: [`ChapPeer`] answers challenges (including the
//! re-challenges an authenticator may send at any time during the session);
//! [`ChapServer`] challenges the peer, checks the response against its
//! [`Secrets`] and optionally re-challenges periodically.
//!
//! Timing follows pppd's chap-new.c: the authenticator retransmits the same
//! challenge every restart interval up to Max-Configure times; the peer simply
//! answers every challenge it gets (a repeated challenge is answered again,
//! which covers a lost Response or a lost Success).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::Rng;
use super::auth::{AuthOutcome, AuthRole, Credentials, Secrets, constant_time_eq, printable};
use super::packet::ControlPacket;

/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::chap";

/// CHAP protocol number.
pub const PROTOCOL: u16 = 0xc223;
/// Challenge.
pub const CHALLENGE: u8 = 1;
/// Response.
pub const RESPONSE: u8 = 2;
/// Success.
pub const SUCCESS: u8 = 3;
/// Failure.
pub const FAILURE: u8 = 4;
/// Size of our challenge values (pppd uses 16 to 24 random bytes).
const CHALLENGE_LEN: usize = 16;
/// MD5 digest size.
const DIGEST_LEN: usize = 16;

/// Typed view of a Challenge or Response: `value-size | value | name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChapValue<'a> {
    /// Challenge bytes or response digest.
    pub value: &'a [u8],
    /// Sender's name (rest of the packet).
    pub name: &'a [u8],
}

impl<'a> ChapValue<'a> {
    /// Parse, or `None` when the value size runs past the end or is zero.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&size, rest) = data.split_first()?;
        if size == 0 {
            return None;
        }
        let (value, name) = rest.split_at_checked(usize::from(size))?;
        Some(ChapValue { value, name })
    }

    /// Emit the data part (value truncated to 255 bytes).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let v = &self.value[..self.value.len().min(255)];
        out.push(v.len() as u8);
        out.extend_from_slice(v);
        out.extend_from_slice(self.name);
    }
}

/// The MD5 response: `MD5(id || secret || challenge)` (RFC 1994 §2).
pub fn md5_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// We answer the peer's challenges.
#[derive(Debug)]
pub struct ChapPeer {
    creds: Credentials,
    timeout: Duration,
    deadline: Option<Instant>,
    /// Id of the last Response we sent, to match Success/Failure.
    responded: Option<u8>,
    succeeded: bool,
    failed: bool,
    out: VecDeque<Vec<u8>>,
    outcome: Option<AuthOutcome>,
}

impl ChapPeer {
    /// A peer answering with `creds`, failing if not authenticated within `timeout`.
    pub fn new(creds: Credentials, timeout: Duration) -> Self {
        ChapPeer {
            creds,
            timeout,
            deadline: None,
            responded: None,
            succeeded: false,
            failed: false,
            out: VecDeque::new(),
            outcome: None,
        }
    }

    fn fail(&mut self, reason: String) {
        self.failed = true;
        self.deadline = None;
        self.outcome = Some(AuthOutcome::Failure(reason));
    }
}

impl AuthRole for ChapPeer {
    fn start(&mut self, now: Instant) {
        self.deadline = Some(now + self.timeout);
        self.responded = None;
        self.succeeded = false;
        self.failed = false;
    }

    fn input(&mut self, pkt: ControlPacket<'_>, _now: Instant) {
        if self.failed {
            return;
        }
        match pkt.code {
            CHALLENGE => {
                let Some(ch) = ChapValue::parse(pkt.data) else {
                    debug!("CHAP: malformed Challenge dropped");
                    return;
                };
                let digest = md5_response(pkt.id, self.creds.secret.expose(), ch.value);
                let mut data = Vec::new();
                ChapValue {
                    value: &digest,
                    name: self.creds.user.as_bytes(),
                }
                .emit(&mut data);
                debug!(id = pkt.id, name = %printable(ch.name), "CHAP: answering challenge");
                self.out
                    .push_back(ControlPacket::to_vec(RESPONSE, pkt.id, &data));
                self.responded = Some(pkt.id);
            }
            SUCCESS | FAILURE if self.responded == Some(pkt.id) => {
                let msg = printable(pkt.data);
                if pkt.code == FAILURE {
                    self.fail(format!("peer rejected our CHAP response: {msg}"));
                } else if !self.succeeded {
                    debug!(%msg, "CHAP: authenticated");
                    self.succeeded = true;
                    self.deadline = None;
                    self.outcome = Some(AuthOutcome::Success {
                        peer_name: String::new(),
                    });
                } else {
                    debug!("CHAP: re-challenge passed");
                }
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.succeeded && self.deadline.is_some_and(|d| d <= now) {
            let secs = self.timeout.as_secs();
            let what = if self.responded.is_some() {
                "no CHAP Success"
            } else {
                "no CHAP challenge"
            };
            self.fail(format!("peer sent {what} within {secs} s"));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn poll_outcome(&mut self) -> Option<AuthOutcome> {
        self.outcome.take()
    }
}

/// Settings of the CHAP authenticator.
#[derive(Debug, Clone)]
pub struct ChapServerConfig {
    /// Name we send in challenges.
    pub name: String,
    /// Retransmission interval of a challenge.
    pub restart: Duration,
    /// Challenges sent before giving up.
    pub max_transmits: u32,
    /// Re-challenge the peer this often after success (`None`: never).
    pub rechallenge: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerState {
    Idle,
    /// Challenge `id` outstanding.
    Challenging {
        id: u8,
        challenge: [u8; CHALLENGE_LEN],
        transmits: u32,
    },
    /// Answered challenge `id` with `code`; repeated Responses get the same answer.
    Answered {
        id: u8,
        code: u8,
    },
}

/// We challenge the peer.
#[derive(Debug)]
pub struct ChapServer {
    cfg: ChapServerConfig,
    secrets: Secrets,
    rng: Rng,
    next_id: u8,
    state: ServerState,
    deadline: Option<Instant>,
    succeeded: bool,
    out: VecDeque<Vec<u8>>,
    outcome: Option<AuthOutcome>,
}

impl ChapServer {
    /// An authenticator checking against `secrets`; `seed` feeds the challenge generator.
    pub fn new(cfg: ChapServerConfig, secrets: Secrets, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let next_id = rng.next_u32() as u8;
        ChapServer {
            cfg,
            secrets,
            rng,
            next_id,
            state: ServerState::Idle,
            deadline: None,
            succeeded: false,
            out: VecDeque::new(),
            outcome: None,
        }
    }

    fn new_challenge(&mut self, now: Instant) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut challenge = [0u8; CHALLENGE_LEN];
        self.rng.fill(&mut challenge);
        self.state = ServerState::Challenging {
            id,
            challenge,
            transmits: 0,
        };
        self.send_challenge(now);
    }

    fn send_challenge(&mut self, now: Instant) {
        let ServerState::Challenging {
            id,
            challenge,
            transmits,
        } = &mut self.state
        else {
            return;
        };
        *transmits = transmits.saturating_add(1);
        let mut data = Vec::new();
        ChapValue {
            value: challenge,
            name: self.cfg.name.as_bytes(),
        }
        .emit(&mut data);
        self.out
            .push_back(ControlPacket::to_vec(CHALLENGE, *id, &data));
        self.deadline = Some(now + self.cfg.restart);
    }

    fn verify(&self, id: u8, challenge: &[u8], resp: &ChapValue<'_>) -> Result<String, String> {
        let name = printable(resp.name);
        let secret = std::str::from_utf8(resp.name)
            .ok()
            .and_then(|n| self.secrets.get(n));
        let Some(secret) = secret else {
            return Err(format!(
                "peer tried to log in with unknown CHAP name \"{name}\""
            ));
        };
        let expected = md5_response(id, secret.expose(), challenge);
        if constant_time_eq(&expected, resp.value) {
            Ok(name)
        } else {
            Err(format!(
                "peer \"{name}\" failed the CHAP challenge (wrong secret)"
            ))
        }
    }
}

impl AuthRole for ChapServer {
    fn start(&mut self, now: Instant) {
        self.succeeded = false;
        self.new_challenge(now);
    }

    fn input(&mut self, pkt: ControlPacket<'_>, now: Instant) {
        if pkt.code != RESPONSE {
            return;
        }
        match self.state.clone() {
            ServerState::Challenging { id, challenge, .. } if id == pkt.id => {
                let Some(resp) = ChapValue::parse(pkt.data) else {
                    debug!("CHAP: malformed Response dropped");
                    return;
                };
                let (code, msg, outcome) = match self.verify(id, &challenge, &resp) {
                    Ok(name) => {
                        debug!(%name, rechallenge = self.succeeded, "CHAP: peer authenticated");
                        let first = !self.succeeded;
                        self.succeeded = true;
                        let o = first.then_some(AuthOutcome::Success { peer_name: name });
                        (SUCCESS, "Welcome", o)
                    }
                    Err(reason) => (FAILURE, "Access denied", Some(AuthOutcome::Failure(reason))),
                };
                self.out
                    .push_back(ControlPacket::to_vec(code, id, msg.as_bytes()));
                self.state = ServerState::Answered { id, code };
                self.deadline = match (code, self.cfg.rechallenge) {
                    (SUCCESS, Some(every)) => Some(now + every),
                    _ => None,
                };
                if outcome.is_some() {
                    self.outcome = outcome;
                }
            }
            ServerState::Answered { id, code } if id == pkt.id => {
                // Our Success/Failure was lost and the peer repeated its Response.
                let msg: &[u8] = if code == SUCCESS {
                    b"Welcome"
                } else {
                    b"Access denied"
                };
                self.out.push_back(ControlPacket::to_vec(code, id, msg));
            }
            _ => debug!(id = pkt.id, "CHAP: Response with unexpected id dropped"),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        self.deadline = None;
        match self.state {
            ServerState::Challenging { transmits, .. } if transmits >= self.cfg.max_transmits => {
                self.outcome = Some(AuthOutcome::Failure(format!(
                    "peer did not answer {transmits} CHAP challenges"
                )));
            }
            ServerState::Challenging { .. } => self.send_challenge(now),
            ServerState::Answered { code: SUCCESS, .. } => {
                debug!("CHAP: re-challenging peer");
                self.new_challenge(now);
            }
            _ => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn poll_packet(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn poll_outcome(&mut self) -> Option<AuthOutcome> {
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(rechallenge: Option<Duration>) -> ChapServer {
        let cfg = ChapServerConfig {
            name: "isp".into(),
            restart: Duration::from_secs(3),
            max_transmits: 3,
            rechallenge,
        };
        ChapServer::new(cfg, Secrets::new().with("alice", "s3cret"), 42)
    }

    /// RFC 1994 MD5 response, value computed independently (Python hashlib:
    /// `md5(bytes([1]) + b"secret" + bytes(range(16)))`).
    #[test]
    fn golden_md5_response() {
        let challenge: Vec<u8> = (0..16).collect();
        let r = md5_response(1, b"secret", &challenge);
        assert_eq!(
            r,
            [
                0x74, 0x0e, 0x86, 0x46, 0x3b, 0xda, 0x3a, 0x4d, 0x70, 0x17, 0xd6, 0xe0, 0xfb, 0xa0,
                0x69, 0x9d
            ]
        );
    }

    #[test]
    fn peer_answers_challenge_golden() {
        let now = Instant::now();
        let mut p = ChapPeer::new(Credentials::new("alice", "s3cret"), Duration::from_secs(30));
        p.start(now);
        let mut data = vec![4u8, 1, 2, 3, 4];
        data.extend_from_slice(b"isp");
        p.input(
            ControlPacket::parse(&ControlPacket::to_vec(CHALLENGE, 9, &data)).unwrap(),
            now,
        );
        let resp = p.poll_packet().unwrap();
        let parsed = ControlPacket::parse(&resp).unwrap();
        assert_eq!((parsed.code, parsed.id), (RESPONSE, 9));
        let v = ChapValue::parse(parsed.data).unwrap();
        // md5(bytes([9]) + b"s3cret" + bytes([1, 2, 3, 4])), from Python hashlib.
        assert_eq!(
            v.value,
            [
                0xf2, 0xbe, 0xe4, 0x63, 0xa7, 0xf9, 0x70, 0x65, 0xfc, 0x34, 0xf4, 0xfa, 0xf4, 0x18,
                0x45, 0x9d
            ]
        );
        assert_eq!(v.name, b"alice");
        p.input(ControlPacket::parse(&[SUCCESS, 9, 0, 4]).unwrap(), now);
        assert!(matches!(
            p.poll_outcome(),
            Some(AuthOutcome::Success { .. })
        ));
    }

    #[test]
    fn server_full_exchange_with_rechallenge_and_failure() {
        let now = Instant::now();
        let every = Duration::from_secs(60);
        let mut s = server(Some(every));
        let mut p = ChapPeer::new(Credentials::new("alice", "s3cret"), Duration::from_secs(30));
        s.start(now);
        p.start(now);
        let pump = |s: &mut ChapServer, p: &mut ChapPeer, now| {
            for _ in 0..4 {
                while let Some(c) = s.poll_packet() {
                    p.input(ControlPacket::parse(&c).unwrap(), now);
                }
                while let Some(r) = p.poll_packet() {
                    s.input(ControlPacket::parse(&r).unwrap(), now);
                }
            }
        };
        pump(&mut s, &mut p, now);
        assert_eq!(
            s.poll_outcome(),
            Some(AuthOutcome::Success {
                peer_name: "alice".into()
            })
        );
        assert!(matches!(
            p.poll_outcome(),
            Some(AuthOutcome::Success { .. })
        ));
        assert_eq!(s.poll_timeout(), Some(now + every));
        // Re-challenge passes silently.
        s.handle_timeout(now + every);
        pump(&mut s, &mut p, now + every);
        assert_eq!((s.poll_outcome(), p.poll_outcome()), (None, None));
        // The peer's secret changes: the next re-challenge fails on both sides.
        p.creds.secret = "wrong".into();
        s.handle_timeout(now + every * 2);
        pump(&mut s, &mut p, now + every * 2);
        let Some(AuthOutcome::Failure(r)) = s.poll_outcome() else {
            panic!()
        };
        assert!(r.contains("wrong secret"), "{r}");
        assert_eq!(
            p.poll_outcome(),
            Some(AuthOutcome::Failure(
                "peer rejected our CHAP response: Access denied".into()
            ))
        );
    }

    #[test]
    fn server_retransmits_then_gives_up() {
        let now = Instant::now();
        let mut s = server(None);
        s.start(now);
        for i in 1..=3 {
            s.handle_timeout(now + Duration::from_secs(3 * i));
        }
        assert_eq!(std::iter::from_fn(|| s.poll_packet()).count(), 3);
        assert!(matches!(s.poll_outcome(), Some(AuthOutcome::Failure(_))));
    }

    #[test]
    fn malformed_values_rejected() {
        assert_eq!(ChapValue::parse(&[]), None);
        assert_eq!(ChapValue::parse(&[0]), None);
        assert_eq!(ChapValue::parse(&[5, 1, 2]), None);
    }
}
