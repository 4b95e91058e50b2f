//! The establish deadline: IP must be up within [`Config::establish_timeout`] of the start
//! (and of a renegotiation), else the session ends naming where it got stuck.

use std::time::Instant;

use super::{DownReason, Phase, Session};

impl Session {
    /// IP is not up by the deadline: end the session.
    pub(super) fn check_establish_deadline(&mut self, now: Instant) {
        if self.phase != Phase::Dead && self.establish_deadline.is_some_and(|d| d <= now) {
            self.establish_deadline = None;
            let reason = DownReason::EstablishTimeout {
                after: self.cfg.establish_timeout.unwrap_or_default(),
                stuck_in: self.stuck_in(),
            };
            self.terminate_now(reason, now);
        }
    }

    /// A renegotiation starts: IP must be up again within the establish timeout.
    pub(super) fn arm_establish_deadline(&mut self, now: Instant) {
        if self.establish_deadline.is_none() {
            self.establish_deadline = self.cfg.establish_timeout.map(|t| now + t);
        }
    }

    /// Where establishment is stuck, in words (for the establish deadline).
    pub(super) fn stuck_in(&self) -> String {
        let peer_reqs = |n: u32| {
            if n == 1 {
                "1 Configure-Request".to_string()
            } else {
                format!("{n} Configure-Requests")
            }
        };
        // From what the peer did over the whole attempt, not the state of the
        // moment (a retransmission may just have left Ack-Rcvd).
        let fsm_words = |proto: &str, i: usize| -> String {
            let (heard, reqs, acks) = (
                self.heard[i],
                self.rx_conf_requests[i],
                self.rx_conf_acks[i],
            );
            let why = match (reqs, acks) {
                (0, 0) if !heard => "no answer from the peer".to_string(),
                (0, 0) => "peer sent no Configure-Request and acknowledged none of ours".into(),
                (0, _) => "peer acknowledged our options but never sent its own".into(),
                (_, 0) => format!("peer sent {} but never acknowledged ours", peer_reqs(reqs)),
                _ => format!(
                    "peer sent {} and acknowledged ours, but negotiation never settled",
                    peer_reqs(reqs)
                ),
            };
            format!("{proto}: {why}")
        };
        match self.phase {
            Phase::Establish => fsm_words("LCP", 0),
            Phase::Authenticate => format!(
                "authentication: {} did not finish",
                self.auth_unfinished().join(" and ")
            ),
            Phase::Network => fsm_words("IPCP", 1),
            Phase::Terminate => "termination".into(),
            Phase::Dead => "nothing".into(),
        }
    }
}
