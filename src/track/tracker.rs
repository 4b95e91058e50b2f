//! The tracker: when to probe, what the answers mean.
//!
//! ```text
//!            round ok                 round fails (< down)        round fails (down in a row)
//!  starting ─────────► online ──1 probe fails──► suspect ──────────────────► offline
//!   (all targets,     (1 target    or passive     (all targets    ◄───────     (1 target a
//!    every retry)      every        evidence       every retry)   round ok      round, rotating,
//!                      interval)                                               every retry;
//!                         ▲                                                     `up` ok rounds
//!                         └─────────────────────────────────────────────────── in a row)
//! ```
//!
//! A round asks one target (cheap, while all is well) or every target at once (to decide
//! quickly); it succeeds when `quorum` of the targets asked answered, so one dead target is
//! not an outage. Passive evidence (the line's own connections going unanswered) counts as a
//! failed round: one more failed round of every target, about a second, and the line is out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Latency, TrackConfig};

/// Extra time past a probe's timeout before the core counts it lost on its own (the driver
/// reports a timeout itself; this only guards against a probe never reported).
const GRACE: Duration = Duration::from_millis(500);

/// After acting on passive suspicion, further suspicion is ignored this long: a client that
/// keeps trying a dead server must not turn the line's probes into a stream.
const SUSPICION_COOLDOWN: Duration = Duration::from_secs(5);

/// A line that received at least this much during a round was busy: its probes may wait
/// behind the downloads queued at the ISP's end (a modem line under load queues seconds).
const BUSY_BYTES: u64 = 4096;

/// A busy line's probes get twice the time after each round that went unanswered while
/// data came in, up to this; unanswered for that long, they count as failed even on a busy
/// line (so an outage of what the probes ask, such as DNS, is still found under load).
const BUSY_TIMEOUT_MAX: Duration = Duration::from_secs(8);

/// A degraded line is good again below this share of its limits.
const HYSTERESIS: f64 = 0.8;

/// Names one probe in flight.
pub type ProbeId = u64;

/// A probe to send now: `target` indexes the configuration's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    pub id: ProbeId,
    pub target: usize,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// What the tracker believes of the Internet behind the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Internet {
    /// Not known yet (the line just came up); the line carries traffic meanwhile.
    Unknown,
    Online,
    /// Probes through the line go unanswered.
    Offline {
        reason: String,
    },
    /// Probes are answered, but too slowly or with too much loss.
    Degraded {
        reason: String,
    },
}

impl Internet {
    /// Whether the line belongs in the balance.
    pub fn carries_traffic(&self) -> bool {
        matches!(self, Internet::Unknown | Internet::Online)
    }
}

/// What the tracker tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackEvent {
    /// The verdict changed.
    Changed(Internet),
    /// The line has been without the Internet for `redial_after`: dial it again.
    Redial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Online,
    Suspect,
    Offline,
}

#[derive(Debug)]
struct Round {
    started: Instant,
    timeout: Duration,
    /// The line's received bytes when the round began.
    received_at_start: u64,
    outstanding: Vec<ProbeId>,
    /// (id, target) of every probe of the round.
    probes: Vec<(ProbeId, usize)>,
    answered: Vec<usize>,
    errors: Vec<String>,
}

/// The tracking core of one line.
#[derive(Debug)]
pub struct Tracker {
    config: TrackConfig,
    phase: Phase,
    internet: Internet,
    next_round: Option<Instant>,
    round: Option<Round>,
    /// Failed rounds in a row (starting, suspect).
    failed: u32,
    /// Successful rounds in a row (offline).
    succeeded: u32,
    next_target: usize,
    next_id: ProbeId,
    requests: VecDeque<ProbeRequest>,
    events: VecDeque<TrackEvent>,
    latency: Latency,
    /// Since when the line has been out of the balance (offline or degraded).
    out_since: Option<Instant>,
    redial_asked: bool,
    /// When passive suspicion was last acted on.
    suspected_at: Option<Instant>,
    probes_sent: u64,
    probes_lost: u64,
    /// The line's received bytes, as last told.
    received: u64,
    /// Doublings of the probes' timeout while the line is busy.
    stretch: u32,
}

impl Tracker {
    /// A tracker for a line that just came up: it probes every target at once, now.
    pub fn new(config: TrackConfig, now: Instant) -> Tracker {
        Tracker {
            config,
            phase: Phase::Starting,
            internet: Internet::Unknown,
            next_round: Some(now),
            round: None,
            failed: 0,
            succeeded: 0,
            next_target: 0,
            next_id: 1,
            requests: VecDeque::new(),
            events: VecDeque::new(),
            latency: Latency::new(),
            out_since: None,
            redial_asked: false,
            suspected_at: None,
            probes_sent: 0,
            probes_lost: 0,
            received: 0,
            stretch: 0,
        }
    }

    /// The IP bytes the line has received so far (a running count): a line receiving data
    /// while its probes go unanswered is busy, not cut off.
    pub fn traffic(&mut self, received: u64) {
        self.received = received;
    }

    /// The probes' timeout now: the configured one, doubled per busy round unanswered.
    fn probe_timeout(&self) -> Duration {
        let base = self.config.timeout;
        base.saturating_mul(1 << self.stretch.min(16))
            .min(BUSY_TIMEOUT_MAX.max(base))
    }

    pub fn config(&self) -> &TrackConfig {
        &self.config
    }

    pub fn internet(&self) -> &Internet {
        &self.internet
    }

    /// The probes' round trip, jitter and loss.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// Probes sent and lost since the line came up.
    pub fn probes(&self) -> (u64, u64) {
        (self.probes_sent, self.probes_lost)
    }

    /// When [`Tracker::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.config.enabled() {
            return None;
        }
        [self.next_round, self.round_deadline(), self.redial_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the round in flight gives up on its silent probes.
    fn round_deadline(&self) -> Option<Instant> {
        let r = self.round.as_ref()?;
        Some(r.started + r.timeout + GRACE)
    }

    /// When to ask for a redial, while out of the balance and not asked yet.
    fn redial_at(&self) -> Option<Instant> {
        match (self.out_since, self.config.redial_after) {
            (Some(since), Some(after)) if !self.redial_asked => Some(since + after),
            _ => None,
        }
    }

    /// Time passed: start a round that is due, give up on a round's silent probes, ask for a
    /// redial.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.config.enabled() {
            return;
        }
        if self.round_deadline().is_some_and(|at| now >= at) {
            let silent = self
                .round
                .as_ref()
                .map(|r| r.outstanding.clone())
                .unwrap_or_default();
            for id in silent {
                self.probe_result(id, Err("no report".into()), now);
            }
        }
        if self.round.is_none() && self.next_round.is_some_and(|t| t <= now) {
            self.start_round(now);
        }
        if self.redial_at().is_some_and(|at| now >= at) {
            self.redial_asked = true;
            self.events.push_back(TrackEvent::Redial);
        }
    }

    /// The next probe to send, if any.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.requests.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<TrackEvent> {
        self.events.pop_front()
    }

    /// A probe's outcome: its round trip, or why it failed. Unknown ids (a round already
    /// decided) are ignored.
    pub fn probe_result(&mut self, id: ProbeId, outcome: Result<Duration, String>, now: Instant) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let Some(pos) = round.outstanding.iter().position(|&p| p == id) else {
            return;
        };
        round.outstanding.swap_remove(pos);
        let target = round
            .probes
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |&(_, t)| t);
        match outcome {
            Ok(rtt) => {
                round.answered.push(target);
                self.latency.sample(rtt);
            }
            Err(why) => {
                let name = self
                    .config
                    .targets
                    .get(target)
                    .map_or_else(String::new, |t| t.to_string());
                round.errors.push(format!("{name}: {why}"));
                self.latency.lost();
                self.probes_lost += 1;
            }
        }
        // Decided once the quorum answered: the others' answers are not waited for.
        let needed = self.config.quorum.clamp(1, round.probes.len().max(1));
        if round.outstanding.is_empty() || round.answered.len() >= needed {
            self.finish_round(now);
        }
    }

    /// Passive evidence: the line's own connections go unanswered. Unless the line is already
    /// in doubt, ask every target now; this counts as a failed round.
    pub fn suspect(&mut self, now: Instant) {
        if !self.config.enabled()
            || self
                .suspected_at
                .is_some_and(|t| now < t + SUSPICION_COOLDOWN)
        {
            return;
        }
        match self.phase {
            Phase::Online => {
                self.suspected_at = Some(now);
                self.phase = Phase::Suspect;
                self.failed = self.failed.max(self.config.down.saturating_sub(1));
                if self.round.is_none() {
                    self.next_round = Some(now);
                }
            }
            Phase::Starting if self.round.is_none() => {
                self.suspected_at = Some(now);
                self.next_round = Some(now);
            }
            _ => {}
        }
    }

    fn start_round(&mut self, now: Instant) {
        let n = self.config.targets.len();
        let targets: Vec<usize> = match self.phase {
            Phase::Starting | Phase::Suspect => (0..n).collect(),
            // While all is well (or all is lost), ask only as many as the quorum needs.
            Phase::Online | Phase::Offline => (0..self.config.quorum.clamp(1, n))
                .map(|k| (self.next_target + k) % n)
                .collect(),
        };
        let mut probes = Vec::with_capacity(targets.len());
        let timeout = self.probe_timeout();
        for target in targets {
            let id = self.next_id;
            self.next_id += 1;
            probes.push((id, target));
            self.requests.push_back(ProbeRequest {
                id,
                target,
                timeout,
            });
        }
        self.probes_sent += probes.len() as u64;
        self.round = Some(Round {
            started: now,
            timeout,
            received_at_start: self.received,
            outstanding: probes.iter().map(|&(id, _)| id).collect(),
            probes,
            answered: Vec::new(),
            errors: Vec::new(),
        });
        self.next_round = None;
    }

    fn finish_round(&mut self, now: Instant) {
        let Some(round) = self.round.take() else {
            return;
        };
        let asked = round.probes.len();
        let needed = self.config.quorum.clamp(1, asked.max(1));
        let ok = round.answered.len() >= needed;
        let n = self.config.targets.len().max(1);
        // Stay with a target that answers; move on from one that does not.
        self.next_target = match round.answered.first() {
            Some(&t) => t,
            None => (round.probes.first().map_or(0, |&(_, t)| t) + 1) % n,
        };
        let (interval, retry) = (self.config.interval, self.config.retry);
        let busy = self.received.saturating_sub(round.received_at_start) >= BUSY_BYTES;
        if !ok && busy && round.timeout < BUSY_TIMEOUT_MAX {
            // Data came in meanwhile: the answers may be queued behind it. Ask again, with
            // more time; this round says nothing.
            self.stretch += 1;
            tracing::debug!(
                "probes unanswered within {} ms while the line received data: asking again with {} ms",
                round.timeout.as_millis(),
                self.probe_timeout().as_millis()
            );
            self.next_round = Some(now);
            return;
        }
        if ok && !busy {
            self.stretch = 0;
        }
        match (self.phase, ok) {
            (Phase::Starting | Phase::Suspect, true) => {
                self.phase = Phase::Online;
                self.failed = 0;
                self.next_round = Some(round.started + interval);
                self.judge_quality(now);
            }
            (Phase::Online, true) => {
                self.next_round = Some(round.started + interval);
                self.judge_quality(now);
            }
            (Phase::Online, false) => {
                self.phase = Phase::Suspect;
                self.failed = 1;
                // In doubt: ask every target at once, now.
                self.next_round = Some(now);
            }
            (Phase::Starting | Phase::Suspect, false) => {
                self.failed += 1;
                self.next_round = Some((round.started + retry).max(now));
            }
            (Phase::Offline, true) => {
                self.succeeded += 1;
                if self.succeeded >= self.config.up {
                    self.phase = Phase::Online;
                    self.succeeded = 0;
                    self.next_round = Some(round.started + interval);
                    self.judge_quality(now);
                } else {
                    self.next_round = Some((round.started + retry).max(now));
                }
            }
            (Phase::Offline, false) => {
                self.succeeded = 0;
                self.next_round = Some((round.started + retry).max(now));
            }
        }
        if matches!(self.phase, Phase::Starting | Phase::Suspect)
            && self.failed >= self.config.down.max(1)
        {
            self.phase = Phase::Offline;
            self.failed = 0;
            self.succeeded = 0;
            let mut errors = round.errors;
            errors.sort();
            errors.truncate(3);
            self.set(
                Internet::Offline {
                    reason: format!("no answer through the line ({})", errors.join("; ")),
                },
                now,
            );
            self.next_round = Some((round.started + retry).max(now));
        }
    }

    /// Online by the probes: good enough, or degraded by the configured limits? A degraded
    /// line must get back under 80 % of a limit to count as good again, so one good probe
    /// right at the limit does not make it flap.
    fn judge_quality(&mut self, now: Instant) {
        let margin = if matches!(self.internet, Internet::Degraded { .. }) {
            HYSTERESIS
        } else {
            1.0
        };
        let mut why = Vec::new();
        if let (Some(max), Some(srtt)) = (self.config.max_latency, self.latency.srtt())
            && srtt > max.mul_f64(margin)
        {
            why.push(format!(
                "round trip {} ms over max_latency {} ms",
                srtt.as_millis(),
                max.as_millis()
            ));
        }
        // Loss is judged once the window holds a few probes, not on the first lost one.
        if let Some(max) = self.config.max_loss
            && self.latency.samples() >= 5
            && self.latency.loss() > max * margin
        {
            why.push(format!(
                "{:.0} % of probes lost, over max_loss {:.0} %",
                self.latency.loss() * 100.0,
                max * 100.0
            ));
        }
        let verdict = if why.is_empty() {
            Internet::Online
        } else {
            Internet::Degraded {
                reason: why.join(", "),
            }
        };
        self.set(verdict, now);
    }

    fn set(&mut self, internet: Internet, now: Instant) {
        if internet == self.internet {
            return;
        }
        let was_in = self.internet.carries_traffic();
        if internet.carries_traffic() {
            self.out_since = None;
            self.redial_asked = false;
        } else if was_in {
            self.out_since = Some(now);
        }
        self.internet = internet.clone();
        self.events.push_back(TrackEvent::Changed(internet));
    }
}

#[cfg(test)]
mod tests;
