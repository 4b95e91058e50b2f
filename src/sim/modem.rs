//! A Hayes-style modem as a sans-IO state machine: the far end of a pty for tests, the demo,
//! and users who want to try chat scripts without hardware.
//!
//! It is fed bytes from the DTE (the dialer) and the time, and emits bytes for the DTE, bytes
//! for the remote peer (in data mode) and call events. Command mode understands the usual
//! Hayes and 3GPP commands; `ATD` answers according to a configurable list of outcomes, one
//! per dial attempt. In data mode `+++` between guard times returns to command mode.
//!
//! A cellular modem also has a SIM (PIN, tries, PUK), a network registration that changes
//! over time, signal values and identities (see [`super::cellular`]), answering as TS 27.007
//! says. It can misbehave as field modems do: wedge (answer nothing but `AT+CFUN=1,1`),
//! reboot on `AT+CFUN=1,1` (silent for a while, then a fresh power-on), and be powered off and
//! on by its driver (a USB modem unplugged and plugged in again).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::cellular::{
    CmeError, DEFAULT_ICCID, DEFAULT_IMEI, DEFAULT_OPERATOR, PIN_TRIES, PUK_TRIES, RegStat,
    RegTimeline, SIM_PUK, SimCard, SimState,
};

/// What the modem answers to one `ATD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialAnswer {
    /// `CONNECT <speed>` (or a bare `CONNECT`), then data mode.
    Connect(Option<u32>),
    Busy,
    NoCarrier,
    NoDialtone,
    /// `NO ANSWER`.
    NoAnswer,
    /// Nothing at all: the dialer's chat script must time out.
    Silent,
    /// Random bytes (line noise, a wrong baud rate) every few milliseconds, never a result code.
    Garbage,
    /// One endless line without a newline ("RING RING RING …"), never a result code.
    Endless,
}

/// How often a `garbage` or `endless` modem sends its next chunk, and how much.
pub const NOISE_PERIOD: Duration = Duration::from_millis(10);
/// Bytes per chunk of a `garbage` or `endless` modem.
pub const NOISE_CHUNK: usize = 256;

impl FromStr for DialAnswer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "connect" => DialAnswer::Connect(None),
            "busy" => DialAnswer::Busy,
            "no-carrier" | "nocarrier" => DialAnswer::NoCarrier,
            "no-dialtone" | "nodialtone" => DialAnswer::NoDialtone,
            "no-answer" | "noanswer" => DialAnswer::NoAnswer,
            "silent" | "none" => DialAnswer::Silent,
            "garbage" => DialAnswer::Garbage,
            "endless" => DialAnswer::Endless,
            other => match other.strip_prefix("connect:") {
                Some(speed) => DialAnswer::Connect(Some(speed.parse().map_err(|_| {
                    format!("bad speed in '{s}': expected connect:<number>, e.g. connect:57600")
                })?)),
                None => {
                    return Err(format!(
                        "unknown answer '{s}': expected connect[:SPEED], busy, no-carrier, no-dialtone, no-answer, silent, garbage or endless"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for DialAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialAnswer::Connect(Some(s)) => write!(f, "connect:{s}"),
            DialAnswer::Connect(None) => f.write_str("connect"),
            DialAnswer::Busy => f.write_str("busy"),
            DialAnswer::NoCarrier => f.write_str("no-carrier"),
            DialAnswer::NoDialtone => f.write_str("no-dialtone"),
            DialAnswer::NoAnswer => f.write_str("no-answer"),
            DialAnswer::Silent => f.write_str("silent"),
            DialAnswer::Garbage => f.write_str("garbage"),
            DialAnswer::Endless => f.write_str("endless"),
        }
    }
}

/// Parses a comma-separated answer list, e.g. `busy,busy,connect:57600`.
pub fn parse_answers(list: &str) -> Result<Vec<DialAnswer>, String> {
    let answers: Vec<DialAnswer> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if answers.is_empty() {
        return Err("the answer list is empty".into());
    }
    Ok(answers)
}

/// How the simulated modem behaves.
#[derive(Debug, Clone)]
pub struct ModemConfig {
    /// One answer per `ATD`, in order; the last one repeats.
    pub answers: Vec<DialAnswer>,
    /// Time from `ATD` to its result.
    pub dial_delay: Duration,
    /// Escape guard time (S12).
    pub guard: Duration,
    /// Command echo after reset (real modems start with `E1`).
    pub echo: bool,
    pub manufacturer: String,
    pub model: String,
    pub revision: String,
    /// Signal quality reported by `AT+CSQ` (0-31, 99 unknown).
    pub signal: u8,
    /// A cellular modem: `AT+GCAP` lists `+CGSM` (an analog one lists `+MS`, modulations).
    pub cellular: bool,
    /// Data-mode line rate in bit/s, both ways, as a real modem's carrier limits it;
    /// `None` passes data as fast as it comes.
    pub line_rate: Option<u32>,
    /// The SIM card at power-on (`AT+CPIN`, `AT+CCID`).
    pub sim: SimCard,
    /// Network registration over time, counted from the SIM being ready; until then (and
    /// with `AT+CFUN=0`) the state is 0, not searching. `ATD` while not registered is
    /// answered `NO CARRIER` at once.
    pub registration: RegTimeline,
    /// The operator `AT+COPS?` names while registered.
    pub operator: String,
    /// LTE RSRP index of `AT+CESQ` (0-97: about index - 141 dBm; 255 unknown).
    pub rsrp: u8,
    /// LTE RSRQ index of `AT+CESQ` (0-34: about index / 2 - 20 dB; 255 unknown).
    pub rsrq: u8,
    /// `AT+CGSN` (15 digits).
    pub imei: String,
    /// `AT+CCID` / `AT+ICCID` (19-20 digits).
    pub iccid: String,
    /// Wedge once, after this many `ATD`s (0: from power-on): from the moment the modem is
    /// back in command mode after that dial (its result given, its call ended) it answers
    /// nothing (no echo, no result) but `AT+CFUN=1,1`, until that or a power cycle.
    pub wedge_after: Option<usize>,
    /// How long `AT+CFUN=1,1` keeps the modem silent (rebooting) after its `OK`.
    pub reboot_time: Duration,
    /// Send an unsolicited `RDY` when a reboot is over (Quectel modems do).
    pub ready_urc: bool,
}

impl Default for ModemConfig {
    fn default() -> Self {
        ModemConfig {
            answers: vec![DialAnswer::Connect(Some(57_600))],
            dial_delay: Duration::from_millis(100),
            guard: Duration::from_secs(1),
            echo: true,
            manufacturer: "eqlplus".into(),
            model: "SimModem 56K".into(),
            revision: env!("CARGO_PKG_VERSION").into(),
            signal: 21,
            cellular: false,
            line_rate: None,
            sim: SimCard::Ready,
            registration: RegTimeline::default(),
            operator: DEFAULT_OPERATOR.into(),
            rsrp: 45,
            rsrq: 20,
            imei: DEFAULT_IMEI.into(),
            iccid: DEFAULT_ICCID.into(),
            wedge_after: None,
            reboot_time: Duration::from_secs(1),
            ready_urc: false,
        }
    }
}

impl ModemConfig {
    /// An LTE modem ("SimModem LTE", `+GCAP: +CGSM`) with the default SIM (ready),
    /// registration (home at once) and signal: `simulate modem --cellular`.
    pub fn cellular() -> ModemConfig {
        ModemConfig {
            cellular: true,
            model: "SimModem LTE".into(),
            ..ModemConfig::default()
        }
    }
}

/// What the modem does, for its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemOutput {
    /// Bytes for the DTE (result codes, echo, data from the peer is written by the driver).
    ToDte(Vec<u8>),
    /// Data-mode bytes from the DTE for the remote peer.
    ToPeer(Vec<u8>),
    /// A call was connected: attach a peer.
    Connected { speed: Option<u32>, number: String },
    /// The call ended: detach the peer.
    HungUp,
}

/// Result codes, with their numeric (`ATV0`) forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultCode {
    Ok,
    Connect(Option<u32>),
    NoCarrier,
    Error,
    NoDialtone,
    Busy,
    NoAnswer,
    /// `+CME ERROR: <err>` (a plain `ERROR` while `AT+CMEE=0`).
    Cme(CmeError),
}

impl ResultCode {
    fn verbose(self) -> String {
        match self {
            ResultCode::Ok => "OK".into(),
            ResultCode::Connect(Some(s)) => format!("CONNECT {s}"),
            ResultCode::Connect(None) => "CONNECT".into(),
            ResultCode::NoCarrier => "NO CARRIER".into(),
            ResultCode::Error => "ERROR".into(),
            ResultCode::NoDialtone => "NO DIALTONE".into(),
            ResultCode::Busy => "BUSY".into(),
            ResultCode::NoAnswer => "NO ANSWER".into(),
            ResultCode::Cme(e) => format!("+CME ERROR: {}", e.code()),
        }
    }

    fn numeric(self) -> u8 {
        match self {
            ResultCode::Ok => 0,
            ResultCode::Connect(_) => 1,
            ResultCode::NoCarrier => 3,
            ResultCode::Error | ResultCode::Cme(_) => 4,
            ResultCode::NoDialtone => 6,
            ResultCode::Busy => 7,
            ResultCode::NoAnswer => 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Command,
    /// `ATD` issued; the answer comes at the deadline (never, for `Silent`).
    Dialing {
        deadline: Option<Instant>,
        answer: DialAnswer,
        number: String,
    },
    /// Data mode: bytes pass to the peer.
    Online,
    /// Escaped with `+++`: the call stays up, commands are accepted, `ATO` resumes.
    OnlineCommand,
}

/// Escape (`+++`) detection in data mode.
#[derive(Debug, Clone, Default)]
struct Escape {
    last_rx: Option<Instant>,
    pluses: u8,
    /// Three pluses seen after a guard time: escape if nothing follows until then.
    deadline: Option<Instant>,
}

/// Whether the modem runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    On,
    /// Unplugged (its driver's port is gone): nothing happens until [`ModemCore::power_on`].
    Off,
    /// Rebooting after `AT+CFUN=1,1`, deaf and mute until then.
    Booting(Instant),
}

/// Counters and states a test asserts on, as one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemStats {
    /// `ATD`s answered (including those refused with `NO CARRIER` while not registered).
    pub dial_attempts: usize,
    /// `AT+CPIN=…` commands received (the set form, right or wrong, in any state).
    pub cpin_commands: usize,
    /// PIN attempts the SIM has left (0: blocked, PUK needed).
    pub pin_tries_left: u8,
    /// Reboots by `AT+CFUN=1,1`.
    pub resets: usize,
    /// Power-ons after [`ModemCore::power_off`] (port resets, replugs).
    pub power_cycles: usize,
    pub wedged: bool,
    pub sim: SimState,
    /// Running (not off, not rebooting).
    pub powered: bool,
}

/// Which registration a `+CREG`-style command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    /// `+CREG`: circuit switched.
    Cs,
    /// `+CGREG`: GPRS/UMTS packet switched.
    Gprs,
    /// `+CEREG`: EPS (LTE).
    Eps,
}

/// The location a registered `+CREG: 2,…` reports (any fixed values do).
const LAC: &str = "00A1";
const CELL_ID: &str = "0001B2C3";
/// `<AcT>` 7: E-UTRAN.
const ACT_LTE: u8 = 7;

/// The modem's state.
#[derive(Debug)]
pub struct ModemCore {
    config: ModemConfig,
    mode: Mode,
    echo: bool,
    verbose: bool,
    quiet: bool,
    line: Vec<u8>,
    last_command: Vec<u8>,
    attempts: usize,
    speed: Option<u32>,
    escape: Escape,
    registers: BTreeMap<u16, u16>,
    contexts: BTreeMap<u8, String>,
    out: VecDeque<ModemOutput>,
    /// The `garbage` answer's generator, with a fixed seed: the same noise every run.
    noise: fastrand::Rng,
    /// `ATD`s that reached the network: the index into the configured answers.
    network_dials: usize,
    power: Power,
    wedged: bool,
    /// The configured wedge, until it happens (once).
    wedge_pending: Option<usize>,
    sim: SimState,
    /// The SIM's PIN (`None`: none set, or blocked since configured so).
    pin: Option<String>,
    pin_tries: u8,
    /// When the SIM became ready (the registration timeline's zero); set on the first event
    /// after power-on if the modem was made without a clock.
    sim_ready_at: Option<Instant>,
    /// `+CFUN` level: 1 full, 0 or 4 radio off.
    fun: u8,
    /// `+CMEE` mode: 0 plain `ERROR`, 1 numeric, 2 verbose.
    cmee: u8,
    /// `<n>` of `+CREG`, `+CGREG`, `+CEREG`.
    reg_n: [u8; 3],
    signal: u8,
    rsrp: u8,
    rsrq: u8,
    cpin_commands: usize,
    resets: usize,
    power_cycles: usize,
}

/// Longest command line kept; longer ones are discarded (as a modem's buffer overflows).
const MAX_LINE: usize = 256;

impl ModemCore {
    pub fn new(config: ModemConfig) -> ModemCore {
        ModemCore {
            echo: config.echo,
            mode: Mode::Command,
            verbose: true,
            quiet: false,
            line: Vec::new(),
            last_command: Vec::new(),
            attempts: 0,
            speed: None,
            escape: Escape::default(),
            registers: BTreeMap::new(),
            contexts: BTreeMap::new(),
            out: VecDeque::new(),
            noise: fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d),
            network_dials: 0,
            power: Power::On,
            wedged: false,
            wedge_pending: config.wedge_after,
            sim: SimState::Ready,
            pin: match &config.sim {
                SimCard::Pin { pin, .. } => Some(pin.clone()),
                _ => None,
            },
            pin_tries: match &config.sim {
                SimCard::Pin { tries, .. } => *tries,
                SimCard::Puk => 0,
                SimCard::Ready | SimCard::Absent => PIN_TRIES,
            },
            sim_ready_at: None,
            fun: 1,
            cmee: 0,
            reg_n: [0; 3],
            signal: config.signal,
            rsrp: config.rsrp,
            rsrq: config.rsrq,
            cpin_commands: 0,
            resets: 0,
            power_cycles: 0,
            config,
        }
        .with_sim_at_power_on()
    }

    fn with_sim_at_power_on(mut self) -> ModemCore {
        self.sim = self.sim_at_power_on();
        self
    }

    /// A SIM asks for its PIN again after every power-on; a blocked one stays blocked.
    fn sim_at_power_on(&self) -> SimState {
        if self.config.sim == SimCard::Absent {
            SimState::Absent
        } else if self.pin_tries == 0 {
            SimState::PukRequired
        } else if self.pin.is_some() {
            SimState::PinRequired
        } else {
            SimState::Ready
        }
    }

    /// Powers the modem on afresh at `now` (a replugged USB modem, the end of a reboot): any
    /// call is gone, settings are the power-on ones, the SIM wants its PIN again (its tries
    /// counter is on the card: kept), the registration timeline restarts, a wedge is cured.
    pub fn power_on(&mut self, now: Instant) {
        if self.power == Power::Off {
            self.power_cycles += 1;
        }
        self.drop_call_silently();
        self.power = Power::On;
        self.wedged = false;
        self.reset();
        self.cmee = 0;
        self.fun = 1;
        self.reg_n = [0; 3];
        self.sim = self.sim_at_power_on();
        self.sim_ready_at = (self.sim == SimState::Ready).then_some(now);
        self.maybe_auto_wedge();
    }

    /// Powers the modem off (its port is gone): a call in progress ends without a word.
    pub fn power_off(&mut self) {
        self.drop_call_silently();
        self.power = Power::Off;
    }

    /// Wedges the modem now: a call in progress ends without a word; from now on it answers
    /// nothing but `AT+CFUN=1,1` (or a power cycle).
    pub fn wedge(&mut self) {
        self.drop_call_silently();
        self.wedged = true;
        self.wedge_pending = None;
    }

    /// Sets the signal `AT+CSQ` (0-31, 99) and `AT+CESQ` (RSRP, RSRQ indexes) report.
    pub fn set_signal(&mut self, rssi: u8, rsrp: u8, rsrq: u8) {
        self.signal = rssi;
        self.rsrp = rsrp;
        self.rsrq = rsrq;
    }

    fn drop_call_silently(&mut self) {
        if self.in_call() {
            self.out.push_back(ModemOutput::HungUp);
        }
        self.mode = Mode::Command;
        self.line.clear();
        self.escape = Escape::default();
    }

    /// Catches up with the clock: anchors the registration timeline of a modem made without
    /// a clock, and wedges a modem configured to once its dials are done.
    fn settle(&mut self, now: Instant) {
        if self.power == Power::On && self.sim == SimState::Ready && self.sim_ready_at.is_none() {
            self.sim_ready_at = Some(now);
        }
        self.maybe_auto_wedge();
    }

    fn maybe_auto_wedge(&mut self) {
        if self.power == Power::On
            && self.mode == Mode::Command
            && self.wedge_pending.is_some_and(|n| self.attempts >= n)
        {
            self.wedge();
        }
    }

    /// The registration state at `now` (the same for all domains).
    pub fn registration(&self, now: Instant) -> RegStat {
        if self.power != Power::On || self.fun != 1 || self.sim != SimState::Ready {
            return RegStat::NotSearching;
        }
        let elapsed = self
            .sim_ready_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.config.registration.stat_at(elapsed)
    }

    /// The SIM's state now.
    pub fn sim_state(&self) -> SimState {
        self.sim
    }

    /// PIN attempts the SIM has left.
    pub fn pin_tries_left(&self) -> u8 {
        self.pin_tries
    }

    /// `AT+CPIN=…` commands received.
    pub fn cpin_commands(&self) -> usize {
        self.cpin_commands
    }

    /// Reboots by `AT+CFUN=1,1`.
    pub fn resets(&self) -> usize {
        self.resets
    }

    /// Whether the modem is wedged.
    pub fn is_wedged(&self) -> bool {
        self.wedged
    }

    /// Everything a test asserts on, at once.
    pub fn stats(&self) -> ModemStats {
        ModemStats {
            dial_attempts: self.attempts,
            cpin_commands: self.cpin_commands,
            pin_tries_left: self.pin_tries,
            resets: self.resets,
            power_cycles: self.power_cycles,
            wedged: self.wedged,
            sim: self.sim,
            powered: self.power == Power::On,
        }
    }

    /// Whether a call is up and the modem passes data (not escaped, not dialing).
    pub fn is_online(&self) -> bool {
        self.mode == Mode::Online
    }

    /// Whether a call is up (online or escaped to command mode).
    pub fn in_call(&self) -> bool {
        matches!(self.mode, Mode::Online | Mode::OnlineCommand)
    }

    /// The configured data-mode line rate.
    pub fn line_rate(&self) -> Option<u32> {
        self.config.line_rate
    }

    /// How many `ATD`s were answered so far.
    pub fn dial_attempts(&self) -> usize {
        self.attempts
    }

    /// Bytes from the DTE.
    pub fn handle_dte(&mut self, bytes: &[u8], now: Instant) {
        self.settle(now);
        if self.power != Power::On {
            return;
        }
        if self.wedged {
            self.wedged_input(bytes, now);
            return;
        }
        match self.mode {
            Mode::Online => self.data_from_dte(bytes, now),
            Mode::Dialing { .. } => {
                // Any character aborts a dial in progress, as on a real modem.
                if !bytes.is_empty() {
                    self.mode = Mode::Command;
                    self.result(ResultCode::NoCarrier);
                }
            }
            Mode::Command | Mode::OnlineCommand => {
                for &b in bytes {
                    self.command_char(b, now);
                    if self.wedged || self.power != Power::On {
                        break;
                    }
                }
            }
        }
        self.settle(now);
    }

    /// A wedged modem hears only `AT+CFUN=1,1`, as a hung Quectel or Sierra often still does:
    /// no echo, no answer to anything else.
    fn wedged_input(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            match b {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if is_cfun_reset(&line) {
                        self.command_line(&line, now);
                        return;
                    }
                }
                _ => {
                    self.line.push(b);
                    if self.line.len() > MAX_LINE {
                        self.line.clear();
                    }
                }
            }
        }
    }

    /// The DTE went away (DTR dropped, pty closed): hang up, back to command mode.
    pub fn handle_dte_gone(&mut self) {
        self.drop_call_silently();
        self.maybe_auto_wedge();
    }

    /// The remote peer hung up.
    pub fn handle_peer_closed(&mut self) {
        if self.in_call() {
            self.mode = Mode::Command;
            self.out.push_back(ModemOutput::HungUp);
            self.result(ResultCode::NoCarrier);
        }
        self.maybe_auto_wedge();
    }

    /// The clock moved past [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Power::Booting(until) = self.power
            && now >= until
        {
            self.power_on(now);
            if self.config.ready_urc {
                self.send_to_dte(b"\r\nRDY\r\n");
            }
        }
        self.settle(now);
        if self.power != Power::On || self.wedged {
            return;
        }
        if let Mode::Dialing {
            deadline: Some(deadline),
            answer,
            number,
        } = &self.mode
            && now >= *deadline
        {
            let (answer, number) = (*answer, number.clone());
            self.finish_dial(answer, number, now);
        }
        if let Some(deadline) = self.escape.deadline
            && now >= deadline
            && self.mode == Mode::Online
        {
            self.escape = Escape::default();
            self.mode = Mode::OnlineCommand;
            self.result(ResultCode::Ok);
        }
        self.settle(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.power {
            Power::Booting(until) => return Some(until),
            Power::Off => return None,
            Power::On if self.wedged => return None,
            Power::On => {}
        }
        let dial = match &self.mode {
            Mode::Dialing { deadline, .. } => *deadline,
            _ => None,
        };
        [dial, self.escape.deadline].into_iter().flatten().min()
    }

    pub fn poll_output(&mut self) -> Option<ModemOutput> {
        self.out.pop_front()
    }

    fn data_from_dte(&mut self, bytes: &[u8], now: Instant) {
        // An empty read is no data: it neither goes to the peer nor breaks the guard time.
        if bytes.is_empty() {
            return;
        }
        let guard = self.config.guard;
        let quiet_before = self
            .escape
            .last_rx
            .is_none_or(|t| now.saturating_duration_since(t) >= guard);
        let mut quiet_before = quiet_before;
        for &b in bytes {
            if self.escape.deadline.is_some() {
                // Anything after the pluses within the guard time cancels the escape.
                self.escape.deadline = None;
                self.escape.pluses = 0;
            }
            if b == b'+' && (self.escape.pluses > 0 || quiet_before) {
                self.escape.pluses += 1;
                if self.escape.pluses == 3 {
                    self.escape.deadline = Some(now + guard);
                }
            } else {
                self.escape.pluses = 0;
            }
            quiet_before = false;
        }
        self.escape.last_rx = Some(now);
        self.out.push_back(ModemOutput::ToPeer(bytes.to_vec()));
    }

    fn command_char(&mut self, b: u8, now: Instant) {
        if self.echo {
            self.send_to_dte(&[b]);
        }
        match b {
            b'\r' => {
                let line = std::mem::take(&mut self.line);
                self.command_line(&line, now);
            }
            b'\n' => {}
            0x08 | 0x7f => {
                self.line.pop();
            }
            _ => {
                self.line.push(b);
                if self.line.len() > MAX_LINE {
                    self.line.clear();
                }
                // `A/` repeats the last command at once, without CR.
                if self.line.eq_ignore_ascii_case(b"A/") {
                    self.line.clear();
                    let last = self.last_command.clone();
                    self.execute(&last, now);
                }
            }
        }
    }

    fn command_line(&mut self, line: &[u8], now: Instant) {
        // Junk before "AT" (a dead session's PPP bytes, `+++`) is skipped.
        let Some(at) = line.windows(2).position(|w| w.eq_ignore_ascii_case(b"AT")) else {
            return;
        };
        let body = line[at + 2..].to_vec();
        self.last_command = body.clone();
        self.execute(&body, now);
    }

    /// Runs the commands after `AT`; answers with info lines and one final result.
    fn execute(&mut self, body: &[u8], now: Instant) {
        let mut info: Vec<String> = Vec::new();
        let mut i = 0;
        let upper: Vec<u8> = body.to_ascii_uppercase();
        let number = |s: &[u8], i: &mut usize| -> u32 {
            let start = *i;
            while *i < s.len() && s[*i].is_ascii_digit() && *i - start < 5 {
                *i += 1;
            }
            std::str::from_utf8(&s[start..*i])
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0)
        };
        let result = loop {
            let Some(&c) = upper.get(i) else {
                break ResultCode::Ok;
            };
            i += 1;
            match c {
                b' ' => {}
                b'D' => {
                    let dial: String = String::from_utf8_lossy(&body[i..]).trim().to_string();
                    let digits = dial.trim_start_matches(['T', 'P', 't', 'p', 'W', 'w']);
                    if digits.ends_with(';') {
                        break ResultCode::Ok;
                    }
                    if !self.registration(now).registered() {
                        // No network: refused at once, as a modem does a data call.
                        self.attempts += 1;
                        break ResultCode::NoCarrier;
                    }
                    self.start_dial(digits.to_string(), now);
                    self.flush_info(&info);
                    return;
                }
                b'E' => self.echo = number(&upper, &mut i) != 0,
                b'V' => self.verbose = number(&upper, &mut i) != 0,
                b'Q' => self.quiet = number(&upper, &mut i) != 0,
                b'Z' => {
                    number(&upper, &mut i);
                    self.reset();
                }
                b'H' => {
                    number(&upper, &mut i);
                    if self.in_call() {
                        self.mode = Mode::Command;
                        self.out.push_back(ModemOutput::HungUp);
                    }
                }
                b'O' => {
                    number(&upper, &mut i);
                    if self.mode == Mode::OnlineCommand {
                        self.mode = Mode::Online;
                        self.escape = Escape {
                            last_rx: Some(now),
                            ..Escape::default()
                        };
                        self.flush_info(&info);
                        self.result(ResultCode::Connect(self.speed));
                        return;
                    }
                    break ResultCode::NoCarrier;
                }
                b'A' => break ResultCode::NoCarrier,
                b'I' => {
                    let n = number(&upper, &mut i);
                    info.push(match n {
                        0 => self.config.model.clone(),
                        3 => format!("{} {}", self.config.manufacturer, self.config.model),
                        _ => self.config.revision.clone(),
                    });
                }
                b'L' | b'M' | b'X' | b'B' | b'N' | b'W' | b'Y' | b'P' | b'T' => {
                    number(&upper, &mut i);
                }
                b'S' => {
                    let reg = number(&upper, &mut i) as u16;
                    match upper.get(i) {
                        Some(b'=') => {
                            i += 1;
                            let v = number(&upper, &mut i) as u16;
                            self.registers.insert(reg, v);
                        }
                        Some(b'?') => {
                            i += 1;
                            let v = self.registers.get(&reg).copied().unwrap_or(0);
                            info.push(format!("{v:03}"));
                        }
                        _ => break ResultCode::Error,
                    }
                }
                b'&' | b'\\' | b'%' => {
                    let Some(&letter) = upper.get(i) else {
                        break ResultCode::Error;
                    };
                    i += 1;
                    number(&upper, &mut i);
                    if c == b'&' && letter == b'F' {
                        self.reset();
                        self.cmee = 0;
                    }
                }
                b'+' => {
                    let end = body[i..]
                        .iter()
                        .position(|&b| b == b';')
                        .map_or(body.len(), |p| i + p);
                    let command = String::from_utf8_lossy(&body[i..end]).into_owned();
                    i = (end + 1).min(body.len());
                    match self.extended(&command, now) {
                        Ok(Some(line)) => info.push(line),
                        Ok(None) => {}
                        Err(code) => break code,
                    }
                    if self.power != Power::On {
                        // `+CFUN=1,1`: OK, then the reboot; the rest of the line is lost.
                        break ResultCode::Ok;
                    }
                }
                _ => break ResultCode::Error,
            }
        };
        self.flush_info(&info);
        self.result(result);
    }

    /// 3GPP extended commands (`AT+...`): an info line, nothing, or the error to answer.
    fn extended(&mut self, command: &str, now: Instant) -> Result<Option<String>, ResultCode> {
        use ResultCode::{Cme, Error};
        let upper = command.to_ascii_uppercase();
        let (name, rest) = match upper.find(['=', '?']) {
            Some(p) => (upper[..p].trim(), command[p..].trim()),
            None => (upper.trim(), ""),
        };
        let query = rest == "?";
        let test = rest == "=?";
        let cellular = self.config.cellular;
        Ok(match (name, query) {
            ("CPIN", true) => match self.sim.cpin_code() {
                Some(code) => Some(format!("+CPIN: {code}")),
                None => return Err(Cme(CmeError::SimNotInserted)),
            },
            ("CPIN", false) if test => None,
            ("CPIN", false) if rest.starts_with('=') => {
                self.cpin_commands += 1;
                self.enter_pin(&rest[1..], now)?;
                None
            }
            ("CPINR", _) if cellular => {
                if self.sim == SimState::Absent {
                    return Err(Cme(CmeError::SimNotInserted));
                }
                Some(format!(
                    "+CPINR: SIM PIN,{},{PIN_TRIES}\r\n+CPINR: SIM PUK,{PUK_TRIES},{PUK_TRIES}",
                    self.pin_tries
                ))
            }
            ("CSQ", _) => Some(format!("+CSQ: {},99", self.signal)),
            ("CESQ", _) if cellular => {
                Some(format!("+CESQ: 99,99,255,255,{},{}", self.rsrq, self.rsrp))
            }
            ("GCAP", _) if cellular => Some("+GCAP: +CGSM,+DS,+ES".into()),
            ("GCAP", _) => Some("+GCAP: +MS,+ES,+DS".into()),
            ("CGMI", _) | ("GMI", _) => Some(self.config.manufacturer.clone()),
            ("CGMM", _) | ("GMM", _) => Some(self.config.model.clone()),
            ("CGMR", _) | ("GMR", _) => Some(self.config.revision.clone()),
            ("CGSN", _) | ("GSN", _) => Some(self.config.imei.clone()),
            ("CCID", _) | ("ICCID", _) if cellular => {
                if self.sim == SimState::Absent {
                    return Err(Cme(CmeError::SimNotInserted));
                }
                Some(format!("+{name}: {}", self.config.iccid))
            }
            ("CREG", _) => self.registration_command(Domain::Cs, rest, now)?,
            ("CGREG", _) if cellular => self.registration_command(Domain::Gprs, rest, now)?,
            ("CEREG", _) if cellular => self.registration_command(Domain::Eps, rest, now)?,
            ("CGATT", true) if cellular => Some(format!(
                "+CGATT: {}",
                u8::from(self.registration(now).registered())
            )),
            ("COPS", true) if cellular => Some(if self.registration(now).registered() {
                format!("+COPS: 0,0,\"{}\",{ACT_LTE}", self.config.operator)
            } else {
                "+COPS: 0".into()
            }),
            ("COPS", false) if cellular && test => Some(format!(
                "+COPS: ({},\"{op}\",\"{op}\",\"26299\",{ACT_LTE}),,(0-4),(0-2)",
                if self.registration(now).registered() {
                    2
                } else {
                    1
                },
                op = self.config.operator
            )),
            ("COPS", false) if cellular => None,
            ("CMEE", true) => Some(format!("+CMEE: {}", self.cmee)),
            ("CMEE", false) if test => Some("+CMEE: (0-2)".into()),
            ("CMEE", false) => {
                let n = rest
                    .strip_prefix('=')
                    .map_or(Some(0), |a| a.trim().parse().ok());
                self.cmee = n.filter(|n| *n <= 2).ok_or(Error)?;
                None
            }
            ("CFUN", true) => Some(format!("+CFUN: {}", self.fun)),
            ("CFUN", false) if test => Some("+CFUN: (0,1,4),(0-1)".into()),
            ("CFUN", false) => {
                if let Some(args) = rest.strip_prefix('=') {
                    self.set_fun(args, now)?;
                }
                None
            }
            ("CGDCONT", true) => {
                let lines: Vec<String> = self
                    .contexts
                    .iter()
                    .map(|(cid, def)| format!("+CGDCONT: {cid},{def}"))
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\r\n"))
            }
            ("CGDCONT", false) => {
                let args = rest.strip_prefix('=').ok_or(Error)?;
                let (cid, def) = args.split_once(',').ok_or(Error)?;
                let cid: u8 = cid.trim().parse().map_err(|_| Error)?;
                self.contexts.insert(cid, def.to_string());
                None
            }
            _ => return Err(Error),
        })
    }

    /// `AT+CPIN=<pin>` or `AT+CPIN=<puk>,<new pin>` (quotes optional).
    fn enter_pin(&mut self, args: &str, now: Instant) -> Result<(), ResultCode> {
        let args: Vec<&str> = args
            .split(',')
            .map(|a| a.trim().trim_matches('"'))
            .collect();
        let first = args.first().copied().unwrap_or("");
        match self.sim {
            SimState::Absent => Err(ResultCode::Cme(CmeError::SimNotInserted)),
            // Already unlocked: accepted (as the simulator always did; some modems say 3).
            SimState::Ready => Ok(()),
            SimState::PinRequired => {
                if self.pin.as_deref() == Some(first) {
                    self.pin_tries = PIN_TRIES;
                    self.sim_ready(now);
                    Ok(())
                } else {
                    self.pin_tries = self.pin_tries.saturating_sub(1);
                    if self.pin_tries == 0 {
                        self.sim = SimState::PukRequired;
                    }
                    Err(ResultCode::Cme(CmeError::IncorrectPassword))
                }
            }
            SimState::PukRequired => match args.get(1) {
                Some(new) if first == SIM_PUK && is_pin(new) => {
                    self.pin = Some((*new).to_string());
                    self.pin_tries = PIN_TRIES;
                    self.sim_ready(now);
                    Ok(())
                }
                _ => Err(ResultCode::Cme(CmeError::IncorrectPassword)),
            },
        }
    }

    fn sim_ready(&mut self, now: Instant) {
        self.sim = SimState::Ready;
        self.sim_ready_at = Some(now);
    }

    /// `AT+CFUN=<fun>[,<rst>]`: radio on or off, or (`1,1`) a reboot.
    fn set_fun(&mut self, args: &str, now: Instant) -> Result<(), ResultCode> {
        let bad = ResultCode::Cme(CmeError::IncorrectParameters);
        let mut it = args.split(',').map(|a| a.trim().parse::<u8>());
        let fun = it.next().and_then(Result::ok).ok_or(bad)?;
        let reset = match it.next() {
            None => false,
            Some(Ok(r @ (0 | 1))) => r == 1,
            Some(_) => return Err(bad),
        };
        if it.next().is_some() || !matches!(fun, 0 | 1 | 4) {
            return Err(bad);
        }
        if reset {
            self.resets += 1;
            self.drop_call_silently();
            self.power = Power::Booting(now + self.config.reboot_time);
        } else if fun != self.fun {
            self.fun = fun;
            // Radio back on: the search starts again.
            if fun == 1 && self.sim == SimState::Ready {
                self.sim_ready_at = Some(now);
            }
        }
        Ok(())
    }

    /// `+CREG`, `+CGREG`, `+CEREG`: set `<n>`, query, or the test form.
    fn registration_command(
        &mut self,
        domain: Domain,
        rest: &str,
        now: Instant,
    ) -> Result<Option<String>, ResultCode> {
        let (prefix, k) = match domain {
            Domain::Cs => ("+CREG", 0),
            Domain::Gprs => ("+CGREG", 1),
            Domain::Eps => ("+CEREG", 2),
        };
        if rest == "?" {
            let n = self.reg_n[k];
            let stat = self.registration(now);
            let mut line = format!("{prefix}: {n},{}", stat.code());
            if n == 2 && stat.registered() {
                line.push_str(&format!(",\"{LAC}\",\"{CELL_ID}\",{ACT_LTE}"));
            }
            return Ok(Some(line));
        }
        if rest == "=?" {
            return Ok(Some(format!("{prefix}: (0-2)")));
        }
        // Unsolicited reports are not sent; `<n>` only shapes the query's answer.
        let n = match rest.strip_prefix('=') {
            Some(a) => a.trim().parse::<u8>().ok().filter(|n| *n <= 2),
            None if rest.is_empty() => Some(0),
            None => None,
        };
        self.reg_n[k] = n.ok_or(ResultCode::Error)?;
        Ok(None)
    }

    fn reset(&mut self) {
        self.echo = self.config.echo;
        self.verbose = true;
        self.quiet = false;
        self.registers.clear();
    }

    fn start_dial(&mut self, number: String, now: Instant) {
        let index = self
            .network_dials
            .min(self.config.answers.len().saturating_sub(1));
        self.network_dials += 1;
        let answer = self
            .config
            .answers
            .get(index)
            .copied()
            .unwrap_or(DialAnswer::NoCarrier);
        self.attempts += 1;
        let deadline = (answer != DialAnswer::Silent).then(|| now + self.config.dial_delay);
        self.mode = Mode::Dialing {
            deadline,
            answer,
            number,
        };
    }

    fn finish_dial(&mut self, answer: DialAnswer, number: String, now: Instant) {
        self.mode = Mode::Command;
        let code = match answer {
            DialAnswer::Connect(speed) => {
                self.speed = speed;
                self.mode = Mode::Online;
                self.escape = Escape {
                    last_rx: Some(now),
                    ..Escape::default()
                };
                self.result(ResultCode::Connect(speed));
                self.out.push_back(ModemOutput::Connected { speed, number });
                return;
            }
            DialAnswer::Busy => ResultCode::Busy,
            DialAnswer::NoCarrier => ResultCode::NoCarrier,
            DialAnswer::NoDialtone => ResultCode::NoDialtone,
            DialAnswer::NoAnswer => ResultCode::NoAnswer,
            DialAnswer::Silent => return,
            DialAnswer::Garbage | DialAnswer::Endless => {
                let chunk: Vec<u8> = if answer == DialAnswer::Garbage {
                    (0..NOISE_CHUNK).map(|_| self.noise.u8(..)).collect()
                } else {
                    b"RING ".iter().copied().cycle().take(NOISE_CHUNK).collect()
                };
                self.send_to_dte(&chunk);
                // Still "dialing": the next chunk follows, until the DTE sends anything.
                self.mode = Mode::Dialing {
                    deadline: Some(now + NOISE_PERIOD),
                    answer,
                    number,
                };
                return;
            }
        };
        self.result(code);
    }

    fn flush_info(&mut self, info: &[String]) {
        for line in info {
            let text = if self.verbose {
                format!("\r\n{line}\r\n")
            } else {
                format!("{line}\r\n")
            };
            self.send_to_dte(text.as_bytes());
        }
    }

    fn result(&mut self, code: ResultCode) {
        if self.quiet {
            return;
        }
        if let ResultCode::Cme(e) = code {
            let text = match self.cmee {
                0 => return self.result(ResultCode::Error),
                1 => format!("+CME ERROR: {}", e.code()),
                _ => format!("+CME ERROR: {}", e.text()),
            };
            // Not a V.250 code: in numeric mode it is framed as an information line.
            let framed = if self.verbose {
                format!("\r\n{text}\r\n")
            } else {
                format!("{text}\r\n")
            };
            return self.send_to_dte(framed.as_bytes());
        }
        let text = if self.verbose {
            format!("\r\n{}\r\n", code.verbose())
        } else {
            format!("{}\r", code.numeric())
        };
        self.send_to_dte(text.as_bytes());
    }

    fn send_to_dte(&mut self, bytes: &[u8]) {
        if let Some(ModemOutput::ToDte(prev)) = self.out.back_mut() {
            prev.extend_from_slice(bytes);
        } else {
            self.out.push_back(ModemOutput::ToDte(bytes.to_vec()));
        }
    }
}

/// 4 to 8 digits.
fn is_pin(s: &str) -> bool {
    (4..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a command line (junk before `AT` skipped, as in command mode) is `AT+CFUN=1,1`.
fn is_cfun_reset(line: &[u8]) -> bool {
    let Some(at) = line.windows(2).position(|w| w.eq_ignore_ascii_case(b"AT")) else {
        return false;
    };
    let body: Vec<u8> = line[at + 2..]
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(u8::to_ascii_uppercase)
        .collect();
    body == b"+CFUN=1,1"
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sim {
        core: ModemCore,
        now: Instant,
    }

    impl Sim {
        fn new(config: ModemConfig) -> Sim {
            Sim {
                core: ModemCore::new(config),
                now: Instant::now(),
            }
        }

        /// Sends `input`, lets `wait` pass, and returns everything the modem did.
        fn say(&mut self, input: &[u8], wait: Duration) -> (String, Vec<ModemOutput>) {
            self.core.handle_dte(input, self.now);
            self.now += wait;
            self.core.handle_timeout(self.now);
            let mut text = Vec::new();
            let mut events = Vec::new();
            while let Some(o) = self.core.poll_output() {
                match o {
                    ModemOutput::ToDte(b) => text.extend(b),
                    other => events.push(other),
                }
            }
            (String::from_utf8_lossy(&text).into_owned(), events)
        }

        fn text(&mut self, input: &str) -> String {
            self.say(input.as_bytes(), Duration::ZERO).0
        }
    }

    fn quiet_config() -> ModemConfig {
        ModemConfig {
            echo: false,
            ..ModemConfig::default()
        }
    }

    #[test]
    fn basic_commands_and_echo() {
        let mut s = Sim::new(ModemConfig::default());
        assert_eq!(s.text("AT\r"), "AT\r\r\nOK\r\n");
        assert_eq!(s.text("ATE0\r"), "ATE0\r\r\nOK\r\n");
        assert_eq!(s.text("ATZ\r"), "\r\nOK\r\n");
        assert_eq!(
            s.text("ATE0 V1 Q0 &F E0 S0=0 X3 L0 M1\r"),
            "ATE0 V1 Q0 &F E0 S0=0 X3 L0 M1\r\r\nOK\r\n"
        );
        assert_eq!(s.text("at&fe0\r"), "\r\nOK\r\n", "typed with echo off");
        assert_eq!(s.text("ATQ\r"), "\r\nOK\r\n", "a missing digit means 0");
        assert_eq!(s.text("ATK\r"), "\r\nERROR\r\n");
    }

    #[test]
    fn numeric_and_quiet_results() {
        let mut s = Sim::new(quiet_config());
        assert_eq!(s.text("ATV0\r"), "0\r");
        assert_eq!(s.text("ATX\r"), "0\r");
        assert_eq!(s.text("ATK\r"), "4\r");
        assert_eq!(s.text("ATV1Q1\r"), "");
        assert_eq!(s.text("ATQ0\r"), "\r\nOK\r\n");
    }

    #[test]
    fn info_and_cellular_commands() {
        let mut s = Sim::new(quiet_config());
        assert_eq!(s.text("ATI\r"), "\r\nSimModem 56K\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CGMI\r"), "\r\neqlplus\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CGMM\r"), "\r\nSimModem 56K\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CSQ\r"), "\r\n+CSQ: 21,99\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+GCAP\r"), "\r\n+GCAP: +MS,+ES,+DS\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CGDCONT=1,\"IP\",\"internet\"\r"), "\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CGDCONT?\r"),
            "\r\n+CGDCONT: 1,\"IP\",\"internet\"\r\n\r\nOK\r\n"
        );
        assert_eq!(s.text("AT+BOGUS\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("ATS7=60\r"), "\r\nOK\r\n");
        assert_eq!(s.text("ATS7?\r"), "\r\n060\r\n\r\nOK\r\n");
    }

    #[test]
    fn junk_before_at_and_no_at() {
        let mut s = Sim::new(quiet_config());
        assert_eq!(s.text("~\x7d\x23+++ATH0\r"), "\r\nOK\r\n");
        assert_eq!(s.text("hello\r"), "");
        assert_eq!(
            s.text("ATX\x08\r"),
            "\r\nOK\r\n",
            "backspace edits the line"
        );
    }

    #[test]
    fn answers_per_attempt_then_last_repeats() {
        let mut s = Sim::new(ModemConfig {
            answers: parse_answers("busy,no-carrier,connect:33600").unwrap(),
            ..quiet_config()
        });
        let d = Duration::from_millis(100);
        assert_eq!(s.say(b"ATDT5551234\r", d).0, "\r\nBUSY\r\n");
        assert_eq!(s.say(b"ATDT5551234\r", d).0, "\r\nNO CARRIER\r\n");
        let (text, events) = s.say(b"ATDT5551234\r", d);
        assert_eq!(text, "\r\nCONNECT 33600\r\n");
        assert_eq!(
            events,
            vec![ModemOutput::Connected {
                speed: Some(33600),
                number: "5551234".into()
            }]
        );
        assert!(s.core.is_online());
        assert_eq!(s.core.dial_attempts(), 3);
    }

    #[test]
    fn dial_delay_and_abort_by_keypress() {
        let mut s = Sim::new(ModemConfig {
            dial_delay: Duration::from_secs(2),
            ..quiet_config()
        });
        assert_eq!(s.say(b"ATD*99#\r", Duration::from_secs(1)).0, "");
        assert_eq!(s.text("x"), "\r\nNO CARRIER\r\n");
        assert_eq!(s.core.poll_timeout(), None);
    }

    #[test]
    fn silent_and_other_answers() {
        for (answer, text) in [
            ("silent", ""),
            ("no-dialtone", "\r\nNO DIALTONE\r\n"),
            ("no-answer", "\r\nNO ANSWER\r\n"),
            ("connect", "\r\nCONNECT\r\n"),
        ] {
            let mut s = Sim::new(ModemConfig {
                answers: parse_answers(answer).unwrap(),
                ..quiet_config()
            });
            assert_eq!(
                s.say(b"ATD1\r", Duration::from_secs(60)).0,
                text,
                "{answer}"
            );
        }
        assert!(parse_answers("connect:fast").is_err());
        assert!(parse_answers("ringing").is_err());
        assert!(parse_answers("").is_err());
    }

    #[test]
    fn garbage_and_endless_keep_talking_until_a_keypress() {
        for answer in ["garbage", "endless"] {
            let mut s = Sim::new(ModemConfig {
                answers: parse_answers(answer).unwrap(),
                ..quiet_config()
            });
            let d = ModemConfig::default().dial_delay;
            let mut got = Vec::new();
            s.core.handle_dte(b"ATD1\r", s.now);
            s.now += d;
            for _ in 0..10 {
                s.core.handle_timeout(s.now);
                while let Some(o) = s.core.poll_output() {
                    let ModemOutput::ToDte(b) = o else {
                        panic!("{answer}: {o:?}")
                    };
                    got.extend(b);
                }
                s.now += NOISE_PERIOD;
            }
            assert_eq!(got.len(), 10 * NOISE_CHUNK, "{answer}");
            if answer == "endless" {
                assert!(!got.contains(&b'\n') && !got.contains(&b'\r'));
            } else {
                assert!(got.iter().collect::<std::collections::HashSet<_>>().len() > 100);
            }
            // A key press ends it, as any dial.
            assert_eq!(s.text("x"), "\r\nNO CARRIER\r\n");
            assert_eq!(s.core.poll_timeout(), None);
            assert_eq!(answer.parse::<DialAnswer>().unwrap().to_string(), answer);
        }
    }

    #[test]
    fn data_mode_escape_and_resume() {
        let guard = Duration::from_secs(1);
        let mut s = Sim::new(quiet_config());
        s.say(b"ATD1\r", Duration::from_millis(100));
        assert!(s.core.is_online());
        let (text, events) = s.say(b"\x7e\xff\x03", Duration::ZERO);
        assert_eq!(text, "");
        assert_eq!(events, vec![ModemOutput::ToPeer(b"\x7e\xff\x03".to_vec())]);
        // "+++" right after data is not an escape.
        s.say(b"+++", guard * 2);
        assert!(s.core.is_online());
        // After a guard time of silence, "+++" then silence escapes.
        s.now += guard;
        let (text, _) = s.say(b"+++", guard);
        assert_eq!(text, "\r\nOK\r\n");
        assert!(!s.core.is_online() && s.core.in_call());
        assert_eq!(s.text("ATO\r"), "\r\nCONNECT 57600\r\n");
        assert!(s.core.is_online());
        s.now += guard;
        s.say(b"+++", guard);
        let (text, events) = s.say(b"ATH0\r", Duration::ZERO);
        assert_eq!(text, "\r\nOK\r\n");
        assert_eq!(events, vec![ModemOutput::HungUp]);
        assert!(!s.core.in_call());
    }

    #[test]
    fn escape_cancelled_by_data_within_guard() {
        let guard = Duration::from_secs(1);
        let mut s = Sim::new(quiet_config());
        s.say(b"ATD1\r", Duration::from_millis(100));
        s.now += guard;
        s.say(b"+++", guard / 2);
        s.say(b"x", guard * 2);
        assert!(s.core.is_online());
    }

    /// Found by the `modem_commands` fuzz target: an empty read in data mode sent an empty
    /// chunk to the peer and counted as data, so a following `+++` was not an escape.
    #[test]
    fn empty_read_in_data_mode_is_no_data() {
        let guard = Duration::from_secs(1);
        let mut s = Sim::new(quiet_config());
        s.say(b"ATD1\r", Duration::from_millis(100));
        assert!(s.core.is_online());
        s.now += guard;
        let (text, events) = s.say(b"", Duration::ZERO);
        assert_eq!((text.as_str(), events), ("", vec![]));
        let (text, _) = s.say(b"+++", guard);
        assert_eq!(text, "\r\nOK\r\n");
        assert!(!s.core.is_online() && s.core.in_call());
    }

    #[test]
    fn peer_and_dte_loss() {
        let mut s = Sim::new(quiet_config());
        s.say(b"ATD1\r", Duration::from_millis(100));
        s.core.handle_peer_closed();
        let (text, events) = s.say(b"", Duration::ZERO);
        assert_eq!(text, "\r\nNO CARRIER\r\n");
        assert_eq!(events, vec![ModemOutput::HungUp]);
        s.say(b"ATD1\r", Duration::from_millis(100));
        s.core.handle_dte_gone();
        let (_, events) = s.say(b"", Duration::ZERO);
        assert_eq!(events, vec![ModemOutput::HungUp]);
        assert_eq!(s.text("AT\r"), "\r\nOK\r\n");
    }

    #[test]
    fn repeat_last_command() {
        let mut s = Sim::new(quiet_config());
        assert_eq!(s.text("ATI3\r"), "\r\neqlplus SimModem 56K\r\n\r\nOK\r\n");
        assert_eq!(s.text("A/"), "\r\neqlplus SimModem 56K\r\n\r\nOK\r\n");
    }

    /// A cellular modem, echo off, powered on at the test's clock.
    fn cellular(config: ModemConfig) -> Sim {
        let mut s = Sim::new(ModemConfig {
            cellular: true,
            echo: false,
            ..config
        });
        s.core.power_on(s.now);
        s
    }

    impl Sim {
        /// Lets `d` pass and returns what the modem said meanwhile.
        fn wait(&mut self, d: Duration) -> String {
            self.say(b"", d).0
        }
    }

    fn pin_sim() -> ModemConfig {
        ModemConfig {
            sim: "pin:1234".parse().unwrap(),
            ..ModemConfig::default()
        }
    }

    #[test]
    fn an_absent_sim_answers_per_cmee_mode() {
        let mut s = cellular(ModemConfig {
            sim: SimCard::Absent,
            ..ModemConfig::default()
        });
        assert_eq!(
            s.text("AT+CPIN?\r"),
            "\r\nERROR\r\n",
            "CMEE=0 is the default"
        );
        assert_eq!(s.text("AT+CMEE=1\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CMEE?\r"), "\r\n+CMEE: 1\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CME ERROR: 10\r\n");
        assert_eq!(s.text("AT+CCID\r"), "\r\n+CME ERROR: 10\r\n");
        assert_eq!(s.text("AT+CMEE=2\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CME ERROR: SIM not inserted\r\n");
        assert_eq!(
            s.text("AT+CPIN=\"1234\"\r"),
            "\r\n+CME ERROR: SIM not inserted\r\n"
        );
        assert_eq!(s.text("AT+CMEE=3\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("ATV0\r"), "0\r");
        assert_eq!(s.text("AT+CPIN?\r"), "+CME ERROR: SIM not inserted\r\n");
        assert_eq!(s.text("ATV1&F\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN?\r"), "\r\nERROR\r\n", "&F: CMEE back to 0");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,0\r\n\r\nOK\r\n");
        assert_eq!(s.text("ATD*99#\r"), "\r\nNO CARRIER\r\n");
        assert_eq!(s.core.sim_state(), SimState::Absent);
        assert_eq!(s.core.cpin_commands(), 1);
    }

    #[test]
    fn a_wrong_pin_costs_a_try_and_the_third_blocks_the_sim() {
        let mut s = cellular(pin_sim());
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CPIN=?\r"),
            "\r\nOK\r\n",
            "the test form is no attempt"
        );
        assert_eq!(s.text("AT+CMEE=1\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN=\"0000\"\r"), "\r\n+CME ERROR: 16\r\n");
        assert_eq!(s.core.pin_tries_left(), 2);
        assert_eq!(
            s.text("AT+CPINR\r"),
            "\r\n+CPINR: SIM PIN,2,3\r\n+CPINR: SIM PUK,10,10\r\n\r\nOK\r\n"
        );
        // The right one (quotes optional) unlocks it and restores the tries.
        assert_eq!(s.text("AT+CPIN=1234\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
        assert_eq!(s.core.pin_tries_left(), 3);
        assert_eq!(s.core.cpin_commands(), 2);
        // Once READY, another PIN is taken without effect.
        assert_eq!(s.text("AT+CPIN=\"9999\"\r"), "\r\nOK\r\n");
        assert_eq!(s.core.pin_tries_left(), 3);

        let mut s = cellular(pin_sim());
        for left in [2, 1, 0] {
            assert_eq!(s.text("AT+CPIN=\"4321\"\r"), "\r\nERROR\r\n");
            assert_eq!(s.core.pin_tries_left(), left);
        }
        assert_eq!(s.core.sim_state(), SimState::PukRequired);
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
        // Blocked: the right PIN no longer helps, nor does a wrong PUK.
        assert_eq!(s.text("AT+CPIN=\"1234\"\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("AT+CPIN=\"11111111\",\"1234\"\r"), "\r\nERROR\r\n");
        assert_eq!(s.core.pin_tries_left(), 0);
        assert_eq!(s.core.cpin_commands(), 5);
        // A power cycle does not unblock it.
        s.core.power_off();
        s.core.power_on(s.now);
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
        // The PUK and a new PIN do; the new PIN is asked for after the next power-on.
        assert_eq!(s.text("AT+CPIN=\"12345678\",\"2468\"\r"), "\r\nOK\r\n");
        assert_eq!(s.core.sim_state(), SimState::Ready);
        s.core.power_on(s.now);
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN=2468\r"), "\r\nOK\r\n");
        assert_eq!(s.core.stats().cpin_commands, 7);
    }

    #[test]
    fn a_puk_locked_sim_from_power_on() {
        let mut s = cellular(ModemConfig {
            sim: SimCard::Puk,
            ..ModemConfig::default()
        });
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
        assert_eq!(s.core.pin_tries_left(), 0);
        assert_eq!(s.text("AT+CEREG?\r"), "\r\n+CEREG: 0,0\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CCID\r"),
            "\r\n+CCID: 89490200001234567892\r\n\r\nOK\r\n"
        );
    }

    #[test]
    fn registration_follows_its_timeline_from_the_pin() {
        let mut s = cellular(ModemConfig {
            registration: "searching:20s,home".parse().unwrap(),
            ..pin_sim()
        });
        // No PIN yet: not searching, however long it waits.
        s.wait(Duration::from_secs(60));
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,0\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN=\"1234\"\r"), "\r\nOK\r\n");
        s.wait(Duration::from_secs(10));
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CGREG?\r"), "\r\n+CGREG: 0,2\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CEREG?\r"), "\r\n+CEREG: 0,2\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+COPS?\r"), "\r\n+COPS: 0\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CGATT?\r"), "\r\n+CGATT: 0\r\n\r\nOK\r\n");
        // Dialling now is refused at once and uses up no configured answer.
        let (text, events) = s.say(b"ATD*99#\r", Duration::ZERO);
        assert_eq!((text.as_str(), events), ("\r\nNO CARRIER\r\n", vec![]));
        assert_eq!(s.core.dial_attempts(), 1);
        s.wait(Duration::from_millis(9_999));
        assert_eq!(s.text("AT+CEREG?\r"), "\r\n+CEREG: 0,2\r\n\r\nOK\r\n");
        s.wait(Duration::from_millis(1));
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CEREG?\r"), "\r\n+CEREG: 0,1\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+COPS?\r"),
            "\r\n+COPS: 0,0,\"SimNet\",7\r\n\r\nOK\r\n"
        );
        assert_eq!(s.text("AT+CGATT?\r"), "\r\n+CGATT: 1\r\n\r\nOK\r\n");
        // <n> = 2 adds the location.
        assert_eq!(s.text("AT+CEREG=2\r"), "\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CEREG?\r"),
            "\r\n+CEREG: 2,1,\"00A1\",\"0001B2C3\",7\r\n\r\nOK\r\n"
        );
        assert_eq!(s.text("AT+CREG=1\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 1,1\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG=3\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("AT+CREG=?\r"), "\r\n+CREG: (0-2)\r\n\r\nOK\r\n");
        let (text, events) = s.say(b"ATD*99#\r", Duration::from_millis(100));
        assert_eq!(text, "\r\nCONNECT 57600\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(s.core.dial_attempts(), 2);
    }

    #[test]
    fn denied_roaming_and_radio_off() {
        let mut s = cellular(ModemConfig {
            registration: "denied".parse().unwrap(),
            ..ModemConfig::default()
        });
        assert_eq!(s.text("AT+CGREG?\r"), "\r\n+CGREG: 0,3\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+COPS?\r"), "\r\n+COPS: 0\r\n\r\nOK\r\n");
        assert_eq!(s.text("ATD*99#\r"), "\r\nNO CARRIER\r\n");

        let mut s = cellular(ModemConfig {
            registration: "searching:5s,roaming".parse().unwrap(),
            operator: "Faraway".into(),
            ..ModemConfig::default()
        });
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
        s.wait(Duration::from_secs(5));
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,5\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+COPS?\r"),
            "\r\n+COPS: 0,0,\"Faraway\",7\r\n\r\nOK\r\n"
        );
        // Radio off: not registered; on again: the search starts over.
        assert_eq!(s.text("AT+CFUN=4\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CFUN?\r"), "\r\n+CFUN: 4\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,0\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CFUN=1\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
        s.wait(Duration::from_secs(5));
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,5\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CFUN=7\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("AT+CFUN=1,2\r"), "\r\nERROR\r\n");
        assert_eq!(s.core.resets(), 0);
    }

    #[test]
    fn signal_and_identities() {
        let mut s = cellular(ModemConfig {
            signal: 17,
            rsrp: 50,
            rsrq: 18,
            imei: "490154203237518".into(),
            iccid: "8931440301234567890".into(),
            ..ModemConfig::default()
        });
        assert_eq!(s.text("AT+CSQ\r"), "\r\n+CSQ: 17,99\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CESQ\r"),
            "\r\n+CESQ: 99,99,255,255,18,50\r\n\r\nOK\r\n"
        );
        assert_eq!(s.text("AT+CGSN\r"), "\r\n490154203237518\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CCID\r"),
            "\r\n+CCID: 8931440301234567890\r\n\r\nOK\r\n"
        );
        assert_eq!(
            s.text("AT+ICCID\r"),
            "\r\n+ICCID: 8931440301234567890\r\n\r\nOK\r\n"
        );
        assert_eq!(
            s.text("AT+GCAP\r"),
            "\r\n+GCAP: +CGSM,+DS,+ES\r\n\r\nOK\r\n"
        );
        s.core.set_signal(9, 30, 5);
        assert_eq!(s.text("AT+CSQ\r"), "\r\n+CSQ: 9,99\r\n\r\nOK\r\n");
        assert_eq!(
            s.text("AT+CESQ\r"),
            "\r\n+CESQ: 99,99,255,255,5,30\r\n\r\nOK\r\n"
        );
        // An analog modem knows none of the cellular-only commands; the old ones stay.
        let mut s = Sim::new(quiet_config());
        for cmd in [
            "AT+CESQ\r",
            "AT+CCID\r",
            "AT+CEREG?\r",
            "AT+COPS?\r",
            "AT+CPINR\r",
        ] {
            assert_eq!(s.text(cmd), "\r\nERROR\r\n", "{cmd}");
        }
        assert_eq!(s.text("AT+CGSN\r"), "\r\n356938035643809\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    }

    #[test]
    fn wedged_after_the_nth_dial_until_cfun_reset() {
        let reboot = Duration::from_secs(1);
        let mut s = Sim::new(ModemConfig {
            answers: parse_answers("busy,connect").unwrap(),
            wedge_after: Some(1),
            reboot_time: reboot,
            ready_urc: true,
            cellular: true,
            ..ModemConfig::default()
        });
        assert_eq!(s.text("ATE1\r"), "ATE1\r\r\nOK\r\n");
        // The first dial is answered; then nothing is, not even an echo, nor ATZ.
        assert_eq!(
            s.say(b"ATD*99#\r", Duration::from_millis(100)).0,
            "ATD*99#\r\r\nBUSY\r\n"
        );
        assert!(s.core.is_wedged());
        for cmd in [
            "AT\r",
            "ATZ\r",
            "AT+CFUN=1\r",
            "ATD*99#\r",
            "+++",
            "AT+CFUN=1,0\r",
        ] {
            assert_eq!(s.say(cmd.as_bytes(), Duration::from_secs(5)).0, "", "{cmd}");
        }
        assert_eq!(s.core.poll_timeout(), None);
        assert_eq!(s.core.dial_attempts(), 1);
        // AT+CFUN=1,1 still gets through (OK, no echo), then a reboot's silence, then RDY.
        assert_eq!(s.text("at+cfun = 1,1\r"), "\r\nOK\r\n");
        assert_eq!(s.core.resets(), 1);
        assert!(!s.core.stats().powered);
        assert_eq!(s.core.poll_timeout(), Some(s.now + reboot));
        assert_eq!(s.say(b"AT\r", reboot - Duration::from_millis(1)).0, "");
        assert_eq!(s.wait(Duration::from_millis(1)), "\r\nRDY\r\n");
        assert!(!s.core.is_wedged());
        assert_eq!(
            s.text("AT\r"),
            "AT\r\r\nOK\r\n",
            "power-on settings: echo on"
        );
        // It wedged once; the next dials are answered.
        assert_eq!(
            s.say(b"ATD*99#\r", Duration::from_millis(100)).0,
            "ATD*99#\r\r\nCONNECT\r\n"
        );
        assert_eq!(s.core.dial_attempts(), 2);
    }

    #[test]
    fn a_connected_call_wedges_when_it_ends() {
        let mut s = cellular(ModemConfig {
            wedge_after: Some(1),
            ..ModemConfig::default()
        });
        s.say(b"ATD*99#\r", Duration::from_millis(100));
        assert!(s.core.is_online() && !s.core.is_wedged());
        s.core.handle_peer_closed();
        let (text, events) = s.say(b"", Duration::ZERO);
        assert_eq!(
            (text.as_str(), events),
            ("\r\nNO CARRIER\r\n", vec![ModemOutput::HungUp])
        );
        assert!(s.core.is_wedged());
        assert_eq!(s.text("AT\r"), "");
    }

    #[test]
    fn wedged_at_once_and_from_outside() {
        let mut s = cellular(ModemConfig {
            wedge_after: Some(0),
            ..ModemConfig::default()
        });
        assert!(s.core.is_wedged());
        assert_eq!(s.text("AT\r"), "");
        // A power cycle (a port reset) cures it too, and it stays cured.
        s.core.power_off();
        assert_eq!(s.text("AT\r"), "");
        s.core.power_on(s.now);
        assert_eq!(s.text("AT\r"), "\r\nOK\r\n");
        assert_eq!(s.core.stats().power_cycles, 1);
        assert_eq!(s.core.resets(), 0);
        // Wedged from outside mid-call: the call ends without a word.
        s.say(b"ATD*99#\r", Duration::from_millis(100));
        assert!(s.core.is_online());
        s.core.wedge();
        let (text, events) = s.say(b"\r\nATH\r", Duration::ZERO);
        assert_eq!((text.as_str(), events), ("", vec![ModemOutput::HungUp]));
        assert_eq!(
            s.text("\rAT+CFUN=1,1\r"),
            "\r\nOK\r\n",
            "junk before it is fine"
        );
    }

    #[test]
    fn a_reboot_drops_the_call_and_asks_for_the_pin_again() {
        let guard = ModemConfig::default().guard;
        let mut s = cellular(ModemConfig {
            registration: "searching:3s,home".parse().unwrap(),
            ..pin_sim()
        });
        assert_eq!(s.text("AT+CPIN=\"0000\"\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("AT+CPIN=\"1234\"\r"), "\r\nOK\r\n");
        s.wait(Duration::from_secs(3));
        s.say(b"ATD*99#\r", Duration::from_millis(100));
        assert!(s.core.is_online());
        s.now += guard;
        s.say(b"+++", guard);
        let (text, events) = s.say(b"AT+CFUN=1,1;+CSQ\r", Duration::ZERO);
        assert_eq!(
            (text.as_str(), events),
            ("\r\nOK\r\n", vec![ModemOutput::HungUp])
        );
        assert!(!s.core.in_call());
        assert_eq!(
            s.wait(Duration::from_secs(1)),
            "",
            "no RDY unless configured"
        );
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
        assert_eq!(s.core.pin_tries_left(), 3, "a right PIN restored the tries");
        assert_eq!(s.text("AT+CPIN=\"1234\"\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CREG?\r"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
        // A wrong PIN's cost survives a reboot.
        assert_eq!(s.text("AT+CFUN=1,1\r"), "\r\nOK\r\n");
        s.wait(Duration::from_secs(1));
        assert_eq!(s.text("AT+CPIN=\"1111\"\r"), "\r\nERROR\r\n");
        assert_eq!(s.text("AT+CFUN=1,1\r"), "\r\nOK\r\n");
        s.wait(Duration::from_secs(1));
        assert_eq!(s.core.pin_tries_left(), 2);
        assert_eq!(s.core.resets(), 3);
    }

    #[test]
    fn the_default_modem_is_ready_and_registered_at_once() {
        let mut s = Sim::new(ModemConfig {
            cellular: true,
            ..quiet_config()
        });
        assert_eq!(s.text("AT+CPIN?\r"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CEREG?\r"), "\r\n+CEREG: 0,1\r\n\r\nOK\r\n");
        assert_eq!(s.text("AT+CPIN=\"1234\"\r"), "\r\nOK\r\n");
        assert_eq!(s.text("AT+CFUN=1\r"), "\r\nOK\r\n");
        assert_eq!(
            s.say(b"ATD*99#\r", Duration::from_millis(100)).0,
            "\r\nCONNECT 57600\r\n"
        );
        assert_eq!(s.core.stats().cpin_commands, 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..16)) {
            let mut s = Sim::new(ModemConfig { answers: parse_answers("connect,busy").unwrap(), ..ModemConfig::default() });
            for c in &chunks {
                s.say(c, Duration::from_millis(400));
            }
        }

        #[test]
        fn a_cellular_modem_never_panics(words in proptest::collection::vec(0usize..14, 0..40)) {
            // Plausible commands in any order, so that the SIM, registration, wedge and
            // reboot states are all reached.
            const WORDS: [&str; 14] = [
                "AT+CPIN=\"1234\"\r", "AT+CPIN=0\r", "AT+CPIN=\"12345678\",\"1111\"\r",
                "AT+CFUN=1,1\r", "AT+CFUN=0\r", "AT+CFUN=1\r", "ATD*99#\r", "+++",
                "AT+CREG=2;+CEREG?;+COPS?\r", "AT+CMEE=2\r", "ATH\r", "AT+CPIN?\r",
                "AT+CESQ;+CCID\r", "ATZ\r",
            ];
            let mut s = cellular(ModemConfig {
                answers: parse_answers("connect,busy").unwrap(),
                registration: "searching:1s,home:3s,denied:1s,roaming".parse().unwrap(),
                wedge_after: Some(2),
                ..pin_sim()
            });
            for w in &words {
                s.say(WORDS[*w].as_bytes(), Duration::from_millis(700));
                let st = s.core.stats();
                proptest::prop_assert!(st.pin_tries_left <= 3);
                proptest::prop_assert!(!s.core.is_online() || s.core.in_call());
            }
        }
    }
}
