//! The recovery ladder for a modem that stays broken: a line that keeps failing is not just
//! redialled for ever (the forums' "works again after a power cycle") but escalated step by
//! step — redial, then reset the modem (`ATZ`, and `AT+CFUN=1,1` for a cellular one), then
//! reset its USB port, then the user's `reset_hook` (a GPIO, a switchable hub) — and after the
//! top step back to plain redials with backoff, starting over once the line has been up, an
//! administrator brought it up, or a long rest has passed. Pure: fed failures and the time.

use std::time::{Duration, Instant};

/// A step of the ladder above redialling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rung {
    /// `ATZ`; `AT+CFUN=1,1` (a reboot) for a cellular modem.
    ModemReset,
    /// The modem's USB device is de- and re-authorized (it re-enumerates).
    PortReset,
    /// The configured `reset_hook` runs.
    Hook,
}

impl Rung {
    pub fn as_str(self) -> &'static str {
        match self {
            Rung::ModemReset => "modem reset",
            Rung::PortReset => "USB port reset",
            Rung::Hook => "reset hook",
        }
    }
}

/// How a dial attempt failed, as the ladder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// An ordinary failure (BUSY, NO CARRIER, PPP trouble): counted.
    Failed,
    /// The modem did not answer a command: redialling a wedged modem is pointless, so the
    /// next step is taken at once.
    Wedged,
    /// No network registration within the deadline: the next step at once.
    NotRegistered,
}

/// The ladder's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderConfig {
    /// Failed dials in a row before the next step (0: the ladder is off).
    pub after_failures: u32,
    /// The modem's USB device can be reset (the port is a USB serial device).
    pub port_reset: bool,
    /// A `reset_hook` is configured.
    pub hook: bool,
    /// After the top step, how long before the ladder may start over.
    pub rest: Duration,
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            after_failures: 3,
            port_reset: false,
            hook: false,
            rest: Duration::from_secs(30 * 60),
        }
    }
}

/// Resets done, per kind, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resets {
    pub modem: u32,
    pub port: u32,
    pub hook: u32,
}

/// The ladder of one line.
#[derive(Debug, Clone)]
pub struct Ladder {
    config: LadderConfig,
    /// Failures since the last step (or success).
    failures: u32,
    /// The last step taken since the line was last up.
    last: Option<Rung>,
    /// When the top step was taken (the ladder rests until `rest` has passed).
    topped: Option<Instant>,
    resets: Resets,
}

impl Ladder {
    pub fn new(config: LadderConfig) -> Ladder {
        Ladder {
            config,
            failures: 0,
            last: None,
            topped: None,
            resets: Resets::default(),
        }
    }

    pub fn resets(&self) -> Resets {
        self.resets
    }

    /// The step taken last since the line was up, if any.
    pub fn last(&self) -> Option<Rung> {
        self.last
    }

    /// A dial attempt failed. `admin_up`: the line is wanted up (a line someone hung up is
    /// never escalated). Returns the step to take before the next dial, with its reason.
    pub fn on_failure(
        &mut self,
        trouble: Trouble,
        admin_up: bool,
        now: Instant,
    ) -> Option<(Rung, String)> {
        if !admin_up || self.config.after_failures == 0 {
            return None;
        }
        if let Some(at) = self.topped {
            if now.saturating_duration_since(at) < self.config.rest {
                return None;
            }
            // Rested: start over from the bottom.
            self.topped = None;
            self.last = None;
            self.failures = 0;
        }
        self.failures += 1;
        let why = match trouble {
            Trouble::Failed if self.failures < self.config.after_failures => return None,
            Trouble::Failed => format!("{} failed dials in a row", self.failures),
            Trouble::Wedged => "the modem does not answer".to_string(),
            Trouble::NotRegistered => "no network registration".to_string(),
        };
        let next = self.next_rung()?;
        self.failures = 0;
        self.last = Some(next);
        match next {
            Rung::ModemReset => self.resets.modem += 1,
            Rung::PortReset => self.resets.port += 1,
            Rung::Hook => self.resets.hook += 1,
        }
        if self.next_rung().is_none() {
            self.topped = Some(now);
        }
        Some((next, why))
    }

    /// The line came up: back to the bottom.
    pub fn on_up(&mut self) {
        self.failures = 0;
        self.last = None;
        self.topped = None;
    }

    /// Brought up by hand: a fresh start too.
    pub fn on_admin_up(&mut self) {
        self.on_up();
    }

    fn next_rung(&self) -> Option<Rung> {
        let available = |r: Rung| match r {
            Rung::ModemReset => true,
            Rung::PortReset => self.config.port_reset,
            Rung::Hook => self.config.hook,
        };
        [Rung::ModemReset, Rung::PortReset, Rung::Hook]
            .into_iter()
            .filter(|r| self.last.is_none_or(|l| *r > l))
            .find(|r| available(*r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> LadderConfig {
        LadderConfig {
            port_reset: true,
            hook: true,
            ..LadderConfig::default()
        }
    }

    #[test]
    fn three_failures_per_step_up_the_ladder_then_rest() {
        let mut l = Ladder::new(full());
        let now = Instant::now();
        let mut steps = Vec::new();
        for _ in 0..12 {
            if let Some((rung, why)) = l.on_failure(Trouble::Failed, true, now) {
                assert_eq!(why, "3 failed dials in a row");
                steps.push(rung);
            }
        }
        assert_eq!(steps, [Rung::ModemReset, Rung::PortReset, Rung::Hook]);
        assert_eq!(
            l.resets(),
            Resets {
                modem: 1,
                port: 1,
                hook: 1
            }
        );
        // Resting: nothing more for 30 minutes, then from the bottom again.
        let later = now + Duration::from_secs(31 * 60);
        let again: Vec<_> = (0..3)
            .filter_map(|_| l.on_failure(Trouble::Failed, true, later))
            .collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, Rung::ModemReset);
    }

    #[test]
    fn a_wedged_modem_or_no_registration_escalates_at_once() {
        let mut l = Ladder::new(LadderConfig::default());
        let now = Instant::now();
        assert_eq!(
            l.on_failure(Trouble::Wedged, true, now),
            Some((Rung::ModemReset, "the modem does not answer".into()))
        );
        // Without a USB port or hook, the modem reset is the top step.
        assert_eq!(l.on_failure(Trouble::NotRegistered, true, now), None);
        l.on_up();
        assert_eq!(
            l.on_failure(Trouble::NotRegistered, true, now).map(|s| s.0),
            Some(Rung::ModemReset)
        );
        assert_eq!(l.resets().modem, 2);
    }

    #[test]
    fn never_while_administratively_down_or_off() {
        let mut l = Ladder::new(full());
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.on_failure(Trouble::Wedged, false, now), None);
        }
        let mut off = Ladder::new(LadderConfig {
            after_failures: 0,
            ..full()
        });
        assert_eq!(off.on_failure(Trouble::Wedged, true, now), None);
        assert_eq!(l.resets(), Resets::default());
    }

    #[test]
    fn success_starts_over() {
        let mut l = Ladder::new(full());
        let now = Instant::now();
        l.on_failure(Trouble::Wedged, true, now);
        assert_eq!(l.last(), Some(Rung::ModemReset));
        l.on_up();
        assert_eq!(l.last(), None);
        assert_eq!(
            l.on_failure(Trouble::Wedged, true, now).map(|s| s.0),
            Some(Rung::ModemReset)
        );
    }
}
