//! The chat(8) automaton as a sans-IO state machine.
//!
//! Fed received bytes ([`ChatEngine::handle_input`]) and the time ([`ChatEngine::handle_timeout`]),
//! it hands back [`Action`]s (bytes to write, a BREAK, text to show) and finally an
//! [`Outcome`]. It never sleeps or touches a descriptor: `\d` and `\p` become deadlines that
//! [`ChatEngine::poll_timeout`] reports.
//!
//! Matching follows chat.c's get_string: every expect starts with an empty match buffer and
//! consumes input one character at a time (parity bit stripped), checking REPORT strings,
//! then the expected string, then the ABORT strings, after each character. Input that
//! arrives after the final match is not consumed: it is returned as
//! [`Success::leftover`] (the first PPP frames, typically).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::script::{
    DEFAULT_TIMEOUT, ExpectSpec, MAX_EXPECT_LEN, Script, SendPiece, SendSpec, StepKind, visible,
};

/// How long chat(8) waits for each further character of a REPORT line at the end.
const REPORT_TAIL_WAIT: Duration = Duration::from_secs(1);
/// Longest REPORT/CONNECT line kept.
const MAX_REPORT_LEN: usize = 256;
/// Received bytes held while no expect consumes them (during a send, a `\d`, after the
/// end), at most; beyond, the oldest are dropped. A modem that talks without end (line
/// noise, an endless line) cannot grow the engine.
pub const MAX_PENDING_INPUT: usize = 4096;
/// Lines of received text logged per run at most: a modem sending noise or an endless
/// line must not fill the log (one line says the rest was not logged).
pub const MAX_TEXT_LOG_LINES: usize = 200;
/// What a quiet (`\q`) or secret (`\U`) string is logged as, like chat(8).
pub const REDACTED: &str = "??????";

/// How to run a script: substituted values and chat(8)'s command-line settings.
#[derive(Clone)]
pub struct ChatOptions {
    /// `\T` (chat -T).
    pub phone: Option<String>,
    /// `\U` (chat -U); treated as a secret.
    pub phone2: Option<String>,
    /// Per-expect timeout until the script says TIMEOUT (chat -t).
    pub timeout: Duration,
    /// Start with ECHO ON (chat -e).
    pub echo: bool,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            phone: None,
            phone2: None,
            timeout: DEFAULT_TIMEOUT,
            echo: false,
        }
    }
}

impl std::fmt::Debug for ChatOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatOptions")
            .field("phone", &self.phone)
            .field("phone2", &self.phone2.as_ref().map(|_| REDACTED))
            .field("timeout", &self.timeout)
            .field("echo", &self.echo)
            .finish()
    }
}

/// Something the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the port.
    Write(Vec<u8>),
    /// Send a BREAK.
    Break,
    /// Show this to the user (SAY).
    Say(String),
    /// Received bytes to echo to the user (ECHO ON).
    Echo(Vec<u8>),
    /// A `chat -v` style log line; secrets already replaced by `??????`.
    Log(String),
    /// A command sent to the modem (`ATDT5551234`), as the log shows it (secrets replaced);
    /// for showing progress.
    Sent(String),
    /// A whole line the modem sent (`OK`, `CONNECT 57600`, its echo of our command), trimmed,
    /// secrets replaced; for showing progress. At most as many as are logged.
    Heard(String),
}

/// The end of a script run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success(Success),
    Failure(Failure),
}

/// A script that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Success {
    /// The modem's connect line, e.g. `CONNECT 57600/V42`, if one was seen.
    pub connect: Option<String>,
    /// The connect speed parsed from it (`None` for a bare `CONNECT`).
    pub speed: Option<u32>,
    /// Lines caught by REPORT strings, in order.
    pub reports: Vec<String>,
    /// Bytes received after the last match that belong to whatever follows (PPP).
    pub leftover: Vec<u8>,
}

/// Why a script failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("timed out waiting for '{expected}'")]
    Timeout { expected: String },
    #[error("modem said {string}")]
    Aborted {
        /// Position in the ABORT list (chat(8) exits with 4 + index).
        index: usize,
        string: String,
    },
    #[error("carrier lost (HANGUP)")]
    Hangup,
    #[error("I/O error: {0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
}

impl Outcome {
    /// chat(8)'s exit status for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success(_) => 0,
            Outcome::Failure(f) => f.exit_code(),
        }
    }
}

impl Failure {
    /// chat(8)'s exit status: 1 bad script, 2 I/O or signal, 3 timeout, 4+ the ABORT index.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Invalid(_) => 1,
            Failure::Io(_) | Failure::Hangup => 2,
            Failure::Timeout { .. } => 3,
            Failure::Aborted { index, .. } => 4 + *index as i32,
        }
    }
}

/// The expect string being waited for.
#[derive(Debug)]
struct Expecting {
    pattern: Vec<u8>,
    deadline: Instant,
}

/// A line being gathered after a REPORT or CONNECT match, up to a control character.
#[derive(Debug)]
struct Gathering {
    text: Vec<u8>,
    from_report: bool,
}

/// What one received character did.
enum Matched {
    Nothing,
    Expected,
    Abort(usize),
}

/// Runs one chat script.
#[derive(Debug)]
pub struct ChatEngine {
    script: Script,
    options: ChatOptions,
    /// Index of the next step to run.
    pc: usize,
    timeout: Duration,
    echo: bool,
    hangup: bool,
    aborts: Vec<Vec<u8>>,
    /// REPORT strings; chat(8) retires each after its first match.
    reports: Vec<Vec<u8>>,
    /// Received, not yet consumed input.
    input: VecDeque<u8>,
    /// The current expect's match buffer (7-bit characters).
    matched: Vec<u8>,
    /// Received text of the current line, for the verbose log.
    log_line: Vec<u8>,
    /// How much of `log_line` was already heard (at a CR), so it is not heard again.
    heard_len: usize,
    /// Lines of received text logged so far (at most [`MAX_TEXT_LOG_LINES`]).
    text_lines: usize,
    /// Pieces of the send in progress.
    sending: VecDeque<SendPiece>,
    sleep_until: Option<Instant>,
    /// The expect step in progress and the index of its next alternate.
    current: Option<(ExpectSpec, usize)>,
    /// The string being waited for.
    expecting: Option<Expecting>,
    /// A sub-send is going out; afterwards expect this alternate's string.
    after_send: Option<usize>,
    gathering: Option<Gathering>,
    /// Deadline for the tail of a REPORT/CONNECT line once the script has ended.
    tail_deadline: Option<Instant>,
    result: Success,
    actions: VecDeque<Action>,
    outcome: Option<Outcome>,
    /// Secret values to scrub from log lines of received text.
    secrets: Vec<Vec<u8>>,
}

impl ChatEngine {
    /// Starts a run of `script`. A script that needs `\T` or `\U` without the value fails at
    /// once with [`Failure::Invalid`].
    pub fn new(script: Script, options: ChatOptions, now: Instant) -> ChatEngine {
        let secrets = options
            .phone2
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut engine = ChatEngine {
            timeout: options.timeout,
            echo: options.echo,
            script,
            options,
            pc: 0,
            hangup: true,
            aborts: Vec::new(),
            reports: Vec::new(),
            input: VecDeque::new(),
            matched: Vec::new(),
            log_line: Vec::new(),
            heard_len: 0,
            text_lines: 0,
            sending: VecDeque::new(),
            sleep_until: None,
            current: None,
            expecting: None,
            after_send: None,
            gathering: None,
            tail_deadline: None,
            result: Success::default(),
            actions: VecDeque::new(),
            outcome: None,
            secrets,
        };
        if engine.script.uses_phone() && engine.options.phone.is_none() {
            engine.fail(Failure::Invalid(
                "the script sends \\T but no phone number was given (-T)".into(),
            ));
        } else if engine.script.uses_phone2() && engine.options.phone2.is_none() {
            engine.fail(Failure::Invalid(
                "the script sends \\U but no second value was given (-U)".into(),
            ));
        } else {
            engine.advance(now);
        }
        engine
    }

    /// Bytes received from the modem.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.outcome.is_some() {
            // Keep what arrives late: it belongs to the next layer.
            if let Some(Outcome::Success(s)) = &mut self.outcome {
                let room = MAX_PENDING_INPUT.saturating_sub(s.leftover.len());
                s.leftover
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            return;
        }
        self.input.extend(bytes);
        if self.input.len() > MAX_PENDING_INPUT {
            let excess = self.input.len() - MAX_PENDING_INPUT;
            self.input.drain(..excess);
        }
        if let Some(deadline) = &mut self.tail_deadline {
            *deadline = now + REPORT_TAIL_WAIT;
        }
        self.advance(now);
    }

    /// The clock moved; call when [`poll_timeout`](Self::poll_timeout)'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(e) = &self.expecting
            && now >= e.deadline
        {
            self.expect_timed_out(now);
        }
        if let Some(deadline) = self.tail_deadline
            && now >= deadline
        {
            self.finish_gathering();
            self.succeed();
            return;
        }
        self.advance(now);
    }

    /// The carrier dropped. With HANGUP ON (the default) the script fails.
    pub fn handle_hangup(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        if self.hangup {
            self.fail(Failure::Hangup);
        } else {
            self.log("carrier lost (ignored: HANGUP OFF)".into());
        }
    }

    /// The port failed or was closed; the script ends with [`Failure::Io`].
    pub fn handle_io_error(&mut self, error: &str) {
        if self.outcome.is_none() {
            self.fail(Failure::Io(error.to_string()));
        }
    }

    /// When the engine next needs the clock.
    /// The script's TIMEOUT now: what an expect may take, and (as chat's alarm) a write.
    pub fn current_timeout(&self) -> Duration {
        self.timeout
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        [
            self.sleep_until,
            self.expecting.as_ref().map(|e| e.deadline),
            self.tail_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The result, once the script has ended and all its actions were taken.
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.actions.is_empty() {
            self.outcome.as_ref()
        } else {
            None
        }
    }

    /// Takes the result (see [`outcome`](Self::outcome)).
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        if self.actions.is_empty() {
            self.outcome.take()
        } else {
            None
        }
    }

    /// Whether carrier loss ends the script (HANGUP ON).
    pub fn hangup_enabled(&self) -> bool {
        self.hangup
    }

    /// Runs steps until the engine has to wait for input or time.
    fn advance(&mut self, now: Instant) {
        while self.outcome.is_none() {
            if let Some(until) = self.sleep_until {
                if now < until {
                    return;
                }
                self.sleep_until = None;
            }
            if !self.sending.is_empty() {
                if !self.send_pieces(now) {
                    return;
                }
                continue;
            }
            if let Some(index) = self.after_send.take() {
                let next = self
                    .current
                    .as_ref()
                    .and_then(|(spec, _)| spec.alternates.get(index))
                    .and_then(|(_, e)| e.clone());
                match next {
                    Some(pattern) => self.start_expect(pattern, now),
                    // `a-b` with nothing after the sub-send: chat(8) carries on.
                    None => self.expect_done(),
                }
                continue;
            }
            if self.expecting.is_some() {
                if !self.consume_input() {
                    return;
                }
                continue;
            }
            if self.tail_deadline.is_some() {
                self.gather_tail();
                return;
            }
            self.run_step(now);
        }
    }

    /// Emits send pieces until one makes the engine wait; false if it must wait.
    fn send_pieces(&mut self, now: Instant) -> bool {
        while let Some(piece) = self.sending.pop_front() {
            match piece {
                SendPiece::Bytes(b) => self.push_write(&b),
                SendPiece::Phone => {
                    let b = self.options.phone.clone().unwrap_or_default();
                    self.push_write(b.as_bytes())
                }
                SendPiece::Phone2 => {
                    let b = self.options.phone2.clone().unwrap_or_default();
                    self.push_write(b.as_bytes())
                }
                SendPiece::Break => self.actions.push_back(Action::Break),
                SendPiece::Delay => {
                    self.sleep_until = Some(now + Duration::from_secs(1));
                    return false;
                }
                SendPiece::Pause => {
                    self.sleep_until = Some(now + Duration::from_millis(10));
                    return false;
                }
            }
        }
        true
    }

    fn push_write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // One write(2) per send string where the string has no pauses.
        if let Some(Action::Write(prev)) = self.actions.back_mut() {
            prev.extend_from_slice(bytes);
        } else {
            self.actions.push_back(Action::Write(bytes.to_vec()));
        }
    }

    /// Runs the step at `pc`.
    fn run_step(&mut self, now: Instant) {
        let Some(step) = self.script.steps.get(self.pc) else {
            self.script_done(now);
            return;
        };
        match step.kind.clone() {
            StepKind::Expect(spec) => {
                let first = spec.first.clone();
                self.current = Some((spec, 0));
                self.start_expect(first, now);
                return;
            }
            StepKind::Send(spec) => self.start_send(&spec),
            StepKind::Abort(s) => {
                self.log(format!("abort on ({})", visible(&s)));
                self.aborts.push(s);
            }
            StepKind::ClrAbort(s) => {
                self.log(format!("clear abort on ({})", visible(&s)));
                self.aborts.retain(|a| *a != s);
            }
            StepKind::Report(s) => {
                self.log(format!("report ({})", visible(&s)));
                self.reports.push(s);
            }
            StepKind::ClrReport(s) => {
                self.log(format!("clear report ({})", visible(&s)));
                self.reports.retain(|r| *r != s);
            }
            StepKind::Timeout(t) => {
                self.log(format!("timeout set to {} seconds", t.as_secs()));
                self.timeout = t;
            }
            StepKind::Say(text) => self.actions.push_back(Action::Say(text)),
            StepKind::Echo(on) => self.echo = on,
            StepKind::Hangup(on) => self.hangup = on,
        }
        self.pc += 1;
    }

    fn start_send(&mut self, spec: &SendSpec) {
        let shown = if spec.is_secret() {
            REDACTED.to_string()
        } else {
            spec.pieces
                .iter()
                .map(|p| match p {
                    SendPiece::Phone => {
                        visible(self.options.phone.as_deref().unwrap_or("").as_bytes())
                    }
                    other => other.to_string(),
                })
                .collect()
        };
        self.log(format!("send ({shown})"));
        // What the modem is being told, without the trailing CR (`^M`) and escapes.
        let command = self.scrub(shown.replace("^M", " "));
        let command = command.trim();
        if !command.is_empty() {
            self.actions.push_back(Action::Sent(command.to_string()));
        }
        self.sending.extend(spec.pieces.iter().cloned());
    }

    fn start_expect(&mut self, pattern: Vec<u8>, now: Instant) {
        self.log(format!("expect ({})", visible(&pattern)));
        self.matched.clear();
        if pattern.is_empty() {
            self.log("got it".into());
            self.expect_done();
            return;
        }
        self.expecting = Some(Expecting {
            pattern,
            deadline: now + self.timeout,
        });
    }

    /// The expect step matched: on to the next step.
    fn expect_done(&mut self) {
        self.expecting = None;
        self.current = None;
        self.pc += 1;
    }

    fn expect_timed_out(&mut self, now: Instant) {
        let Some(expecting) = self.expecting.take() else {
            return;
        };
        self.flush_log_line();
        self.log("alarm".into());
        let alternate = self.current.as_mut().and_then(|(spec, next)| {
            let alt = spec.alternates.get(*next).map(|(send, _)| send.clone());
            if alt.is_some() {
                *next += 1;
            }
            alt.map(|send| (send, *next - 1))
        });
        match alternate {
            Some((send, index)) => {
                self.log("-- failed, trying the sub-expect".into());
                self.start_send(&send);
                self.after_send = Some(index);
                self.advance(now);
            }
            None => self.fail(Failure::Timeout {
                expected: visible(&expecting.pattern),
            }),
        }
    }

    /// Feeds pending input to the current expect; true when it matched or failed.
    fn consume_input(&mut self) -> bool {
        while let Some(byte) = self.input.pop_front() {
            match self.feed(byte) {
                Matched::Nothing => {}
                Matched::Expected => {
                    self.flush_log_line();
                    self.log("-- got it".into());
                    self.expect_done();
                    return true;
                }
                Matched::Abort(index) => {
                    self.flush_log_line();
                    let string = visible(&self.aborts[index]);
                    self.log(format!("-- failed ({string})"));
                    self.fail(Failure::Aborted { index, string });
                    return true;
                }
            }
        }
        false
    }

    /// One received character, in chat.c's order: echo, log, REPORT, expect, ABORT.
    fn feed(&mut self, byte: u8) -> Matched {
        let c = byte & 0x7f;
        if self.echo {
            if let Some(Action::Echo(prev)) = self.actions.back_mut() {
                prev.push(byte);
            } else {
                self.actions.push_back(Action::Echo(vec![byte]));
            }
        }
        match c {
            b'\n' => self.flush_log_line(),
            // A modem echoes a command with CR only; the line is logged at the LF that comes
            // with the answer, but heard now (`dialing: ATDT5551234` while the call is made).
            b'\r' => self.hear_partial_line(),
            _ => {
                self.log_line.push(c);
                if self.log_line.len() >= 80 {
                    self.flush_log_line();
                }
            }
        }
        self.matched.push(c);
        self.gather_or_watch_reports(c);
        if let Some(e) = &self.expecting
            && self.matched.ends_with(&e.pattern)
        {
            if self.gathering.is_none() && e.pattern.starts_with(b"CONNECT") {
                // Keep the rest of the connect line (the speed) even without a REPORT.
                self.gathering = Some(Gathering {
                    text: e.pattern.clone(),
                    from_report: false,
                });
            }
            return Matched::Expected;
        }
        if let Some(index) = self.aborts.iter().position(|a| self.matched.ends_with(a)) {
            return Matched::Abort(index);
        }
        if self.matched.len() >= 2 * MAX_EXPECT_LEN {
            self.matched.drain(..MAX_EXPECT_LEN);
        }
        Matched::Nothing
    }

    fn gather_or_watch_reports(&mut self, c: u8) {
        if let Some(g) = &mut self.gathering {
            if c.is_ascii_control() {
                self.finish_gathering();
            } else if g.text.len() < MAX_REPORT_LEN {
                g.text.push(c);
            } else {
                // A line without end: take what we have rather than wait for it.
                self.finish_gathering();
            }
            return;
        }
        if let Some(index) = self.reports.iter().position(|r| self.matched.ends_with(r)) {
            let text = self.reports.remove(index);
            self.gathering = Some(Gathering {
                text,
                from_report: true,
            });
        }
    }

    fn finish_gathering(&mut self) {
        let Some(g) = self.gathering.take() else {
            return;
        };
        let line = String::from_utf8_lossy(&g.text).into_owned();
        if g.text.starts_with(b"CONNECT") {
            self.result.speed = parse_connect_speed(&line);
            self.result.connect = Some(line.clone());
        }
        if g.from_report {
            self.log(format!("report: {line}"));
            self.result.reports.push(line);
        }
    }

    /// After the last step: wait for the end of a REPORT/CONNECT line, as chat(8) does.
    fn script_done(&mut self, now: Instant) {
        if self.gathering.is_some() {
            self.tail_deadline = Some(now + REPORT_TAIL_WAIT);
            self.gather_tail();
        } else {
            self.succeed();
        }
    }

    fn gather_tail(&mut self) {
        while self.gathering.is_some() {
            let Some(byte) = self.input.pop_front() else {
                return;
            };
            let c = byte & 0x7f;
            self.gather_or_watch_reports(c);
            // The modem ends the line with CR LF: the LF is not PPP's either.
            if c == b'\r' && self.input.front() == Some(&b'\n') {
                self.input.pop_front();
            }
        }
        self.succeed();
    }

    fn succeed(&mut self) {
        self.tail_deadline = None;
        self.flush_log_line();
        let mut result = std::mem::take(&mut self.result);
        result.leftover = self.input.drain(..).collect();
        self.outcome = Some(Outcome::Success(result));
    }

    fn fail(&mut self, failure: Failure) {
        self.flush_log_line();
        self.log(format!("Failed ({failure})"));
        self.expecting = None;
        self.sending.clear();
        self.tail_deadline = None;
        self.outcome = Some(Outcome::Failure(failure));
    }

    fn hear_partial_line(&mut self) {
        if self.log_line.len() > self.heard_len && self.text_lines < MAX_TEXT_LOG_LINES {
            self.heard_len = self.log_line.len();
            let shown = self.scrub(visible(&self.log_line));
            let heard = shown.trim();
            if !heard.is_empty() {
                self.actions.push_back(Action::Heard(heard.to_string()));
            }
        }
    }

    fn flush_log_line(&mut self) {
        if !self.log_line.is_empty() {
            let line = std::mem::take(&mut self.log_line);
            let heard_already = std::mem::take(&mut self.heard_len) == line.len();
            self.text_lines += 1;
            if self.text_lines <= MAX_TEXT_LOG_LINES {
                let shown = self.scrub(visible(&line));
                let heard = shown.trim();
                if !heard.is_empty() && !heard_already {
                    self.actions.push_back(Action::Heard(heard.to_string()));
                }
                self.actions.push_back(Action::Log(shown));
            } else if self.text_lines == MAX_TEXT_LOG_LINES + 1 {
                self.log(format!(
                    "(more than {MAX_TEXT_LOG_LINES} lines received: the rest is not logged)"
                ));
            }
        }
    }

    /// Queues a log line with every secret value scrubbed out.
    fn log(&mut self, line: String) {
        let line = self.scrub(line);
        self.actions.push_back(Action::Log(line));
    }

    /// `line` with every secret value replaced by `??????`.
    fn scrub(&self, mut line: String) -> String {
        for secret in &self.secrets {
            let secret = String::from_utf8_lossy(secret);
            if line.contains(secret.as_ref()) {
                line = line.replace(secret.as_ref(), REDACTED);
            }
        }
        line
    }
}

/// The speed in a connect line: `CONNECT 115200`, `CONNECT 57600/V42`, `CONNECT 33600/ARQ`;
/// `None` for a bare `CONNECT` or a line without a number.
pub fn parse_connect_speed(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("CONNECT")?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok().filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock around one engine.
    struct Run {
        engine: ChatEngine,
        now: Instant,
        writes: Vec<Vec<u8>>,
        others: Vec<Action>,
    }

    impl Run {
        fn new(script: &str, options: ChatOptions) -> Run {
            let now = Instant::now();
            let script = Script::parse(script, "t").unwrap();
            let mut run = Run {
                engine: ChatEngine::new(script, options, now),
                now,
                writes: Vec::new(),
                others: Vec::new(),
            };
            run.drain();
            run
        }

        fn plain(script: &str) -> Run {
            Run::new(script, ChatOptions::default())
        }

        fn drain(&mut self) {
            while let Some(a) = self.engine.poll_action() {
                match a {
                    Action::Write(b) => self.writes.push(b),
                    other => self.others.push(other),
                }
            }
        }

        fn input(&mut self, bytes: &[u8]) {
            self.engine.handle_input(bytes, self.now);
            self.drain();
        }

        fn wait(&mut self, d: Duration) {
            self.now += d;
            self.engine.handle_timeout(self.now);
            self.drain();
        }

        fn outcome(&self) -> Option<&Outcome> {
            self.engine.outcome()
        }

        fn success(&self) -> &Success {
            match self.outcome() {
                Some(Outcome::Success(s)) => s,
                other => panic!("expected success, got {other:?}"),
            }
        }

        fn failure(&self) -> &Failure {
            match self.outcome() {
                Some(Outcome::Failure(f)) => f,
                other => panic!("expected failure, got {other:?}"),
            }
        }

        fn logs(&self) -> Vec<String> {
            self.others
                .iter()
                .filter_map(|a| match a {
                    Action::Log(l) => Some(l.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    fn dial_options() -> ChatOptions {
        ChatOptions {
            phone: Some("5551234".into()),
            ..ChatOptions::default()
        }
    }

    const HAYES: &str = "ABORT BUSY ABORT 'NO CARRIER' '' ATZ OK ATDT\\T CONNECT ''";

    /// Hardening: a modem that never stops talking while nothing is expected (here during
    /// a send's `\d` delays) cannot grow the pending input without bound.
    #[test]
    fn pending_input_is_bounded() {
        let mut r = Run::plain("'' '\\d\\d\\dATZ' OK");
        for _ in 0..1000 {
            r.input(&[b'x'; 1000]);
            assert!(r.engine.input.len() <= MAX_PENDING_INPUT);
        }
        for _ in 0..4 {
            r.wait(Duration::from_secs(1));
        }
        r.input(b"OK\r\n");
        assert!(r.success().leftover.len() <= MAX_PENDING_INPUT);
    }

    /// The modem's whole lines come out as `Heard`, in order, trimmed, secrets replaced,
    /// for the progress view of `up`.
    #[test]
    fn heard_lines_for_progress() {
        let mut r = Run::new(HAYES, dial_options());
        r.input(b"ATZ\r\r\nOK\r\n");
        assert!(r.others.contains(&Action::Sent("ATDT5551234".into())));
        r.input(b"ATDT5551234\r");
        assert_eq!(
            r.others.last(),
            Some(&Action::Heard("ATDT5551234".into())),
            "a command's echo is heard at its CR"
        );
        r.input(b"\r\nCONNECT 57600\r\n");
        let heard: Vec<String> = r
            .others
            .iter()
            .filter_map(|a| match a {
                Action::Heard(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        // The script ends at CONNECT: the whole connect line is the outcome's.
        assert_eq!(heard, ["ATZ", "OK", "ATDT5551234", "CONNECT"]);
        assert_eq!(r.success().connect.as_deref(), Some("CONNECT 57600"));

        let mut r = Run::new(
            "'' ATZ OK 'ATDT\\U' CONNECT",
            ChatOptions {
                phone2: Some("s3cret".into()),
                ..ChatOptions::default()
            },
        );
        r.input(b"OK\r\nATDTs3cret\r\n");
        assert!(
            r.others
                .iter()
                .any(|a| *a == Action::Heard(format!("ATDT{REDACTED}")))
        );
        assert!(!format!("{:?}", r.others).contains("s3cret"));
    }

    /// Hardening: a modem sending an endless line does not fill the log.
    #[test]
    fn received_text_logging_is_bounded() {
        let mut r = Run::plain("'' ATZ CONNECT ''");
        for _ in 0..1000 {
            r.input(&[b'R'; 100]);
        }
        let logs = r.logs();
        assert!(logs.len() <= MAX_TEXT_LOG_LINES + 5, "{}", logs.len());
        assert!(logs.iter().any(|l| l.contains("not logged")));
    }

    /// Hardening: an endless CONNECT line (no CR/LF ever) used to push the tail deadline
    /// forward with every byte, so chat never ended; now the line is taken at 256 characters.
    #[test]
    fn endless_connect_line_ends_the_tail() {
        let mut r = Run::plain("'' ATZ CONNECT ''");
        r.input(b"CONNECT 57600");
        for _ in 0..100 {
            r.input(b"RING RING RING RING ");
            if r.outcome().is_some() {
                break;
            }
        }
        let s = r.success();
        assert_eq!(s.speed, Some(57600));
        assert!(
            s.connect
                .as_ref()
                .is_some_and(|c| c.len() == MAX_REPORT_LEN)
        );
        // Late bytes keep going to the leftover, bounded.
        for _ in 0..1000 {
            r.input(&[b'y'; 100]);
        }
        assert!(r.success().leftover.len() <= MAX_PENDING_INPUT);
    }

    #[test]
    fn dials_and_parses_connect_speed_keeping_ppp_bytes() {
        let mut r = Run::new(HAYES, dial_options());
        assert_eq!(r.writes, vec![b"ATZ\r".to_vec()]);
        r.input(b"ATZ\r\r\nO");
        assert!(r.outcome().is_none());
        r.input(b"K\r\n");
        assert_eq!(r.writes[1], b"ATDT5551234\r");
        r.input(b"\r\nCONNECT 57600/V42\r\n\x7e\xff\x7d\x23");
        let s = r.success();
        assert_eq!(s.connect.as_deref(), Some("CONNECT 57600/V42"));
        assert_eq!(s.speed, Some(57600));
        assert_eq!(s.leftover, b"\x7e\xff\x7d\x23");
        assert_eq!(r.writes[2], b"\r");
        assert_eq!(r.engine.outcome().map(Outcome::exit_code), Some(0));
    }

    #[test]
    fn connect_tail_arriving_later_is_waited_for() {
        let mut r = Run::new(HAYES, dial_options());
        r.input(b"OK\r\n");
        r.input(b"CONNECT");
        assert!(r.outcome().is_none(), "waits for the rest of the line");
        r.wait(Duration::from_millis(500));
        r.input(b" 115200");
        assert!(r.outcome().is_none());
        r.input(b"\r\n");
        assert_eq!(r.success().speed, Some(115200));
        assert!(r.success().leftover.is_empty());
    }

    #[test]
    fn bare_connect_times_out_its_tail() {
        let mut r = Run::new(HAYES, dial_options());
        r.input(b"OK\r\nCONNECT");
        r.wait(Duration::from_millis(1001));
        assert_eq!(r.success().connect.as_deref(), Some("CONNECT"));
        assert_eq!(r.success().speed, None);
    }

    #[test]
    fn abort_strings_map_to_exit_codes() {
        let mut r = Run::new(HAYES, dial_options());
        r.input(b"OK\r\n\r\nNO CARRIER\r\n");
        assert_eq!(
            r.failure(),
            &Failure::Aborted {
                index: 1,
                string: "NO CARRIER".into()
            }
        );
        assert_eq!(r.failure().exit_code(), 5);
        let mut r = Run::new(HAYES, dial_options());
        r.input(b"OK\r\nBUSY\r\n");
        assert_eq!(r.failure().exit_code(), 4);
    }

    #[test]
    fn timeout_and_timeout_keyword() {
        let mut r = Run::plain("'' AT OK-AT-OK x TIMEOUT 5 FOO y");
        r.wait(Duration::from_secs(44));
        assert!(r.outcome().is_none());
        assert_eq!(
            r.engine.poll_timeout(),
            Some(r.now + Duration::from_secs(1))
        );
        r.wait(Duration::from_secs(1));
        // Sub-expect: AT sent again, then OK expected afresh.
        assert_eq!(r.writes, vec![b"AT\r".to_vec(), b"AT\r".to_vec()]);
        r.input(b"OK");
        assert_eq!(r.writes[2], b"x\r");
        r.wait(Duration::from_secs(5));
        assert_eq!(
            r.failure(),
            &Failure::Timeout {
                expected: "FOO".into()
            }
        );
        assert_eq!(r.failure().exit_code(), 3);
    }

    #[test]
    fn chat_option_timeout() {
        let mut r = Run::new(
            "OK x",
            ChatOptions {
                timeout: Duration::from_secs(2),
                ..ChatOptions::default()
            },
        );
        r.wait(Duration::from_secs(2));
        assert_eq!(r.failure().exit_code(), 3);
    }

    #[test]
    fn sub_expect_with_break_and_empty_send() {
        let mut r = Run::plain("ogin:-BREAK-ogin: ppp ssword:--ssword: pw");
        r.wait(Duration::from_secs(45));
        assert!(r.others.contains(&Action::Break));
        r.input(b"login:");
        assert_eq!(r.writes, vec![b"ppp\r".to_vec()]);
        r.wait(Duration::from_secs(45));
        assert_eq!(r.writes[1], b"\r", "'--' sends an empty line");
        r.input(b"Password:");
        assert_eq!(r.writes[2], b"pw\r");
        assert!(r.outcome().is_some());
    }

    #[test]
    fn sub_send_without_expect_carries_on() {
        let mut r = Run::plain("x-y z");
        r.wait(Duration::from_secs(45));
        assert_eq!(r.writes, vec![b"y\r".to_vec(), b"z\r".to_vec()]);
        r.success();
    }

    #[test]
    fn clr_abort_and_report_keywords() {
        let mut r = Run::plain(
            "ABORT BUSY CLR_ABORT BUSY REPORT CARRIER REPORT CONNECT CLR_REPORT CARRIER '' ATD CONNECT ''",
        );
        r.input(b"BUSY\r\nCARRIER 28800\r\nCONNECT 28800/ARQ\r\n");
        let s = r.success();
        assert_eq!(s.reports, vec!["CONNECT 28800/ARQ".to_string()]);
        assert_eq!(s.speed, Some(28800));
    }

    #[test]
    fn report_lines_are_collected() {
        let mut r = Run::plain("REPORT +CSQ: '' AT+CSQ OK ''");
        r.input(b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n");
        assert_eq!(r.success().reports, vec!["+CSQ: 21,99".to_string()]);
        assert!(r.logs().iter().any(|l| l == "report: +CSQ: 21,99"));
    }

    #[test]
    fn say_and_echo() {
        let mut r = Run::plain("SAY 'Dialing...\\n' ECHO ON '' AT OK ''");
        assert_eq!(r.others[0], Action::Say("Dialing...\n".into()));
        r.input(b"AT\r\r\nOK\r\n");
        let echoed: Vec<u8> = r
            .others
            .iter()
            .filter_map(|a| match a {
                Action::Echo(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(echoed, b"AT\r\r\nOK");
        let mut r = Run::new(
            "ECHO OFF OK ''",
            ChatOptions {
                echo: true,
                ..ChatOptions::default()
            },
        );
        r.input(b"OK");
        assert!(!r.others.iter().any(|a| matches!(a, Action::Echo(_))));
    }

    #[test]
    fn hangup_on_and_off() {
        let mut r = Run::plain("OK x");
        assert!(r.engine.hangup_enabled());
        r.engine.handle_hangup();
        r.drain();
        assert_eq!(r.failure(), &Failure::Hangup);
        assert_eq!(r.failure().exit_code(), 2);
        let mut r = Run::plain("HANGUP OFF OK x");
        assert!(!r.engine.hangup_enabled());
        r.engine.handle_hangup();
        r.drain();
        assert!(r.outcome().is_none());
        r.input(b"OK");
        r.success();
    }

    #[test]
    fn delays_and_pauses_are_deadlines() {
        let mut r = Run::plain("'' AT\\dZ\\pX");
        assert_eq!(r.writes, vec![b"AT".to_vec()]);
        assert_eq!(
            r.engine.poll_timeout(),
            Some(r.now + Duration::from_secs(1))
        );
        r.wait(Duration::from_millis(999));
        assert_eq!(r.writes.len(), 1);
        r.wait(Duration::from_millis(1));
        assert_eq!(r.writes[1], b"Z");
        r.wait(Duration::from_millis(10));
        assert_eq!(r.writes[2], b"X\r");
        r.success();
    }

    #[test]
    fn secrets_never_reach_logs() {
        let mut r = Run::new(
            "ECHO ON ssword: \\U OK \\qhidden OK ''",
            ChatOptions {
                phone2: Some("s3cret".into()),
                ..ChatOptions::default()
            },
        );
        r.input(b"Password:");
        assert_eq!(r.writes[0], b"s3cret\r");
        // A remote echo of the secret is scrubbed from the log too.
        r.input(b"s3cret\r\nOK\r\n");
        assert_eq!(r.writes[1], b"hidden\r");
        r.input(b"OK\r\n");
        r.success();
        let logs = r.logs().join("\n");
        assert!(!logs.contains("s3cret"), "{logs}");
        assert!(!logs.contains("hidden"), "{logs}");
        assert!(logs.contains("send (??????)"), "{logs}");
        assert!(!format!("{:?}", r.engine.options).contains("s3cret"));
    }

    #[test]
    fn missing_values_are_invalid() {
        let r = Run::plain("'' ATDT\\T");
        assert_eq!(r.failure().exit_code(), 1);
        let r = Run::plain("'' \\U");
        assert!(matches!(r.failure(), Failure::Invalid(m) if m.contains("-U")));
        assert!(r.writes.is_empty());
    }

    #[test]
    fn unconsumed_input_feeds_the_next_expect() {
        let mut r = Run::plain("'' AT OK ATD CONNECT ''");
        r.input(b"OK\r\nCONNECT 9600\r\n");
        assert_eq!(
            r.writes,
            vec![b"AT\r".to_vec(), b"ATD\r".to_vec(), b"\r".to_vec()]
        );
        assert_eq!(r.success().speed, Some(9600));
    }

    #[test]
    fn parity_bit_is_ignored_for_matching() {
        let mut r = Run::plain("OK ''");
        r.input(&[b'O' | 0x80, b'K' | 0x80]);
        r.success();
    }

    #[test]
    fn io_error_and_late_input() {
        let mut r = Run::plain("OK ''");
        r.engine.handle_io_error("read: EIO");
        r.drain();
        assert_eq!(r.failure(), &Failure::Io("read: EIO".into()));
        let mut r = Run::plain("OK");
        r.input(b"OK");
        r.input(b"\x7e\x01");
        assert_eq!(r.success().leftover, b"\x7e\x01");
    }

    #[test]
    fn connect_speeds() {
        assert_eq!(parse_connect_speed("CONNECT 115200"), Some(115200));
        assert_eq!(parse_connect_speed("CONNECT 57600/V42"), Some(57600));
        assert_eq!(
            parse_connect_speed("CONNECT 33600/ARQ/V34/LAPM"),
            Some(33600)
        );
        assert_eq!(parse_connect_speed("CONNECT"), None);
        assert_eq!(parse_connect_speed("CONNECT FAST"), None);
        assert_eq!(parse_connect_speed("CONNECT 0"), None);
        assert_eq!(parse_connect_speed("RING"), None);
    }

    proptest::proptest! {
        /// Any script on any input ends (within bounded simulated time) without panicking.
        #[test]
        fn any_script_any_input_terminates(
            script in "[A-Z'\\- \\\\dpcK]{0,40}",
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..16), 0..8),
        ) {
            let Ok(script) = Script::parse(&script, "p") else { return Ok(()); };
            let mut now = Instant::now();
            let options = ChatOptions { phone: Some("1".into()), phone2: Some("2".into()), ..ChatOptions::default() };
            let mut e = ChatEngine::new(script, options, now);
            for c in &chunks {
                e.handle_input(c, now);
                while e.poll_action().is_some() {}
            }
            let mut rounds = 0;
            while e.outcome().is_none() {
                while e.poll_action().is_some() {}
                if let Some(t) = e.poll_timeout() { now = now.max(t); }
                e.handle_timeout(now);
                while e.poll_action().is_some() {}
                rounds += 1;
                proptest::prop_assert!(rounds < 10_000, "engine did not finish");
            }
        }
    }
}
