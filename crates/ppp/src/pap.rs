//! PAP, RFC 1334: the authenticated side ([`PapClient`]) sends its name and
//! password until acknowledged; the authenticator ([`PapServer`]) checks them
//! against its [`Secrets`].
//!
//! Timing follows pppd's upap.c: requests are retransmitted every restart
//! interval (3 s) up to Max-Configure times; the authenticator waits up to the
//! auth timeout (30 s) for a request.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::auth::{AuthOutcome, AuthRole, Credentials, Secrets, constant_time_eq, printable};
use super::packet::ControlPacket;

/// Log target: the module's path from before the core became a crate (see the crate root).
const LOG_TARGET: &str = "eqlplus_dialer::ppp::pap";

/// PAP protocol number.
pub const PROTOCOL: u16 = 0xc023;
/// Authenticate-Request.
pub const AUTH_REQUEST: u8 = 1;
/// Authenticate-Ack.
pub const AUTH_ACK: u8 = 2;
/// Authenticate-Nak.
pub const AUTH_NAK: u8 = 3;

/// Typed view of an Authenticate-Request's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// Peer-ID (user name).
    pub peer_id: &'a [u8],
    /// Password. Never log it.
    pub password: &'a [u8],
}

impl<'a> AuthRequest<'a> {
    /// Parse, or `None` if the length bytes do not fit.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&id_len, rest) = data.split_first()?;
        let (peer_id, rest) = rest.split_at_checked(usize::from(id_len))?;
        let (&pw_len, rest) = rest.split_first()?;
        let password = rest.get(..usize::from(pw_len))?;
        Some(AuthRequest { peer_id, password })
    }

    /// Emit the data part (fields longer than 255 bytes are truncated).
    pub fn emit(&self, out: &mut Vec<u8>) {
        for field in [self.peer_id, self.password] {
            let f = &field[..field.len().min(255)];
            out.push(f.len() as u8);
            out.extend_from_slice(f);
        }
    }
}

/// The message of an Authenticate-Ack/Nak (`msg-length | message`).
pub fn parse_message(data: &[u8]) -> &[u8] {
    match data.split_first() {
        Some((&len, rest)) => &rest[..rest.len().min(usize::from(len))],
        None => &[],
    }
}

fn message_data(msg: &str) -> Vec<u8> {
    let m = &msg.as_bytes()[..msg.len().min(255)];
    let mut v = Vec::with_capacity(1 + m.len());
    v.push(m.len() as u8);
    v.extend_from_slice(m);
    v
}

/// We authenticate ourselves with PAP.
///
/// `Debug` leaves out the queued packets: they carry the password.
pub struct PapClient {
    creds: Credentials,
    restart: Duration,
    max_transmits: u32,
    id: u8,
    transmits: u32,
    deadline: Option<Instant>,
    done: bool,
    out: VecDeque<Vec<u8>>,
    outcome: Option<AuthOutcome>,
}

impl std::fmt::Debug for PapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PapClient")
            .field("user", &self.creds.user)
            .field("id", &self.id)
            .field("transmits", &self.transmits)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl PapClient {
    /// A client sending `creds`, retransmitting every `restart` up to
    /// `max_transmits` times, with identifier `id`.
    ///
    /// The caller picks a different `id` for every instance, so that a late
    /// Authenticate-Ack from an earlier LCP negotiation cannot be mistaken for
    /// the answer to this one.
    pub fn new(creds: Credentials, restart: Duration, max_transmits: u32, id: u8) -> Self {
        PapClient {
            creds,
            restart,
            max_transmits: max_transmits.max(1),
            id,
            transmits: 0,
            deadline: None,
            done: false,
            out: VecDeque::new(),
            outcome: None,
        }
    }

    fn send_request(&mut self, now: Instant) {
        let mut data = Vec::new();
        AuthRequest {
            peer_id: self.creds.user.as_bytes(),
            password: self.creds.secret.expose(),
        }
        .emit(&mut data);
        self.out
            .push_back(ControlPacket::to_vec(AUTH_REQUEST, self.id, &data));
        self.transmits = self.transmits.saturating_add(1);
        self.deadline = Some(now + self.restart);
    }

    fn finish(&mut self, outcome: AuthOutcome) {
        self.done = true;
        self.deadline = None;
        self.outcome = Some(outcome);
    }
}

impl AuthRole for PapClient {
    fn start(&mut self, now: Instant) {
        self.transmits = 0;
        self.done = false;
        debug!(user = %self.creds.user, "PAP: sending Authenticate-Request");
        self.send_request(now);
    }

    fn input(&mut self, pkt: ControlPacket<'_>, _now: Instant) {
        if self.done || pkt.id != self.id || !matches!(pkt.code, AUTH_ACK | AUTH_NAK) {
            return;
        }
        let msg = printable(parse_message(pkt.data));
        if pkt.code == AUTH_ACK {
            debug!(%msg, "PAP: credentials accepted");
            self.finish(AuthOutcome::Success {
                peer_name: String::new(),
            });
        } else {
            self.finish(AuthOutcome::Failure(format!(
                "peer rejected our PAP credentials: {msg}"
            )));
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        if self.transmits >= self.max_transmits {
            let n = self.transmits;
            self.finish(AuthOutcome::Failure(format!(
                "no answer to {n} PAP Authenticate-Requests"
            )));
        } else {
            self.send_request(now);
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

/// We check the peer's PAP credentials.
#[derive(Debug)]
pub struct PapServer {
    secrets: Secrets,
    timeout: Duration,
    deadline: Option<Instant>,
    /// After a decision, the answer (code, data) to repeat if the request is retransmitted.
    answered: Option<(u8, Vec<u8>)>,
    out: VecDeque<Vec<u8>>,
    outcome: Option<AuthOutcome>,
}

impl PapServer {
    /// An authenticator checking against `secrets`, waiting `timeout` for a request.
    pub fn new(secrets: Secrets, timeout: Duration) -> Self {
        PapServer {
            secrets,
            timeout,
            deadline: None,
            answered: None,
            out: VecDeque::new(),
            outcome: None,
        }
    }

    fn verify(&self, req: &AuthRequest<'_>) -> Result<String, String> {
        let user = printable(req.peer_id);
        let known = std::str::from_utf8(req.peer_id)
            .ok()
            .and_then(|u| self.secrets.get(u));
        match known {
            None => Err(format!(
                "peer tried to log in with unknown PAP user \"{user}\""
            )),
            Some(s) if constant_time_eq(s.expose(), req.password) => Ok(user),
            Some(_) => Err(format!(
                "peer sent a wrong PAP password for user \"{user}\""
            )),
        }
    }
}

impl AuthRole for PapServer {
    fn start(&mut self, now: Instant) {
        self.answered = None;
        self.deadline = Some(now + self.timeout);
    }

    fn input(&mut self, pkt: ControlPacket<'_>, _now: Instant) {
        if pkt.code != AUTH_REQUEST {
            return;
        }
        if let Some((code, msg)) = &self.answered {
            // A retransmitted request: our answer was lost, repeat it for this
            // identifier (pppd answers any request once it has decided).
            self.out
                .push_back(ControlPacket::to_vec(*code, pkt.id, msg));
            return;
        }
        if self.deadline.is_none() {
            return; // not started
        }
        let Some(req) = AuthRequest::parse(pkt.data) else {
            debug!("PAP: malformed Authenticate-Request dropped");
            return;
        };
        let (code, msg, outcome) = match self.verify(&req) {
            Ok(user) => {
                debug!(%user, "PAP: peer authenticated");
                (
                    AUTH_ACK,
                    "Login ok",
                    AuthOutcome::Success { peer_name: user },
                )
            }
            Err(reason) => (AUTH_NAK, "Login incorrect", AuthOutcome::Failure(reason)),
        };
        let msg = message_data(msg);
        self.out
            .push_back(ControlPacket::to_vec(code, pkt.id, &msg));
        self.answered = Some((code, msg));
        self.deadline = None;
        self.outcome = Some(outcome);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.answered.is_none() && self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            let secs = self.timeout.as_secs();
            self.outcome = Some(AuthOutcome::Failure(format!(
                "peer sent no PAP credentials within {secs} s"
            )));
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

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn golden_auth_request() {
        let mut c = PapClient::new(
            Credentials::new("user", "pw"),
            Duration::from_secs(3),
            10,
            1,
        );
        c.start(t0());
        let pkt = c.poll_packet().unwrap();
        assert_eq!(pkt, [1, 1, 0, 12, 4, b'u', b's', b'e', b'r', 2, b'p', b'w']);
    }

    #[test]
    fn server_accepts_and_rejects() {
        let now = t0();
        let mut s = PapServer::new(Secrets::new().with("user", "pw"), Duration::from_secs(30));
        s.start(now);
        let req = [1u8, 7, 0, 12, 4, b'u', b's', b'e', b'r', 2, b'p', b'w'];
        s.input(ControlPacket::parse(&req).unwrap(), now);
        assert_eq!(
            s.poll_packet().unwrap(),
            [
                2, 7, 0, 13, 8, b'L', b'o', b'g', b'i', b'n', b' ', b'o', b'k'
            ]
        );
        assert_eq!(
            s.poll_outcome(),
            Some(AuthOutcome::Success {
                peer_name: "user".into()
            })
        );
        // Retransmitted request: same answer again, no new outcome.
        s.input(ControlPacket::parse(&req).unwrap(), now);
        assert_eq!(s.poll_packet().unwrap()[0], AUTH_ACK);
        assert_eq!(s.poll_outcome(), None);

        let mut s = PapServer::new(
            Secrets::new().with("user", "other"),
            Duration::from_secs(30),
        );
        s.start(now);
        s.input(ControlPacket::parse(&req).unwrap(), now);
        assert_eq!(s.poll_packet().unwrap()[0], AUTH_NAK);
        let Some(AuthOutcome::Failure(r)) = s.poll_outcome() else {
            panic!()
        };
        assert!(
            r.contains("wrong PAP password") && !r.contains("pw\""),
            "{r}"
        );
    }

    #[test]
    fn client_reports_nak_message_and_timeouts() {
        let now = t0();
        let mut c = PapClient::new(Credentials::new("u", "p"), Duration::from_secs(3), 2, 1);
        c.start(now);
        let _ = c.poll_packet();
        let nak = [3u8, 1, 0, 10, 5, b'n', b'o', b'p', b'e', b'!'];
        c.input(ControlPacket::parse(&nak).unwrap(), now);
        assert_eq!(
            c.poll_outcome(),
            Some(AuthOutcome::Failure(
                "peer rejected our PAP credentials: nope!".into()
            ))
        );

        let mut c = PapClient::new(Credentials::new("u", "p"), Duration::from_secs(3), 2, 1);
        c.start(now);
        c.handle_timeout(now + Duration::from_secs(3));
        assert_eq!(c.poll_outcome(), None);
        c.handle_timeout(now + Duration::from_secs(6));
        assert!(matches!(c.poll_outcome(), Some(AuthOutcome::Failure(_))));
        assert_eq!(std::iter::from_fn(|| c.poll_packet()).count(), 2);
    }

    #[test]
    fn malformed_requests_are_ignored() {
        for data in [&[][..], &[5, b'a'], &[1, b'a', 9, b'x']] {
            assert_eq!(AuthRequest::parse(data), None);
        }
        assert_eq!(parse_message(&[9, b'a']), b"a");
    }
}
