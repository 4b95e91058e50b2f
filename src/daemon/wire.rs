//! The one place where the daemon's own types become the control protocol's: `control` sits
//! beside `link` and `balancer`, not above them (docs/architecture.md, "Layers"), so neither
//! side can name the other's type and the daemon, above both, converts.

use crate::balancer;
use crate::control::{AdminState, LineState, Policy};
use crate::link;

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
            link::LineState::HangingUp => LineState::HangingUp,
            link::LineState::Holdoff => LineState::Holdoff,
            link::LineState::Failed => LineState::Failed,
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
pub fn admin_state(admin_up: bool) -> AdminState {
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
