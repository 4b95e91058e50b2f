//! The one place where the daemon's own types become the control protocol's: `control` sits
//! beside `link` and `balancer`, not above them (docs/architecture.md, "Layers"), so neither
//! side can name the other's type and the daemon, above both, converts.

use std::time::Instant;

use crate::balancer;
use crate::control::{AdminState, Internet, LineState, Policy, TrackStatus};
use crate::link;
use crate::link::track::TrackSnapshot;
use crate::track;

/// Milliseconds, as the wire gives round trips.
fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Upstream tracking's snapshot as the status report shows it.
pub(super) fn track_status(s: &TrackSnapshot, now: Instant) -> TrackStatus {
    let (internet, reason) = match &s.internet {
        track::Internet::Unknown => (Internet::Unknown, None),
        track::Internet::Online => (Internet::Online, None),
        track::Internet::Offline { reason } => (Internet::Offline, Some(reason.clone())),
        track::Internet::Degraded { reason } => (Internet::Degraded, Some(reason.clone())),
    };
    TrackStatus {
        internet,
        reason,
        rtt_ms: s.rtt.map(ms),
        jitter_ms: s.jitter.map(ms),
        loss: s.loss,
        probe_bytes: s.probe_bytes,
        probe_bytes_per_day: s.probe_bytes_per_day(now),
    }
}

/// The LCP echo round trip on the wire.
pub(super) fn lcp_rtt_ms(rtt: Option<std::time::Duration>) -> Option<f64> {
    rtt.map(ms)
}

impl From<link::LineState> for LineState {
    fn from(state: link::LineState) -> LineState {
        match state {
            link::LineState::Disabled => LineState::Disabled,
            link::LineState::Down => LineState::Down,
            link::LineState::Locking => LineState::Locking,
            link::LineState::InitChat => LineState::InitChat,
            link::LineState::DialChat => LineState::DialChat,
            link::LineState::Ppp => LineState::Ppp,
            link::LineState::Up => LineState::Up,
            link::LineState::NoInternet => LineState::NoInternet,
            link::LineState::Degraded => LineState::Degraded,
            link::LineState::HangingUp => LineState::HangingUp,
            link::LineState::Holdoff => LineState::Holdoff,
            link::LineState::Failed => LineState::Failed,
            link::LineState::NoDevice => LineState::NoDevice,
            link::LineState::Registering => LineState::Registering,
            link::LineState::SimLocked => LineState::SimLocked,
            link::LineState::Resetting => LineState::Resetting,
        }
    }
}

impl From<balancer::Policy> for Policy {
    fn from(policy: balancer::Policy) -> Policy {
        match policy {
            balancer::Policy::RoundRobin => Policy::RoundRobin,
            balancer::Policy::Weighted => Policy::Weighted,
            balancer::Policy::LeastLoaded => Policy::LeastLoaded,
            balancer::Policy::Sticky { .. } => Policy::Sticky,
        }
    }
}

/// What the administrator asked, from the line machine's flag.
pub(super) fn admin_state(admin_up: bool) -> AdminState {
    if admin_up {
        AdminState::Up
    } else {
        AdminState::Down
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The names on the wire are the ones the daemon logs and the configuration uses.
    #[test]
    fn wire_names_are_the_domain_names() {
        let states = [
            link::LineState::Disabled,
            link::LineState::Down,
            link::LineState::Locking,
            link::LineState::InitChat,
            link::LineState::DialChat,
            link::LineState::Ppp,
            link::LineState::Up,
            link::LineState::NoInternet,
            link::LineState::Degraded,
            link::LineState::HangingUp,
            link::LineState::Holdoff,
            link::LineState::Failed,
        ];
        for state in states {
            let wire = LineState::from(state);
            assert_eq!(wire.as_str(), state.as_str());
            assert!(!matches!(wire, LineState::Other(_)), "{state:?}");
        }
        let policies = [
            balancer::Policy::RoundRobin,
            balancer::Policy::Weighted,
            balancer::Policy::LeastLoaded,
            balancer::Policy::Sticky {
                hold: Duration::from_secs(60),
            },
        ];
        for policy in policies {
            let wire = Policy::from(policy);
            assert_eq!(wire.as_str(), policy.name());
            assert!(!matches!(wire, Policy::Other(_)), "{policy:?}");
        }
        assert_eq!(admin_state(true).as_str(), "up");
        assert_eq!(admin_state(false).as_str(), "down");
    }
}
