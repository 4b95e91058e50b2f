//! A sans-IO PPP engine: async HDLC framing, LCP, PAP/CHAP, IPCP, in both the
//! dialing and the answering role. No I/O, no async, no panics on any input.
//! It has no async runtime either: the tokio driver around it is the main
//! crate's `eqlplus_dialer::ppp::driver` (as quinn is around quinn-proto).
//!
//! # Layering
//!
//! ```text
//!  (eqlplus_dialer::ppp::driver   tokio: line bytes ⇄ Session ⇄ IP/event channels)
//!     │
//!  Session (session.rs)   phases Dead→Establish→Authenticate→Network→Terminate,
//!     │                   queues, events, timers (deadlines), counters
//!     ├── LCP (lcp.rs)    link options, echo keepalive, Protocol-Reject
//!     ├── PAP / CHAP      pap.rs, chap.rs — both roles (auth.rs: secrets, AuthRole)
//!     ├── IPCP (ipcp.rs)  addresses + RFC 1877 DNS/NBNS
//!     └── member mode     with Multilink agreed: no IPCP, Event::BundleMember,
//!                         frames below 0xc000 to/from the caller's mp::Bundle
//!           │
//!  mp/ (RFC 1990)         Multilink: header.rs (MP header, 12/24-bit serial
//!     │                   arithmetic), endpoint.rs (Endpoint Discriminator),
//!     │                   reassembly.rs (RFC 1990 §4.1: M, loss, bounds),
//!     │                   scheduler.rs (split by rate and queue: equal finish),
//!     │                   bundle.rs (Bundle: both of them + the sequence counter
//!     │                   for N members: MP frames ⇄ protocol packets),
//!     │                   bundle_session.rs (the bundle's IPCP + IPv4, beside
//!     │                   the member Sessions);
//!     │                   LCP negotiates MRRU/SSNHF/ED (LcpConfig::multilink),
//!     │                   Session::multilink() tells the result
//!  fsm.rs                 RFC 1661 automaton shared by LCP and IPCP; each
//!                         protocol only implements `fsm::Negotiator`
//!  packet.rs              typed views: control packets, option lists
//!  hdlc.rs                RFC 1662 framing: escaping, ACCM, FCS-16, ACFC/PFC
//! ```
//!
//! Everything is driven from outside: feed line bytes with
//! [`Session::handle_input`], call [`Session::handle_timeout`] at
//! [`Session::poll_timeout`], write out whatever [`Session::poll_transmit`]
//! returns, and read [`Session::poll_event`] / [`Session::poll_ip`]. Time is
//! always an `Instant` passed in, so tests run on a fake clock. The main
//! crate's `ppp::driver::run` (and `spawn`) is that async driver over any
//! `AsyncRead + AsyncWrite` line, with channels for IP packets and events.
//!
//! # Behaviour the driver must know
//!
//! - One [`Session`] per connection. After [`Event::Down`] it is dead (ignores
//!   input, no timers); redial with a new one. When the line itself fails,
//!   [`Session::lower_down`] ends the session at once.
//! - [`Session::poll_transmit`] returns one complete frame per call (control
//!   frames before queued IP); write them in order.
//! - Set [`Config::seed`] from the OS RNG: it feeds magic numbers and CHAP
//!   challenges. `Config::dialer`/`Config::answer` fill it from fastrand's
//!   thread-local generator (std's hasher keys and the clock), which is fine
//!   for magic numbers only; the daemon's line drivers draw each session's
//!   seed from their generator, seeded from the supervisor's `getrandom` seed.
//! - Over a Linux PPP channel (`/dev/ppp`, the kernel's `ppp_async` framing the tty) set
//!   [`Config::framing`] to [`Framing::Unframed`]: feed each frame read from the channel to
//!   [`Session::handle_frame_input`]; [`Session::poll_transmit`] then gives `protocol (2
//!   bytes) + information`, to be written as one frame. After [`Event::LinkUp`] program the
//!   channel from [`Session::link_parameters`] (ACCMs, MRU, compression flags).
//! - Header compression: [`hdlc::Header`] emits ACFC/PFC-compressed headers
//!   when asked; the session asks only for what the peer acknowledged, and
//!   never for LCP. LCP negotiation packets (codes 1–7) always go out with the
//!   all-ones ACCM. The decoder accepts compressed and uncompressed headers and
//!   always frames of at least 1500 bytes of information.
//! - Keepalive is pppd's `lcp-echo-adaptive`: no Echo-Request is sent in an
//!   interval in which any valid frame arrived, and any valid frame clears the
//!   failure count. A dead link is reported after at most
//!   `(echo_failure + 2) × echo_interval` (5 s with the defaults); the session
//!   then sends one Terminate-Request as a courtesy and goes Down at once.
//! - Ending: our `close` or an authentication failure sends Terminate-Request
//!   and reports Down on Terminate-Ack (or after Max-Terminate × restart = 6 s);
//!   a peer's Terminate-Request is acknowledged and Down follows one restart
//!   interval later (RFC 1661 zrc), as in pppd.
//! - Why it ended is a [`DownReason`] (as quinn's `ConnectionError`): act on
//!   its variant (e.g. [`DownReason::auth_failure`] to back off), show its
//!   `Display`. A line failure during a close keeps the close's reason
//!   (`LowerDown::closing`), so an authentication failure is never lost to
//!   the hangup that follows it.
//! - Hostile peers: queued control frames are bounded
//!   ([`Config::max_control_queue`]); call [`Session::poll_transmit`] only when
//!   the line can take the frame, since frames nobody takes for
//!   [`Session::tx_stall_limit`] end the session ("peer stopped reading").
//!   IP must be up within [`Config::establish_timeout`] (also after a
//!   renegotiation); the Down reason names the phase it was stuck in.
//! - Multilink ([`LcpConfig::multilink`]): when both MRRUs were acknowledged the session
//!   does not run IPCP after authentication; it reports [`Event::BundleMember`] with the
//!   bundle's identity (peer name and Endpoint Discriminator, as pppd) and hands every
//!   frame below 0xc000 (MP fragments, NCPs, network packets) to
//!   [`Session::poll_bundle_frame`]; the caller feeds them to its [`mp::Bundle`] and sends
//!   the bundle's frames with [`Session::send_frame`]. A peer that rejects MRRU gets a
//!   plain link.
//! - A peer that renegotiates LCP while we are up (e.g. it restarted) gives
//!   [`Event::NetworkDown`], then authentication and IPCP run again and a new
//!   [`Event::Up`] follows.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

/// `tracing`'s macros under this crate's log targets. The core was the main crate's module
/// `eqlplus_dialer::ppp` before it became a crate of its own; its log lines keep those
/// targets (`eqlplus_dialer::ppp::session`, …) so that they read the same and filters such as
/// `log_level = "info,eqlplus_dialer::ppp=debug"` keep working. Each module names its target
/// in a `LOG_TARGET` constant, which the macros pick up where they are called.
macro_rules! debug {
    ($($arg:tt)+) => { ::tracing::debug!(target: LOG_TARGET, $($arg)+) };
}

/// See [`debug!`].
macro_rules! info {
    ($($arg:tt)+) => { ::tracing::info!(target: LOG_TARGET, $($arg)+) };
}

pub mod auth;
pub mod chap;
pub mod fsm;
pub mod hdlc;
pub mod ipcp;
pub mod lcp;
pub mod mp;
pub mod packet;
pub mod pap;
pub mod session;

pub use auth::{Credentials, Secret, Secrets};
pub use fsm::FsmConfig;
pub use ipcp::IpcpConfig;
pub use lcp::{AuthMethods, LcpConfig};
pub use mp::{EndpointDiscriminator, MultilinkConfig};
pub use session::{
    Config, ControlProtocol, DownReason, Event, Framing, LinkParameters, NegotiationFailure, Phase,
    Role, SendError, Session, Stats,
};

/// The seeded generator for magic numbers and CHAP challenges: the project's
/// one PRNG, [`fastrand`]'s, in a wrapper whose `Debug` hides the state.
///
/// Seeded from [`session::Config::seed`] so tests are reproducible; in the
/// daemon that seed comes from the OS (`getrandom`, via the supervisor).
#[derive(Clone)]
pub(crate) struct Rng(fastrand::Rng);

/// The state would let anyone predict magic numbers and CHAP challenges.
impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rng(<redacted>)")
    }
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        self.0.u32(..)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

#[cfg(test)]
mod tests;
