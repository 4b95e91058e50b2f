//! One line's life as a sans-IO state machine:
//!
//! ```text
//! disabled                    down (held by `hangup`)        failed (max_failures)
//!     │ up                        │ up                              │ up
//!     ▼                           ▼                                 ▼
//!  locking ──► init-chat ──► dial-chat ──► ppp ──► up ──► hanging-up ──► holdoff ──► locking …
//!     │ (no port)                 │ (chat failed)   │ (line lost)        ▲
//!     └──────────► holdoff        └─────────────────┴────────────────────┘
//!                                                   up ⇄ no-internet / degraded
//!                                      (upstream tracking; the link stays, out of the balance)
//! ```
//!
//! The driver tells it what happened ([`LineEvent`]) and it answers with the next [`Step`]
//! to carry out. It also keeps what `status` shows: since when, redials, the last error, when
//! the next attempt is due.

use std::time::Instant;

use super::recovery::{Ladder, LadderConfig, Rung, Trouble};
use super::redial::{FailureKind, RedialPolicy};

/// Where a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    Disabled,
    Down,
    Locking,
    InitChat,
    DialChat,
    Ppp,
    Up,
    /// The link is up but upstream tracking finds no Internet through it.
    NoInternet,
    /// The link is up, the Internet answers, but too slowly or with too much loss.
    Degraded,
    HangingUp,
    Holdoff,
    Failed,
    /// The modem is not there (unplugged, not yet enumerated): waiting for it to appear.
    NoDevice,
    /// A cellular modem: checking the SIM and waiting for network registration.
    Registering,
    /// The SIM needs a person (no PIN, a refused PIN, PUK): nothing until `up` by hand.
    SimLocked,
    /// The recovery ladder resets the modem, its USB port, or runs the reset hook.
    Resetting,
}

impl LineState {
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::Disabled => "disabled",
            LineState::Down => "down",
            LineState::Locking => "locking",
            LineState::InitChat => "init-chat",
            LineState::DialChat => "dial-chat",
            LineState::Ppp => "ppp",
            LineState::Up => "up",
            LineState::NoInternet => "no-internet",
            LineState::Degraded => "degraded",
            LineState::HangingUp => "hanging-up",
            LineState::Holdoff => "holdoff",
            LineState::Failed => "failed",
            LineState::NoDevice => "no-device",
            LineState::Registering => "registering",
            LineState::SimLocked => "sim-locked",
            LineState::Resetting => "resetting",
        }
    }

    /// Whether the port may be open in this state (a hangup is needed to leave it).
    pub fn holds_port(self) -> bool {
        matches!(
            self,
            LineState::InitChat | LineState::DialChat | LineState::Registering | LineState::Ppp
        ) || self.link_up()
    }

    /// Whether PPP is up with IP (whatever upstream tracking says).
    pub fn link_up(self) -> bool {
        matches!(
            self,
            LineState::Up | LineState::NoInternet | LineState::Degraded
        )
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Lock and open the port.
    Open,
    /// Run the init chat script.
    InitChat,
    /// Run the dial chat script.
    DialChat,
    /// Run PPP over the connected line (enslaving it once up).
    Ppp,
    /// Hang up and close the port.
    HangUp,
    /// Wait until then (holdoff).
    WaitUntil(Instant),
    /// Wait for the device to appear (no timer: the driver watches for it).
    WaitForDevice,
    /// Check a cellular modem: SIM, PIN, registration (between the init and dial chats).
    Cellular,
    /// Take this step of the recovery ladder, then the holdoff.
    Reset(Rung),
    /// Nothing until an administrative command.
    Idle,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    Opened,
    OpenFailed(String),
    InitDone,
    Connected,
    ChatFailed {
        message: String,
        kind: FailureKind,
    },
    PppUp,
    /// IP went down (IPCP left Opened); the link may negotiate it again.
    NetworkDown,
    /// PPP ended (or never came up): why, and what kind of failure it was.
    PppEnded {
        message: String,
        kind: FailureKind,
    },
    HungUp,
    TimerFired,
    /// Upstream tracking: no Internet through the line (or, `degraded`, a poor one).
    InternetLost {
        degraded: bool,
        reason: String,
    },
    /// Upstream tracking: the Internet is back.
    InternetBack,
    /// The device is not there (at open): wait for it, without counting a failure.
    DeviceAbsent(String),
    /// The device appeared.
    DevicePresent,
    /// The cellular check found the modem ready (or not cellular): dial.
    CellularReady,
    /// The cellular check failed: no SIM, not registered, the modem does not answer.
    CellularFailed {
        message: String,
        kind: FailureKind,
        trouble: Trouble,
    },
    /// The SIM needs a person; `pin_refused`: the PIN it was given is never sent again.
    SimLocked {
        message: String,
        pin_refused: bool,
    },
    /// The recovery step is done (or could not be taken).
    ResetDone,
}

/// The state machine of one line.
#[derive(Debug, Clone)]
pub struct LineMachine {
    state: LineState,
    since: Instant,
    admin_up: bool,
    has_init_chat: bool,
    /// Consecutive failures since the line was last up.
    failures: u32,
    /// Dial attempts after the line's first, since the daemon started (how often it redialed:
    /// a flaky line shows here, as pppd's `persist` logs it).
    redials: u32,
    /// The line has been dialed once (its next attempt is a redial).
    dialed: bool,
    last_kind: FailureKind,
    /// Failures counted since the machine started (each attempt or session that failed).
    failures_total: u64,
    /// IP came up in this call (it may have gone down again before the link ended: the
    /// session reports IP down before the link's end).
    session_up: bool,
    last_error: Option<String>,
    next_attempt: Option<Instant>,
    policy: RedialPolicy,
    /// A cellular check runs between the init and dial chats.
    has_cellular: bool,
    /// How the last failure looked to the recovery ladder.
    trouble: Trouble,
    ladder: Ladder,
    /// The step of the ladder in progress.
    resetting: Option<Rung>,
    /// The last step of the ladder taken, and why (for `status`).
    last_reset: Option<String>,
    /// The hangup in progress ends in `sim-locked`.
    to_sim_locked: bool,
    /// The SIM refused its PIN: never send it again until `up` by hand.
    pin_refused: bool,
    /// The attempt in progress was counted as a redial (undone if the device is absent).
    counted_redial: bool,
}

impl LineMachine {
    /// A line that starts dialing at once if `enabled`, else stays disabled until `up`.
    pub fn new(
        enabled: bool,
        has_init_chat: bool,
        policy: RedialPolicy,
        now: Instant,
    ) -> (LineMachine, Step) {
        let mut m = LineMachine {
            state: LineState::Disabled,
            since: now,
            admin_up: enabled,
            has_init_chat,
            failures: 0,
            redials: 0,
            dialed: false,
            last_kind: FailureKind::Other,
            failures_total: 0,
            session_up: false,
            last_error: None,
            next_attempt: None,
            policy,
            has_cellular: false,
            trouble: Trouble::Failed,
            ladder: Ladder::new(LadderConfig {
                after_failures: 0,
                ..LadderConfig::default()
            }),
            resetting: None,
            last_reset: None,
            to_sim_locked: false,
            pin_refused: false,
            counted_redial: false,
        };
        let step = if enabled { m.attempt(now) } else { Step::Idle };
        (m, step)
    }

    pub fn state(&self) -> LineState {
        self.state
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn admin_up(&self) -> bool {
        self.admin_up
    }

    pub fn redials(&self) -> u32 {
        self.redials
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Runs the cellular check before each dial.
    pub fn set_cellular(&mut self, on: bool) {
        self.has_cellular = on;
    }

    /// Escalates repeated failures up this ladder (the default ladder is off).
    pub fn set_ladder(&mut self, config: LadderConfig) {
        self.ladder = Ladder::new(config);
    }

    /// Resets done by the ladder.
    pub fn resets(&self) -> super::recovery::Resets {
        self.ladder.resets()
    }

    /// The ladder's last step and why, since the line was last up.
    pub fn last_reset(&self) -> Option<&str> {
        self.last_reset.as_deref()
    }

    /// The SIM refused its PIN: the cellular check must not send it again.
    pub fn pin_refused(&self) -> bool {
        self.pin_refused
    }

    /// Failures counted so far, and the kind of the last: whoever feeds events learns from a
    /// change here that one was taken as a failure (late events are ignored).
    pub fn failures_total(&self) -> (u64, FailureKind) {
        (self.failures_total, self.last_kind)
    }

    /// `up LINE`: dial now (also from `failed` or `disabled`), resetting the backoff.
    pub fn admin_up_now(&mut self, now: Instant) -> Step {
        self.admin_up = true;
        match self.state {
            // Dialing a line someone took down is their call, not a redial.
            LineState::Disabled | LineState::Down => {
                self.failures = 0;
                self.dialed = false;
                self.attempt(now)
            }
            LineState::Failed | LineState::Holdoff | LineState::NoDevice => {
                self.failures = 0;
                self.ladder.on_admin_up();
                self.attempt(now)
            }
            // Check the SIM again (unlocked by hand?), but never with a PIN it refused: a new
            // PIN comes with a reload, which starts the line afresh.
            LineState::SimLocked => {
                self.failures = 0;
                self.ladder.on_admin_up();
                self.attempt(now)
            }
            // Already on its way up (or going down, after which it redials).
            _ => Step::Idle,
        }
    }

    /// `hangup LINE`: down now, and kept down until `up`.
    pub fn admin_down_now(&mut self, now: Instant) -> Step {
        self.admin_up = false;
        self.next_attempt = None;
        if self.state.holds_port() || self.state == LineState::Locking {
            self.enter(LineState::HangingUp, now);
            Step::HangUp
        } else if self.state == LineState::HangingUp {
            Step::HangUp
        } else {
            self.enter(LineState::Down, now);
            Step::Idle
        }
    }

    /// Feeds an event; returns the next step.
    pub fn on(&mut self, event: LineEvent, now: Instant) -> Step {
        match (self.state, event) {
            (LineState::Locking, LineEvent::Opened) => {
                if self.has_init_chat {
                    self.enter(LineState::InitChat, now);
                    Step::InitChat
                } else {
                    self.before_dial(now)
                }
            }
            (LineState::Locking, LineEvent::DeviceAbsent(message)) => {
                // Not a failure and not a redial: the line waits for its modem.
                if self.counted_redial {
                    self.redials = self.redials.saturating_sub(1);
                    self.counted_redial = false;
                } else {
                    // The first attempt found nothing: the next one is still the first.
                    self.dialed = false;
                }
                self.last_error = Some(message);
                self.enter(LineState::NoDevice, now);
                Step::WaitForDevice
            }
            (LineState::NoDevice, LineEvent::DevicePresent) => self.attempt(now),
            (LineState::Registering, LineEvent::CellularReady) => {
                self.enter(LineState::DialChat, now);
                Step::DialChat
            }
            (
                LineState::Registering,
                LineEvent::CellularFailed {
                    message,
                    kind,
                    trouble,
                },
            ) => {
                self.fail(message, kind);
                self.trouble = trouble;
                self.enter(LineState::HangingUp, now);
                Step::HangUp
            }
            (
                LineState::Registering,
                LineEvent::SimLocked {
                    message,
                    pin_refused,
                },
            ) => {
                self.fail(message, FailureKind::Other);
                self.pin_refused |= pin_refused;
                self.to_sim_locked = true;
                self.enter(LineState::HangingUp, now);
                Step::HangUp
            }
            (LineState::Resetting, LineEvent::ResetDone) => {
                self.resetting = None;
                self.holdoff(now)
            }
            (LineState::Locking, LineEvent::OpenFailed(message)) => {
                // Nothing was opened: straight to the holdoff.
                self.fail(message, FailureKind::Other);
                self.after_hangup(now)
            }
            (LineState::InitChat, LineEvent::InitDone) => self.before_dial(now),
            (
                LineState::InitChat | LineState::DialChat,
                LineEvent::ChatFailed { message, kind },
            ) => {
                self.fail(message, kind);
                self.enter(LineState::HangingUp, now);
                Step::HangUp
            }
            (LineState::DialChat, LineEvent::Connected) => {
                self.enter(LineState::Ppp, now);
                Step::Ppp
            }
            (LineState::Ppp, LineEvent::PppUp) => {
                self.failures = 0;
                self.ladder.on_up();
                self.last_reset = None;
                self.session_up = true;
                self.enter(LineState::Up, now);
                Step::Ppp
            }
            // IP went down but the link stays: negotiating again, no longer up.
            (s, LineEvent::NetworkDown) if s.link_up() => {
                self.enter(LineState::Ppp, now);
                Step::Ppp
            }
            (s, LineEvent::InternetLost { degraded, reason }) if s.link_up() => {
                // Not the line's fault: no failure counted, no redial; the reason shows.
                self.last_error = Some(reason);
                let state = if degraded {
                    LineState::Degraded
                } else {
                    LineState::NoInternet
                };
                self.enter(state, now);
                Step::Ppp
            }
            (s, LineEvent::InternetBack) if s.link_up() => {
                // The last error stays, as after a redial: it says what happened last.
                self.enter(LineState::Up, now);
                Step::Ppp
            }
            (s, LineEvent::PppEnded { message, kind }) if s == LineState::Ppp || s.link_up() => {
                let was_up = self.was_up();
                self.fail(message, kind);
                if was_up {
                    // A line that was up and dropped is redialed at once, as after one failure.
                    self.failures = 1;
                }
                self.enter(LineState::HangingUp, now);
                Step::HangUp
            }
            (LineState::HangingUp, LineEvent::HungUp) => self.after_hangup(now),
            (LineState::Holdoff, LineEvent::TimerFired) => self.attempt(now),
            // Late or duplicate events (an administrative command raced them): nothing to do
            // but carry on with what the current state needs.
            (state, _) => self.step_for(state),
        }
    }

    /// The step that the current state is waiting on.
    fn step_for(&self, state: LineState) -> Step {
        match state {
            LineState::Locking => Step::Open,
            LineState::InitChat => Step::InitChat,
            LineState::DialChat => Step::DialChat,
            LineState::Ppp | LineState::Up | LineState::NoInternet | LineState::Degraded => {
                Step::Ppp
            }
            LineState::HangingUp => Step::HangUp,
            LineState::Holdoff => self.next_attempt.map_or(Step::Idle, Step::WaitUntil),
            LineState::NoDevice => Step::WaitForDevice,
            LineState::Registering => Step::Cellular,
            LineState::Resetting => self.resetting.map_or(Step::Idle, Step::Reset),
            LineState::Disabled | LineState::Down | LineState::Failed | LineState::SimLocked => {
                Step::Idle
            }
        }
    }

    /// Whether IP came up in the current call: its end is a line lost, redialed at once.
    pub fn was_up(&self) -> bool {
        self.session_up || self.state.link_up()
    }

    fn attempt(&mut self, now: Instant) -> Step {
        self.session_up = false;
        self.counted_redial = self.dialed;
        if self.dialed {
            self.redials = self.redials.saturating_add(1);
        }
        self.dialed = true;
        self.next_attempt = None;
        self.enter(LineState::Locking, now);
        Step::Open
    }

    fn fail(&mut self, message: String, kind: FailureKind) {
        self.failures += 1;
        self.failures_total += 1;
        self.last_kind = kind;
        self.last_error = Some(message);
    }

    /// After the init chat (or the open, without one): the cellular check, or the dial.
    fn before_dial(&mut self, now: Instant) -> Step {
        if self.has_cellular {
            self.enter(LineState::Registering, now);
            Step::Cellular
        } else {
            self.enter(LineState::DialChat, now);
            Step::DialChat
        }
    }

    fn after_hangup(&mut self, now: Instant) -> Step {
        if !self.admin_up {
            self.to_sim_locked = false;
            self.enter(LineState::Down, now);
            return Step::Idle;
        }
        if std::mem::take(&mut self.to_sim_locked) {
            self.enter(LineState::SimLocked, now);
            return Step::Idle;
        }
        let trouble = std::mem::replace(&mut self.trouble, Trouble::Failed);
        // The ladder is for a modem that stops working: BUSY, NO CARRIER, a dropped line or
        // refused credentials are the network's, not the modem's.
        let modem_trouble = trouble != Trouble::Failed || self.last_kind == FailureKind::Other;
        if let Some((rung, why)) = modem_trouble
            .then(|| self.ladder.on_failure(trouble, self.admin_up, now))
            .flatten()
        {
            self.last_reset = Some(format!("{} ({why})", rung.as_str()));
            self.resetting = Some(rung);
            self.enter(LineState::Resetting, now);
            return Step::Reset(rung);
        }
        self.holdoff(now)
    }

    /// The wait before the next attempt (or `failed`, at max_failures).
    fn holdoff(&mut self, now: Instant) -> Step {
        if self.policy.gives_up(self.failures) {
            self.enter(LineState::Failed, now);
            return Step::Idle;
        }
        let wait = self.policy.delay(self.failures.max(1), self.last_kind);
        let at = now + wait;
        self.next_attempt = Some(at);
        self.enter(LineState::Holdoff, now);
        Step::WaitUntil(at)
    }

    fn enter(&mut self, state: LineState, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RedialConfig;

    fn machine(enabled: bool, init: bool, max_failures: u32) -> (LineMachine, Step, Instant) {
        let now = Instant::now();
        let policy = RedialPolicy::new(
            RedialConfig {
                holdoff: Duration::from_secs(2),
                backoff_factor: 2.0,
                max_delay: Duration::from_secs(60),
                max_failures,
            },
            7,
        );
        let (m, s) = LineMachine::new(enabled, init, policy, now);
        (m, s, now)
    }

    fn chat_failed(kind: FailureKind) -> LineEvent {
        LineEvent::ChatFailed {
            message: "modem said BUSY".into(),
            kind,
        }
    }

    #[test]
    fn dials_up_and_redials_after_a_drop() {
        let (mut m, s, now) = machine(true, true, 0);
        assert_eq!((s, m.state()), (Step::Open, LineState::Locking));
        assert_eq!(m.on(LineEvent::Opened, now), Step::InitChat);
        assert_eq!(m.on(LineEvent::InitDone, now), Step::DialChat);
        assert_eq!(m.on(LineEvent::Connected, now), Step::Ppp);
        assert_eq!(m.state(), LineState::Ppp);
        assert_eq!(m.on(LineEvent::PppUp, now), Step::Ppp);
        assert_eq!((m.state(), m.redials()), (LineState::Up, 0));
        let later = now + Duration::from_secs(100);
        let s = m.on(
            LineEvent::PppEnded {
                message: "link dead: no reply to 3 LCP Echo-Requests".into(),
                kind: FailureKind::Transient,
            },
            later,
        );
        assert_eq!((s, m.state()), (Step::HangUp, LineState::HangingUp));
        assert_eq!(m.since(), later);
        let Step::WaitUntil(at) = m.on(LineEvent::HungUp, later) else {
            panic!()
        };
        assert!(
            at - later <= Duration::from_millis(2400),
            "quick redial after a drop"
        );
        assert_eq!(m.state(), LineState::Holdoff);
        assert_eq!(
            m.last_error(),
            Some("link dead: no reply to 3 LCP Echo-Requests")
        );
        assert_eq!(m.on(LineEvent::TimerFired, at), Step::Open);
        assert_eq!(m.redials(), 1);
    }

    #[test]
    fn ip_down_is_not_up_until_ipcp_opens_again() {
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        m.on(LineEvent::PppUp, now);
        assert_eq!(m.on(LineEvent::NetworkDown, now), Step::Ppp);
        assert_eq!(m.state(), LineState::Ppp);
        assert_eq!(m.on(LineEvent::PppUp, now), Step::Ppp);
        assert_eq!(m.state(), LineState::Up);
        assert_eq!(m.redials(), 0, "no redial happened");
    }

    #[test]
    fn busy_twice_then_connect() {
        let (mut m, _, now) = machine(true, false, 0);
        for attempt in 1..=2 {
            assert_eq!(m.on(LineEvent::Opened, now), Step::DialChat);
            assert_eq!(m.on(chat_failed(FailureKind::Transient), now), Step::HangUp);
            let Step::WaitUntil(at) = m.on(LineEvent::HungUp, now) else {
                panic!()
            };
            assert!(at - now < Duration::from_secs(4), "attempt {attempt}");
            assert_eq!(m.on(LineEvent::TimerFired, at), Step::Open);
        }
        assert_eq!(m.redials(), 2);
        assert_eq!(m.on(LineEvent::Opened, now), Step::DialChat);
        assert_eq!(m.on(LineEvent::Connected, now), Step::Ppp);
        assert_eq!(m.on(LineEvent::PppUp, now), Step::Ppp);
        assert_eq!(m.redials(), 2, "the count stays once the line is up");
    }

    #[test]
    fn auth_failures_back_off_hard_and_growing() {
        let (mut m, _, now) = machine(true, false, 0);
        let mut waits = Vec::new();
        for _ in 0..3 {
            m.on(LineEvent::Opened, now);
            m.on(LineEvent::Connected, now);
            m.on(
                LineEvent::PppEnded {
                    message: "peer rejected our PAP credentials: Login incorrect".into(),
                    kind: FailureKind::Auth,
                },
                now,
            );
            let Step::WaitUntil(at) = m.on(LineEvent::HungUp, now) else {
                panic!()
            };
            waits.push(at - now);
            m.on(LineEvent::TimerFired, at);
        }
        // 30 s, 32 s, 60 s (capped), each ±20 %: the first two may swap under jitter.
        assert!(
            waits[..2].iter().all(|w| *w >= Duration::from_secs(24)),
            "{waits:?}"
        );
        assert!(waits[2] > waits[0] && waits[2] > waits[1], "{waits:?}");
        assert!(m.last_error().unwrap().contains("Login incorrect"));
    }

    #[test]
    fn hangup_holds_down_until_up() {
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        m.on(LineEvent::PppUp, now);
        assert_eq!(m.admin_down_now(now), Step::HangUp);
        // The session's end arrives after the command: still going down.
        assert_eq!(
            m.on(
                LineEvent::PppEnded {
                    message: "User request".into(),
                    kind: FailureKind::Transient
                },
                now
            ),
            Step::HangUp
        );
        assert_eq!(m.on(LineEvent::HungUp, now), Step::Idle);
        assert_eq!(m.state(), LineState::Down);
        assert!(!m.admin_up());
        // A stray timer does not redial.
        assert_eq!(m.on(LineEvent::TimerFired, now), Step::Idle);
        assert_eq!(m.admin_up_now(now), Step::Open);
        assert_eq!(m.state(), LineState::Locking);
        assert_eq!(m.redials(), 0, "an `up` after a `hangup` is not a redial");
    }

    #[test]
    fn hangup_during_holdoff_and_disabled_lines() {
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::OpenFailed("cannot open /dev/ttyS1".into()), now);
        assert_eq!(m.state(), LineState::Holdoff);
        assert!(m.next_attempt().is_some());
        assert_eq!(m.admin_down_now(now), Step::Idle);
        assert_eq!((m.state(), m.next_attempt()), (LineState::Down, None));
        let (mut d, s, now) = machine(false, false, 0);
        assert_eq!((s, d.state()), (Step::Idle, LineState::Disabled));
        assert_eq!(d.admin_up_now(now), Step::Open);
    }

    #[test]
    fn gives_up_after_max_failures_until_up() {
        let (mut m, _, now) = machine(true, false, 2);
        m.on(LineEvent::Opened, now);
        m.on(chat_failed(FailureKind::Other), now);
        let Step::WaitUntil(at) = m.on(LineEvent::HungUp, now) else {
            panic!()
        };
        m.on(LineEvent::TimerFired, at);
        m.on(LineEvent::Opened, now);
        m.on(chat_failed(FailureKind::Other), now);
        assert_eq!(m.on(LineEvent::HungUp, now), Step::Idle);
        assert_eq!(m.state(), LineState::Failed);
        assert_eq!(m.admin_up_now(now), Step::Open);
    }

    #[test]
    fn states_have_names() {
        assert_eq!(LineState::HangingUp.as_str(), "hanging-up");
        assert!(LineState::Up.holds_port() && !LineState::Holdoff.holds_port());
    }

    #[test]
    fn a_line_without_the_internet_stays_connected_and_comes_back() {
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        m.on(LineEvent::PppUp, now);
        let lost = LineEvent::InternetLost {
            degraded: false,
            reason: "no Internet: ping 1.1.1.1: no answer".into(),
        };
        assert_eq!(m.on(lost, now), Step::Ppp);
        assert_eq!(m.state(), LineState::NoInternet);
        assert!(m.state().holds_port() && m.state().link_up());
        assert_eq!(m.last_error(), Some("no Internet: ping 1.1.1.1: no answer"));
        let degraded = LineEvent::InternetLost {
            degraded: true,
            reason: "degraded: slow".into(),
        };
        assert_eq!(m.on(degraded, now), Step::Ppp);
        assert_eq!(m.state(), LineState::Degraded);
        assert_eq!(m.on(LineEvent::InternetBack, now), Step::Ppp);
        assert_eq!(m.state(), LineState::Up);
        assert_eq!(m.redials(), 0, "no redial");
        // Verdicts while not up are late news.
        m.on(
            LineEvent::PppEnded {
                message: "link dead".into(),
                kind: FailureKind::Transient,
            },
            now,
        );
        assert_eq!(m.state(), LineState::HangingUp);
        m.on(LineEvent::InternetBack, now);
        assert_eq!(m.state(), LineState::HangingUp);
        // A line that loses its link while without the Internet redials like an up one.
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        m.on(LineEvent::PppUp, now);
        m.on(
            LineEvent::InternetLost {
                degraded: false,
                reason: "x".into(),
            },
            now,
        );
        assert_eq!(m.admin_down_now(now), Step::HangUp);
    }

    #[test]
    fn a_call_whose_ip_went_down_before_its_end_counts_as_a_lost_line() {
        let (mut m, _, now) = machine(true, false, 0);
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        assert!(!m.was_up());
        m.on(LineEvent::PppUp, now);
        // The session says IP is down, then that the link ended.
        m.on(LineEvent::NetworkDown, now);
        assert_eq!(m.state(), LineState::Ppp);
        assert!(m.was_up());
        m.on(
            LineEvent::PppEnded {
                message: "peer terminated".into(),
                kind: FailureKind::Transient,
            },
            now,
        );
        m.on(LineEvent::HungUp, now);
        // Redialed as after one failure (the holdoff), not with grown backoff.
        let Some(next) = m.next_attempt() else {
            panic!("a redial is due")
        };
        assert!(next <= now + Duration::from_secs_f64(2.0 * 1.2 + 0.01));
        m.on(LineEvent::TimerFired, next);
        assert!(!m.was_up(), "a new call starts afresh");
    }

    #[test]
    fn an_absent_device_is_waited_for_without_attempts_or_backoff() {
        let (mut m, s, now) = machine(true, false, 0);
        assert_eq!(s, Step::Open);
        let absent = || LineEvent::DeviceAbsent("no device: /dev/ttyUSB2".into());
        assert_eq!(m.on(absent(), now), Step::WaitForDevice);
        assert_eq!(m.state(), LineState::NoDevice);
        assert_eq!(m.redials(), 0);
        // However long it stays away: no timer, no failure, no redial counted.
        assert_eq!(m.on(LineEvent::TimerFired, now), Step::WaitForDevice);
        assert_eq!(m.on(LineEvent::DevicePresent, now), Step::Open);
        assert_eq!(m.redials(), 0, "the first real attempt is not a redial");
        m.on(LineEvent::Opened, now);
        m.on(LineEvent::Connected, now);
        m.on(LineEvent::PppUp, now);
        // Removed mid-call: a line lost, redialled; the next open finds no device.
        m.on(
            LineEvent::PppEnded {
                message: "device removed".into(),
                kind: FailureKind::Transient,
            },
            now,
        );
        let Step::WaitUntil(at) = m.on(LineEvent::HungUp, now) else {
            panic!("holdoff");
        };
        assert_eq!(m.on(LineEvent::TimerFired, at), Step::Open);
        assert_eq!(m.redials(), 1);
        assert_eq!(m.on(absent(), at), Step::WaitForDevice);
        assert_eq!(
            m.redials(),
            0,
            "an attempt that found no device is not a redial"
        );
        // Taken down meanwhile: down; brought up: it looks again.
        assert_eq!(m.admin_down_now(at), Step::Idle);
        assert_eq!(m.state(), LineState::Down);
        assert_eq!(m.admin_up_now(at), Step::Open);
    }

    /// A SIM that refuses its PIN: exactly one `AT+CPIN=` across 10 minutes of redials (the
    /// check is told the PIN was refused), the line `sim-locked` until `up` by hand.
    #[test]
    fn a_refused_pin_locks_the_line_until_up() {
        use crate::cellular::{CellularCheck, CheckConfig};
        let (mut m, _, start) = machine(true, false, 0);
        m.set_cellular(true);
        let mut now = start;
        let mut pins_sent = 0;
        let mut checks = 0;
        let mut step = Step::Open;
        while now < start + Duration::from_secs(600) {
            step = match step {
                Step::Open => m.on(LineEvent::Opened, now),
                Step::Cellular => {
                    checks += 1;
                    let mut check = CellularCheck::new(
                        CheckConfig {
                            pin: Some("0000".into()),
                            pin_refused_before: m.pin_refused(),
                            ..CheckConfig::default()
                        },
                        now,
                    );
                    // The modem: cellular, SIM PIN, every PIN wrong.
                    let answer = |cmd: &str| match cmd {
                        "AT+GCAP" => "+GCAP: +CGSM\r\nOK\r\n",
                        "AT+CPIN?" => "+CPIN: SIM PIN\r\nOK\r\n",
                        c if c.starts_with("AT+CPIN=") => "+CME ERROR: 16\r\n",
                        _ => "OK\r\n",
                    };
                    while check.outcome().is_none() {
                        let mut sent = None;
                        while let Some(a) = check.poll_action() {
                            match a {
                                crate::cellular::Action::Write(b) => {
                                    sent = Some(String::from_utf8(b).unwrap())
                                }
                                crate::cellular::Action::PinSent => pins_sent += 1,
                                _ => {}
                            }
                        }
                        if let Some(cmd) = sent {
                            check.handle_input(answer(cmd.trim_end()).as_bytes(), now);
                        }
                    }
                    let (message, pin_refused) = match check.outcome() {
                        Some(crate::cellular::Outcome::SimLocked {
                            reason,
                            pin_refused,
                        }) => (reason.clone(), *pin_refused),
                        other => panic!("{other:?}"),
                    };
                    m.on(
                        LineEvent::SimLocked {
                            message,
                            pin_refused,
                        },
                        now,
                    )
                }
                Step::HangUp => m.on(LineEvent::HungUp, now),
                Step::WaitUntil(at) => {
                    now = at;
                    m.on(LineEvent::TimerFired, now)
                }
                Step::Idle => {
                    // Nothing happens by itself: time passes.
                    now += Duration::from_secs(60);
                    Step::Idle
                }
                other => panic!("unexpected {other:?}"),
            };
        }
        assert_eq!(pins_sent, 1, "one AT+CPIN= in 10 minutes");
        assert_eq!(checks, 1);
        assert_eq!(m.state(), LineState::SimLocked);
        assert!(m.last_error().unwrap().contains("refused the PIN"));
        // `up` by hand checks the SIM again, never with the refused PIN (a reload with a new
        // one starts the line afresh).
        assert_eq!(m.admin_up_now(now), Step::Open);
        assert!(m.pin_refused());
    }

    #[test]
    fn the_ladder_resets_a_wedged_modem_then_holds_off() {
        let (mut m, _, now) = machine(true, false, 0);
        m.set_cellular(true);
        m.set_ladder(LadderConfig::default());
        m.on(LineEvent::Opened, now);
        let wedged = LineEvent::CellularFailed {
            message: "the modem does not answer: no answer to AT+CMEE=1 within 5s".into(),
            kind: FailureKind::Other,
            trouble: Trouble::Wedged,
        };
        assert_eq!(m.on(wedged, now), Step::HangUp);
        assert_eq!(m.on(LineEvent::HungUp, now), Step::Reset(Rung::ModemReset));
        assert_eq!(m.state(), LineState::Resetting);
        assert_eq!(
            m.last_reset(),
            Some("modem reset (the modem does not answer)")
        );
        assert_eq!(m.resets().modem, 1);
        let Step::WaitUntil(_) = m.on(LineEvent::ResetDone, now) else {
            panic!("the holdoff after the reset");
        };
        assert_eq!(m.state(), LineState::Holdoff);
        // BUSY is the network's: never a reset.
        let (mut m, _, now) = machine(true, false, 0);
        m.set_ladder(LadderConfig::default());
        for _ in 0..5 {
            m.on(LineEvent::Opened, now);
            m.on(chat_failed(FailureKind::Transient), now);
            let Step::WaitUntil(at) = m.on(LineEvent::HungUp, now) else {
                panic!("holdoff, not a reset");
            };
            m.on(LineEvent::TimerFired, at);
        }
        assert_eq!(m.resets().modem, 0);
    }
}
