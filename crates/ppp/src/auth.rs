//! Pieces shared by PAP and CHAP: secrets that never print, the secrets table
//! of the authenticator, and the common shape of an authentication role.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use super::packet::ControlPacket;

/// A password or CHAP secret. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes; keep them out of logs.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s.as_bytes())
    }
}

/// What we use to authenticate ourselves to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (PAP Peer-ID, CHAP Name).
    pub user: String,
    /// Password / CHAP secret.
    pub secret: Secret,
}

impl Credentials {
    /// Credentials for `user` with `secret`.
    pub fn new(user: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Credentials {
            user: user.into(),
            secret: secret.into(),
        }
    }
}

/// The authenticator's table of user → secret. `Debug` lists users only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    map: HashMap<String, Secret>,
}

impl Secrets {
    /// An empty table.
    pub fn new() -> Self {
        Secrets::default()
    }

    /// Add or replace `user`'s secret.
    pub fn insert(&mut self, user: impl Into<String>, secret: impl Into<Secret>) -> &mut Self {
        self.map.insert(user.into(), secret.into());
        self
    }

    /// Builder form of [`Secrets::insert`].
    pub fn with(mut self, user: impl Into<String>, secret: impl Into<Secret>) -> Self {
        self.insert(user, secret);
        self
    }

    /// The secret of `user`, if known.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.map.get(user)
    }

    /// True when no user is configured.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("users", &self.map.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// End of an authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authentication succeeded; for the authenticator role, the peer's name.
    Success {
        /// Name the peer authenticated as (empty for the authenticated role).
        peer_name: String,
    },
    /// Authentication failed, with a reason meant for humans.
    Failure(String),
}

/// One side of one authentication protocol, driven like the rest of the engine.
pub trait AuthRole: fmt::Debug + Send {
    /// Begin (enter the Authenticate phase).
    fn start(&mut self, now: Instant);
    /// A packet of this protocol arrived; packets for the other role are ignored.
    fn input(&mut self, pkt: ControlPacket<'_>, now: Instant);
    /// Run due timers.
    fn handle_timeout(&mut self, now: Instant);
    /// Next timer deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Next packet to send (protocol information field).
    fn poll_packet(&mut self) -> Option<Vec<u8>>;
    /// Next outcome: first success, any failure.
    fn poll_outcome(&mut self) -> Option<AuthOutcome>;
}

/// Peer-supplied text made safe for logs and messages: invalid UTF-8 replaced,
/// control characters escaped, length capped.
pub fn printable(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Compare without an early exit, so timing does not reveal how much matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let s = Secrets::new().with("bob", "s3cret");
        let dbg = format!("{s:?}");
        assert!(dbg.contains("bob") && !dbg.contains("s3cret"));
    }

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable(b"ok\n\x1b[2J"), "ok\\n\\u{1b}[2J");
        assert_eq!(printable(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
