//! Multilink PPP (RFC 1990), sans-IO: several member links carry one bundle's packets,
//! split into sequence-numbered fragments.
//!
//! - `header`: the MP header (protocol 0x003d, long and short sequence numbers) and the
//!   serial arithmetic of both widths;
//! - `endpoint`: the Endpoint Discriminator option's value;
//! - `reassembly`: fragments from the members back into packets, in order, with loss
//!   detection (RFC 1990 §4.1) and bounded memory;
//! - `scheduler`: a packet split over the members by rate and queue so all finish together;
//! - `bundle`: the reassembler, the scheduler and the sequence counter of one bundle,
//!   between member links' MP frames and the packets that run over the bundle;
//! - `bundle_session`: the bundle's network layer (one IPCP, IPv4) over a `Bundle`, beside
//!   the member [`Session`](crate::Session)s that carry its frames;
//! - LCP negotiates the MRRU, SSNHF and Endpoint Discriminator options when
//!   [`LcpConfig::multilink`](crate::LcpConfig::multilink) is set; the result is
//!   [`Session::multilink`](crate::Session::multilink).
//!
//! Nothing here does I/O or keeps a clock of its own: callers feed fragments and the time.

pub mod bundle;
pub mod bundle_session;
pub mod endpoint;
pub mod header;
pub mod reassembly;
pub mod scheduler;

pub use bundle::{Bundle, BundleConfig, BundleError, BundleStats, Outgoing};
pub use bundle_session::{BundleEvent, BundleSession, BundleSessionConfig, BundleSessionStats};
pub use endpoint::{EndpointClass, EndpointDiscriminator, EndpointError};
pub use header::{MpHeader, MpHeaderError, PROTOCOL, SeqFormat};
pub use reassembly::{Reassembler, ReassemblyConfig, ReassemblyStats};
pub use scheduler::{LinkState, Planned, ScheduleError, SchedulerConfig, schedule};

/// Smallest MRRU we accept from a peer: below it we Nak with ours. RFC 1990 gives no floor;
/// 296 is the classic low-speed MTU, and an MRRU under it leaves IP no room worth having.
pub const MIN_MRRU: u16 = 296;

/// Which bundle a link belongs to, as pppd decides it (`mp_join_bundle`): the name the
/// peer authenticated with and its Endpoint Discriminator. Links with equal ids from the
/// same peer go into one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleId {
    /// The peer's authenticated name; empty when we did not authenticate it.
    pub peer_name: String,
    /// The peer's Endpoint Discriminator, if it sent one.
    pub endpoint: Option<EndpointDiscriminator>,
}

/// pppd's `BUNDLE` notation: `"name"/magic:0a0b0c0d`, so both ends' logs read alike.
impl std::fmt::Display for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.peer_name)?;
        match &self.endpoint {
            Some(ed) => write!(f, "/{ed}"),
            None => Ok(()),
        }
    }
}

/// What we ask for on each member link to run Multilink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultilinkConfig {
    /// Largest reassembled packet we accept (the MRRU option; pppd's `mrru`).
    pub mrru: u16,
    /// Ask the peer to send us 12-bit sequence numbers (SSNHF; pppd's `mpshortseq`).
    pub short_seq: bool,
    /// Our Endpoint Discriminator, so the peer puts our links in one bundle.
    pub endpoint: Option<EndpointDiscriminator>,
}

impl Default for MultilinkConfig {
    fn default() -> Self {
        MultilinkConfig {
            mrru: 1500,
            short_seq: false,
            endpoint: None,
        }
    }
}

/// Multilink as LCP agreed it on one link. As in pppd (`mp_join_bundle`), Multilink is on
/// only when both MRRUs were acknowledged: ours by the peer, the peer's by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Largest reassembled packet the peer may send us.
    pub our_mrru: u16,
    /// Largest reassembled packet we may send the peer.
    pub peer_mrru: u16,
    /// We send short sequence numbers (we acknowledged the peer's SSNHF).
    pub tx_short_seq: bool,
    /// We receive short sequence numbers (the peer acknowledged our SSNHF).
    pub rx_short_seq: bool,
    /// The peer's Endpoint Discriminator, if it sent one: with its authenticated name, the
    /// bundle it belongs to.
    pub peer_endpoint: Option<EndpointDiscriminator>,
}

impl Negotiated {
    /// Header format of the fragments we send.
    pub fn tx_format(&self) -> SeqFormat {
        SeqFormat::new(self.tx_short_seq)
    }

    /// Header format of the fragments we receive.
    pub fn rx_format(&self) -> SeqFormat {
        SeqFormat::new(self.rx_short_seq)
    }
}

#[cfg(test)]
mod tests;
