//! The cellular check before a dial: is it a cellular modem (`AT+GCAP` lists `+CGSM`), is the
//! SIM ready (entering its PIN once, never again after a refusal: the SIM locks after three),
//! is the modem registered (waiting, with a deadline, instead of dialling into `NO CARRIER`),
//! and what are the operator, signal and identity. Sans-IO: fed the modem's bytes and the time,
//! it says what to write and what it learnt, and ends in an [`Outcome`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::reply::{self, AccessTech, Registration, Signal, SimState};

/// How the check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// The SIM's PIN, from the secrets file (a secret: never logged).
    pub pin: Option<String>,
    /// A PIN was refused before (by this SIM, since the last `up` by hand): never send it
    /// again.
    pub pin_refused_before: bool,
    /// How long to wait for the network.
    pub registration_timeout: Duration,
    /// How long one command may go unanswered before the modem counts as wedged.
    pub command_timeout: Duration,
    /// How often registration is asked while waiting.
    pub poll_every: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            pin: None,
            pin_refused_before: false,
            registration_timeout: Duration::from_secs(120),
            command_timeout: Duration::from_secs(5),
            poll_every: Duration::from_secs(2),
        }
    }
}

/// What is known of the modem and its network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tech: Option<AccessTech>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iccid: Option<String>,
}

impl CellStatus {
    /// The operator and radio technology, `SimNet LTE`, where known.
    pub fn network(&self) -> Option<String> {
        let op = self.operator.as_ref()?;
        Some(match self.tech {
            Some(t) => format!("{op} {}", t.as_str()),
            None => op.clone(),
        })
    }
}

/// How the check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a cellular modem: dial as always.
    NotCellular,
    /// SIM ready, registered: dial.
    Ready,
    /// A person must act: no PIN configured, the PIN refused (`pin_refused`: never send it
    /// again), the SIM wants its PUK.
    SimLocked { reason: String, pin_refused: bool },
    /// No SIM in the modem.
    NoSim,
    /// Not registered within the deadline; the last state seen.
    NotRegistered(Registration),
    /// A command went unanswered: the modem is wedged.
    NoAnswer(String),
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the modem.
    Write(Vec<u8>),
    /// The status changed.
    Status(CellStatus),
    /// A log line (secrets never in it).
    Log(String),
    /// An `AT+CPIN=` went out (counted by the caller: it must be rare).
    PinSent,
}

/// The commands, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Gcap,
    Cmee,
    Cpin,
    EnterPin,
    /// Asking `AT+CPIN?` after the PIN; `tries` left before giving up on `SIM busy`.
    VerifyPin {
        tries: u8,
    },
    Creg,
    Cgreg,
    Cereg,
    /// Waiting to ask for registration again.
    RegistrationPause,
    Cops,
    Csq,
    Cesq,
    Cgsn,
    Ccid,
}

impl Step {
    fn command(self) -> &'static str {
        match self {
            Step::Gcap => "AT+GCAP",
            Step::Cmee => "AT+CMEE=1",
            Step::Cpin | Step::VerifyPin { .. } => "AT+CPIN?",
            Step::EnterPin => "AT+CPIN=",
            Step::Creg => "AT+CREG?",
            Step::Cgreg => "AT+CGREG?",
            Step::Cereg => "AT+CEREG?",
            Step::RegistrationPause => "",
            Step::Cops => "AT+COPS?",
            Step::Csq => "AT+CSQ",
            Step::Cesq => "AT+CESQ",
            Step::Cgsn => "AT+CGSN",
            Step::Ccid => "AT+CCID",
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Final {
    Ok,
    Error,
    Cme(reply::CmeError),
}

/// The longest line kept; a modem sending more is cut (its text goes to status).
const MAX_LINE: usize = 256;

/// The check in progress.
#[derive(Debug)]
pub struct CellularCheck {
    config: CheckConfig,
    step: Step,
    /// When the current command counts as unanswered (or the pause ends).
    deadline: Option<Instant>,
    /// When waiting for registration ends.
    registration_deadline: Option<Instant>,
    /// Info lines of the current command.
    info: Vec<String>,
    line: Vec<u8>,
    status: CellStatus,
    /// The best registration of this round of CREG/CGREG/CEREG.
    round: Option<Registration>,
    cellular: bool,
    actions: VecDeque<Action>,
    outcome: Option<Outcome>,
}

impl CellularCheck {
    pub fn new(config: CheckConfig, now: Instant) -> CellularCheck {
        let mut check = CellularCheck {
            config,
            step: Step::Gcap,
            deadline: None,
            registration_deadline: None,
            info: Vec::new(),
            line: Vec::new(),
            status: CellStatus::default(),
            round: None,
            cellular: false,
            actions: VecDeque::new(),
            outcome: None,
        };
        check.send(Step::Gcap, now);
        check
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            None
        } else {
            self.deadline
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn status(&self) -> &CellStatus {
        &self.status
    }

    /// Bytes from the modem.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            if self.outcome.is_some() {
                return;
            }
            match b {
                b'\r' | b'\n' if !self.line.is_empty() => {
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.on_line(line.trim(), now);
                }
                b'\r' | b'\n' => {}
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
    }

    /// The clock reached [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        if self.step == Step::RegistrationPause {
            self.send(Step::Creg, now);
            return;
        }
        let what = match self.step {
            Step::EnterPin => "AT+CPIN=<PIN>".to_string(),
            s => s.command().to_string(),
        };
        self.finish(Outcome::NoAnswer(format!(
            "no answer to {what} within {}s",
            self.config.command_timeout.as_secs()
        )));
    }

    fn send(&mut self, step: Step, now: Instant) {
        self.step = step;
        self.info.clear();
        self.deadline = Some(now + self.config.command_timeout);
        let command = match (step, &self.config.pin) {
            (Step::EnterPin, Some(pin)) => {
                self.actions.push_back(Action::PinSent);
                self.actions
                    .push_back(Action::Log("send (AT+CPIN=\"??????\")".into()));
                format!("AT+CPIN=\"{pin}\"")
            }
            _ => {
                self.actions
                    .push_back(Action::Log(format!("send ({})", step.command())));
                step.command().to_string()
            }
        };
        self.actions
            .push_back(Action::Write(format!("{command}\r").into_bytes()));
    }

    fn on_line(&mut self, line: &str, now: Instant) {
        // Our own command echoed back.
        if line.len() >= 2 && line.as_bytes()[..2].eq_ignore_ascii_case(b"AT") {
            return;
        }
        let secret = self.config.pin.as_deref().filter(|p| !p.is_empty());
        let shown = match secret {
            Some(pin) => line.replace(pin, "??????"),
            None => line.to_string(),
        };
        self.actions
            .push_back(Action::Log(format!("got ({shown})")));
        let finished = if line == "OK" {
            Some(Final::Ok)
        } else if line == "ERROR" || line.starts_with("+CMS ERROR") || line == "NO CARRIER" {
            Some(Final::Error)
        } else {
            reply::parse_cme_error(line).map(Final::Cme)
        };
        match finished {
            Some(f) => self.on_final(f, now),
            // The line as sent: the PIN is scrubbed from the log only (an ICCID may hold its
            // digits).
            None if self.step != Step::RegistrationPause => self.info.push(line.to_string()),
            None => {}
        }
    }

    fn on_final(&mut self, result: Final, now: Instant) {
        let info = std::mem::take(&mut self.info);
        match self.step {
            Step::Gcap => {
                self.cellular = result == Final::Ok && info.iter().any(|l| l.contains("+CGSM"));
                if self.cellular {
                    self.send(Step::Cmee, now);
                } else {
                    self.finish(Outcome::NotCellular);
                }
            }
            Step::Cmee => self.send(Step::Cpin, now),
            Step::Cpin => {
                let sim = match &result {
                    Final::Cme(e) if e.sim_absent() => Some(SimState::Absent),
                    Final::Cme(e) if e.code == Some(12) => Some(SimState::Puk),
                    Final::Cme(e) if e.code == Some(11) => Some(SimState::Pin),
                    _ => info.iter().find_map(|l| reply::parse_cpin(l)),
                };
                if let Some(sim) = &sim {
                    self.update(|s| s.sim = Some(sim.clone()));
                }
                match sim {
                    Some(SimState::Pin) => self.pin_wanted(now),
                    Some(SimState::Ready) | None => self.start_registration(now),
                    Some(SimState::Absent) => self.finish(Outcome::NoSim),
                    Some(SimState::Puk) => self.finish(Outcome::SimLocked {
                        reason: "the SIM is locked and wants its PUK (after 3 wrong PINs): \
                                 unlock it by hand"
                            .into(),
                        pin_refused: false,
                    }),
                    Some(SimState::Other(what)) => self.finish(Outcome::SimLocked {
                        reason: format!("the SIM wants {what}"),
                        pin_refused: false,
                    }),
                }
            }
            Step::EnterPin => match result {
                Final::Ok => self.send(Step::VerifyPin { tries: 5 }, now),
                _ => self.pin_refused(),
            },
            Step::VerifyPin { tries } => {
                let sim = info.iter().find_map(|l| reply::parse_cpin(l));
                match (&result, sim) {
                    (_, Some(SimState::Ready)) => {
                        self.update(|s| s.sim = Some(SimState::Ready));
                        self.start_registration(now);
                    }
                    (_, Some(SimState::Pin | SimState::Puk)) => self.pin_refused(),
                    // SIM busy (14) right after the PIN: ask again, a few times.
                    (Final::Cme(e), _) if e.code == Some(14) && tries > 0 => {
                        self.send(Step::VerifyPin { tries: tries - 1 }, now);
                    }
                    _ => self.start_registration(now),
                }
            }
            Step::Creg | Step::Cgreg | Step::Cereg => {
                let name = &self.step.command()[3..self.step.command().len() - 1];
                if let Some(r) = info.iter().find_map(|l| reply::parse_registration(l, name))
                    && self.round.is_none_or(|best| r.rank() > best.rank())
                {
                    self.round = Some(r);
                }
                match self.step {
                    Step::Creg => self.send(Step::Cgreg, now),
                    Step::Cgreg => self.send(Step::Cereg, now),
                    _ => self.end_round(now),
                }
            }
            Step::RegistrationPause => {}
            Step::Cops => {
                if let Some((operator, tech)) = info.iter().find_map(|l| reply::parse_cops(l)) {
                    self.update(|s| {
                        s.operator = operator;
                        s.tech = tech;
                    });
                }
                self.send(Step::Csq, now);
            }
            Step::Csq => {
                if let Some(signal) = info.iter().find_map(|l| reply::parse_csq(l)) {
                    self.update(|s| s.signal = signal);
                }
                self.send(Step::Cesq, now);
            }
            Step::Cesq => {
                // The LTE/UMTS measure, where the modem has one, is better than CSQ's.
                if let Some(Some(signal)) = info.iter().find_map(|l| reply::parse_cesq(l)) {
                    self.update(|s| s.signal = Some(signal));
                }
                self.send(Step::Cgsn, now);
            }
            Step::Cgsn => {
                if let Some(imei) = info.iter().find_map(|l| reply::parse_imei(l)) {
                    self.update(|s| s.imei = Some(imei));
                }
                self.send(Step::Ccid, now);
            }
            Step::Ccid => {
                if let Some(iccid) = info.iter().find_map(|l| reply::parse_iccid(l)) {
                    self.update(|s| s.iccid = Some(iccid));
                }
                self.finish(Outcome::Ready);
            }
        }
    }

    fn pin_wanted(&mut self, now: Instant) {
        if self.config.pin.is_none() {
            self.finish(Outcome::SimLocked {
                reason: "the SIM wants its PIN and the secrets file has none for this line \
                         (a line `sim-pin LINE PIN`)"
                    .into(),
                pin_refused: false,
            });
        } else if self.config.pin_refused_before {
            self.finish(Outcome::SimLocked {
                reason: "the SIM refused the PIN from the secrets file before; it is not sent \
                         again (the SIM locks after 3 wrong PINs): fix it in the secrets file and \
                         `eqlplus-dialer reload`, or unlock the SIM by hand"
                    .into(),
                pin_refused: true,
            });
        } else {
            self.send(Step::EnterPin, now);
        }
    }

    fn pin_refused(&mut self) {
        self.update(|s| s.sim = Some(SimState::Pin));
        self.finish(Outcome::SimLocked {
            reason: "the SIM refused the PIN from the secrets file; it is not sent again (the \
                     SIM locks after 3 wrong PINs): fix it in the secrets file and \
                     `eqlplus-dialer reload`, or unlock the SIM by hand"
                .into(),
            pin_refused: true,
        });
    }

    fn start_registration(&mut self, now: Instant) {
        self.registration_deadline = Some(now + self.config.registration_timeout);
        self.round = None;
        self.send(Step::Creg, now);
    }

    fn end_round(&mut self, now: Instant) {
        let best = self.round.take().unwrap_or(Registration::Unknown);
        if self.status.registration != Some(best) {
            self.update(|s| s.registration = Some(best));
        }
        if best.registered() {
            self.send(Step::Cops, now);
        } else if self.registration_deadline.is_some_and(|d| now >= d) {
            self.finish(Outcome::NotRegistered(best));
        } else {
            self.step = Step::RegistrationPause;
            let pause = now + self.config.poll_every;
            self.deadline = Some(match self.registration_deadline {
                Some(d) => pause.min(d),
                None => pause,
            });
        }
    }

    fn update(&mut self, f: impl FnOnce(&mut CellStatus)) {
        f(&mut self.status);
        self.actions.push_back(Action::Status(self.status.clone()));
    }

    fn finish(&mut self, outcome: Outcome) {
        self.deadline = None;
        self.actions
            .push_back(Action::Log(format!("cellular check: {outcome:?}")));
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted modem: answers each command by its text.
    struct Run {
        check: CellularCheck,
        now: Instant,
        sent: Vec<String>,
        pins_sent: usize,
        statuses: Vec<CellStatus>,
        logs: Vec<String>,
    }

    impl Run {
        fn new(config: CheckConfig) -> Run {
            let now = Instant::now();
            let mut run = Run {
                check: CellularCheck::new(config, now),
                now,
                sent: Vec::new(),
                pins_sent: 0,
                statuses: Vec::new(),
                logs: Vec::new(),
            };
            run.drain();
            run
        }

        fn drain(&mut self) {
            while let Some(a) = self.check.poll_action() {
                match a {
                    Action::Write(b) => self.sent.push(String::from_utf8(b).unwrap()),
                    Action::Status(s) => self.statuses.push(s),
                    Action::Log(l) => self.logs.push(l),
                    Action::PinSent => self.pins_sent += 1,
                }
            }
        }

        /// The last command sent, without its CR.
        fn last(&self) -> &str {
            self.sent.last().map_or("", |s| s.trim_end())
        }

        /// Answers every command with `answer(command, now)` until the check ends or waits.
        fn run(&mut self, mut answer: impl FnMut(&str, Instant) -> Option<String>) {
            for _ in 0..10_000 {
                if self.check.outcome().is_some() {
                    return;
                }
                let before = self.sent.len();
                if let Some(text) = answer(self.last(), self.now) {
                    self.check.handle_input(text.as_bytes(), self.now);
                    self.drain();
                }
                if self.sent.len() == before && self.check.outcome().is_none() {
                    // Nothing new: let time pass to the next deadline.
                    let Some(t) = self.check.poll_timeout() else {
                        return;
                    };
                    self.now = self.now.max(t);
                    self.check.handle_timeout(self.now);
                    self.drain();
                }
            }
            panic!("the check never ended");
        }
    }

    /// A modem: cellular, SIM `sim`, registered after `searching`.
    fn modem(
        sim: &'static str,
        start: Instant,
        searching: Duration,
    ) -> impl FnMut(&str, Instant) -> Option<String> {
        let mut pin_ok = false;
        move |command, now| {
            let registered = now >= start + searching;
            let stat = if registered { 1 } else { 2 };
            Some(match command {
                "AT+GCAP" => "\r\n+GCAP: +CGSM,+DS,+ES\r\n\r\nOK\r\n".into(),
                "AT+CPIN?" if sim == "ready" || pin_ok => "\r\n+CPIN: READY\r\n\r\nOK\r\n".into(),
                "AT+CPIN?" if sim == "absent" => "\r\n+CME ERROR: 10\r\n".into(),
                "AT+CPIN?" if sim == "puk" => "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n".into(),
                "AT+CPIN?" => "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n".into(),
                "AT+CPIN=\"1234\"" => {
                    pin_ok = true;
                    "\r\nOK\r\n".into()
                }
                c if c.starts_with("AT+CPIN=") => "\r\n+CME ERROR: 16\r\n".into(),
                "AT+CREG?" => format!("\r\n+CREG: 0,{stat}\r\n\r\nOK\r\n"),
                "AT+CGREG?" => format!("\r\n+CGREG: 0,{stat}\r\n\r\nOK\r\n"),
                "AT+CEREG?" => "\r\nERROR\r\n".into(),
                "AT+COPS?" if registered => "\r\n+COPS: 0,0,\"SimNet\",7\r\n\r\nOK\r\n".into(),
                "AT+COPS?" => "\r\n+COPS: 0\r\n\r\nOK\r\n".into(),
                "AT+CSQ" => "\r\n+CSQ: 21,99\r\n\r\nOK\r\n".into(),
                "AT+CESQ" => "\r\n+CESQ: 99,99,255,255,20,45\r\n\r\nOK\r\n".into(),
                "AT+CGSN" => "\r\n356938035643809\r\n\r\nOK\r\n".into(),
                "AT+CCID" => "\r\n+CCID: 89441000303020001234\r\n\r\nOK\r\n".into(),
                _ => "\r\nOK\r\n".into(),
            })
        }
    }

    #[test]
    fn an_analog_modem_is_not_checked() {
        let mut r = Run::new(CheckConfig::default());
        r.run(|_, _| Some("\r\n+GCAP: +MS,+ES,+DS\r\n\r\nOK\r\n".into()));
        assert_eq!(r.check.outcome(), Some(&Outcome::NotCellular));
        assert_eq!(r.sent, ["AT+GCAP\r"]);
    }

    #[test]
    fn a_ready_registered_modem_is_described_and_dialled() {
        let mut r = Run::new(CheckConfig::default());
        let start = r.now;
        r.run(modem("ready", start, Duration::ZERO));
        assert_eq!(r.check.outcome(), Some(&Outcome::Ready));
        let s = r.check.status();
        assert_eq!(s.sim, Some(SimState::Ready));
        assert_eq!(s.registration, Some(Registration::Home));
        assert_eq!(s.operator.as_deref(), Some("SimNet"));
        assert_eq!(s.tech, Some(AccessTech::Lte));
        assert_eq!(
            s.signal,
            Some(Signal { dbm: -96, bars: 2 }),
            "CESQ over CSQ"
        );
        assert_eq!(s.imei.as_deref(), Some("356938035643809"));
        assert_eq!(s.iccid.as_deref(), Some("89441000303020001234"));
        assert_eq!(r.pins_sent, 0);
    }

    /// Registration: `searching` for 20 s, then `registered`: the check waits (polling every
    /// 2 s), and ends ready once, after registration.
    #[test]
    fn waits_for_registration_then_ready() {
        let mut r = Run::new(CheckConfig::default());
        let start = r.now;
        r.run(modem("ready", start, Duration::from_secs(20)));
        assert_eq!(r.check.outcome(), Some(&Outcome::Ready));
        assert!(r.now >= start + Duration::from_secs(20));
        assert!(
            r.now < start + Duration::from_secs(23),
            "{:?}",
            r.now - start
        );
        let states: Vec<_> = r.statuses.iter().filter_map(|s| s.registration).collect();
        assert_eq!(states.first(), Some(&Registration::Searching));
        assert_eq!(states.last(), Some(&Registration::Home));
        let polls = r.sent.iter().filter(|s| s.starts_with("AT+CREG?")).count();
        assert!((10..=12).contains(&polls), "{polls}");
    }

    #[test]
    fn never_registered_ends_at_the_deadline() {
        let config = CheckConfig {
            registration_timeout: Duration::from_secs(30),
            ..CheckConfig::default()
        };
        let mut r = Run::new(config);
        let start = r.now;
        r.run(modem("ready", start, Duration::from_secs(3600)));
        assert_eq!(
            r.check.outcome(),
            Some(&Outcome::NotRegistered(Registration::Searching))
        );
        assert!(r.now - start <= Duration::from_secs(31));
    }

    #[test]
    fn the_right_pin_is_sent_once_and_unlocks() {
        let config = CheckConfig {
            pin: Some("1234".into()),
            ..CheckConfig::default()
        };
        let mut r = Run::new(config);
        let start = r.now;
        r.run(modem("pin", start, Duration::ZERO));
        assert_eq!(r.check.outcome(), Some(&Outcome::Ready));
        assert_eq!(r.pins_sent, 1);
        assert!(!r.logs.iter().any(|l| l.contains("1234")), "{:?}", r.logs);
    }

    #[test]
    fn a_wrong_pin_is_sent_once_and_then_never() {
        let config = CheckConfig {
            pin: Some("9999".into()),
            ..CheckConfig::default()
        };
        let mut r = Run::new(config.clone());
        let start = r.now;
        r.run(modem("pin", start, Duration::ZERO));
        let Some(Outcome::SimLocked { pin_refused, .. }) = r.check.outcome() else {
            panic!("{:?}", r.check.outcome());
        };
        assert!(*pin_refused);
        assert_eq!(r.pins_sent, 1);
        assert!(!r.logs.iter().any(|l| l.contains("9999")), "{:?}", r.logs);
        // The next check of this line knows: the PIN is not sent again.
        let mut again = Run::new(CheckConfig {
            pin_refused_before: true,
            ..config
        });
        again.run(modem("pin", start, Duration::ZERO));
        assert!(matches!(
            again.check.outcome(),
            Some(Outcome::SimLocked {
                pin_refused: true,
                ..
            })
        ));
        assert_eq!(again.pins_sent, 0);
    }

    #[test]
    fn no_pin_puk_and_no_sim() {
        let mut r = Run::new(CheckConfig::default());
        let start = r.now;
        r.run(modem("pin", start, Duration::ZERO));
        assert!(matches!(
            r.check.outcome(),
            Some(Outcome::SimLocked { pin_refused: false, reason }) if reason.contains("sim-pin")
        ));
        let mut r = Run::new(CheckConfig::default());
        r.run(modem("puk", start, Duration::ZERO));
        assert!(matches!(
            r.check.outcome(),
            Some(Outcome::SimLocked { reason, .. }) if reason.contains("PUK")
        ));
        let mut r = Run::new(CheckConfig::default());
        r.run(modem("absent", start, Duration::ZERO));
        assert_eq!(r.check.outcome(), Some(&Outcome::NoSim));
    }

    #[test]
    fn a_wedged_modem_is_named() {
        let mut r = Run::new(CheckConfig::default());
        r.run(|c, _| (c == "AT+GCAP").then(|| "\r\n+GCAP: +CGSM\r\n\r\nOK\r\n".to_string()));
        assert_eq!(
            r.check.outcome(),
            Some(&Outcome::NoAnswer(
                "no answer to AT+CMEE=1 within 5s".into()
            ))
        );
    }

    #[test]
    fn any_bytes_never_panic_and_lines_are_bounded() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let mut check = CellularCheck::new(CheckConfig::default(), Instant::now());
            let now = Instant::now();
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
                check.handle_input(&bytes, now);
                while check.poll_action().is_some() {}
            }
            assert!(check.line.len() <= MAX_LINE);
        }
    }

    /// The check against the project's simulated cellular modem (its sans-IO core): PIN,
    /// registration after 6 s, identity; both on one fake clock.
    #[test]
    fn against_the_simulated_modem() {
        use crate::sim::{ModemConfig, ModemCore, ModemOutput, SimCard};
        let start = Instant::now();
        let mut modem = ModemCore::new(ModemConfig {
            sim: SimCard::Pin {
                pin: "1234".into(),
                tries: 3,
            },
            registration: "searching:6s,home".parse().unwrap(),
            ..ModemConfig::cellular()
        });
        modem.power_on(start);
        let mut now = start;
        let mut check = CellularCheck::new(
            CheckConfig {
                pin: Some("1234".into()),
                ..CheckConfig::default()
            },
            now,
        );
        while check.outcome().is_none() {
            while let Some(a) = check.poll_action() {
                if let Action::Write(b) = a {
                    modem.handle_dte(&b, now);
                }
            }
            let mut heard = Vec::new();
            while let Some(o) = modem.poll_output() {
                if let ModemOutput::ToDte(b) = o {
                    heard.extend(b);
                }
            }
            if heard.is_empty() {
                let next = [check.poll_timeout(), modem.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("someone waits");
                now = now.max(next);
                modem.handle_timeout(now);
                check.handle_timeout(now);
            } else {
                check.handle_input(&heard, now);
            }
            assert!(now < start + Duration::from_secs(60), "never ends");
        }
        assert_eq!(check.outcome(), Some(&Outcome::Ready));
        assert!(now >= start + Duration::from_secs(6));
        assert_eq!(modem.cpin_commands(), 1);
        let s = check.status();
        assert_eq!(s.registration, Some(Registration::Home));
        assert_eq!(s.operator.as_deref(), Some("SimNet"));
        assert_eq!(s.imei.as_deref(), Some(crate::sim::cellular::DEFAULT_IMEI));
        assert_eq!(
            s.iccid.as_deref(),
            Some(crate::sim::cellular::DEFAULT_ICCID)
        );
    }
}
