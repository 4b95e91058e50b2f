//! When to dial again after a line failed: jittered exponential backoff, by kind of failure.
//!
//! - A busy number or a dropped carrier is an everyday event: redial soon (the holdoff, with
//!   only gentle growth).
//! - Rejected credentials will not fix themselves: back off hard, so a wrong password does not
//!   hammer the ISP (some lock accounts after repeated failures).
//! - Anything else (timeouts, dead links, I/O errors) grows by the configured factor.

use std::time::Duration;

use crate::config::RedialConfig;

/// What kind of failure ended an attempt or a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// BUSY, NO CARRIER, NO ANSWER, a line that dropped after being up.
    Transient,
    /// The ISP rejected our credentials.
    Auth,
    /// Timeouts, errors, a dead modem.
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 3] = [
        FailureKind::Transient,
        FailureKind::Auth,
        FailureKind::Other,
    ];

    /// The name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Auth => "auth",
            FailureKind::Other => "other",
        }
    }
}

/// The smallest pause after an authentication failure.
const AUTH_MIN_DELAY: Duration = Duration::from_secs(30);

/// Decides the wait before the next attempt. Pure: the random jitter comes from a seeded
/// generator (the project's one PRNG, fastrand's), so tests are exact.
#[derive(Debug, Clone)]
pub struct RedialPolicy {
    config: RedialConfig,
    rng: fastrand::Rng,
}

impl RedialPolicy {
    pub fn new(config: RedialConfig, seed: u64) -> RedialPolicy {
        RedialPolicy {
            config,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The wait before attempt number `failures + 1`, after `failures` consecutive failures,
    /// the last of which was of `kind`. ±20 % jitter keeps lines that failed together (one
    /// ISP outage) from redialing in lockstep.
    pub fn delay(&mut self, failures: u32, kind: FailureKind) -> Duration {
        let c = &self.config;
        let exponent = failures.saturating_sub(1).min(30) as i32;
        let base = match kind {
            FailureKind::Transient => c.holdoff.as_secs_f64() * 1.25f64.powi(exponent),
            FailureKind::Other => c.holdoff.as_secs_f64() * c.backoff_factor.powi(exponent),
            FailureKind::Auth => (c.holdoff.as_secs_f64() * 4f64.powi(exponent + 1))
                .max(AUTH_MIN_DELAY.as_secs_f64()),
        };
        let capped = base.min(c.max_delay.as_secs_f64());
        let jitter = 0.8 + 0.4 * self.rng.f64();
        Duration::from_secs_f64((capped * jitter).max(0.05))
    }

    /// Whether to stop trying after `failures` consecutive failures.
    pub fn gives_up(&self, failures: u32) -> bool {
        self.config.max_failures > 0 && failures >= self.config.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedialPolicy {
        RedialPolicy::new(
            RedialConfig {
                holdoff: Duration::from_secs(2),
                backoff_factor: 2.0,
                max_delay: Duration::from_secs(300),
                max_failures: 5,
            },
            42,
        )
    }

    fn within(d: Duration, center: f64) -> bool {
        let s = d.as_secs_f64();
        s >= center * 0.8 - 1e-9 && s <= center * 1.2 + 1e-9
    }

    #[test]
    fn grows_by_kind_with_jitter() {
        let mut p = policy();
        for (failures, center) in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)] {
            let d = p.delay(failures, FailureKind::Other);
            assert!(within(d, center), "{failures}: {d:?}");
        }
        assert!(within(p.delay(20, FailureKind::Other), 300.0), "capped");
        assert!(within(p.delay(1, FailureKind::Transient), 2.0));
        assert!(within(p.delay(3, FailureKind::Transient), 2.0 * 1.5625));
        let auth1 = p.delay(1, FailureKind::Auth);
        let auth2 = p.delay(2, FailureKind::Auth);
        assert!(within(auth1, 30.0), "{auth1:?}");
        assert!(within(auth2, 32.0) && auth2 > p.delay(2, FailureKind::Other) * 4);
    }

    #[test]
    fn jitter_varies_and_is_reproducible() {
        let mut a = policy();
        let mut b = policy();
        let xs: Vec<Duration> = (0..5).map(|_| a.delay(1, FailureKind::Other)).collect();
        let ys: Vec<Duration> = (0..5).map(|_| b.delay(1, FailureKind::Other)).collect();
        assert_eq!(xs, ys, "same seed, same delays");
        assert!(xs.windows(2).any(|w| w[0] != w[1]), "jittered: {xs:?}");
    }

    #[test]
    fn gives_up_only_when_configured() {
        let p = policy();
        assert!(!p.gives_up(4));
        assert!(p.gives_up(5));
        let never = RedialPolicy::new(
            RedialConfig {
                max_failures: 0,
                ..p.config
            },
            1,
        );
        assert!(!never.gives_up(1_000_000));
    }
}
