//! chat(8) scripts: `Script::parse` on arbitrary text; a script that parses is
//! then run by `ChatEngine` against the rest of the input as modem output, on
//! a fake clock that jumps to every deadline the engine asks for.
//!
//! Input: `script text \0 control byte, modem bytes...`. The control byte picks
//! the options (echo, phone numbers, default timeout) and how the modem bytes
//! are chunked.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::chat::script::visible;
use eqlplus_dialer::chat::{Action, ChatEngine, ChatOptions, Outcome, Script, parse_connect_speed};
use libfuzzer_sys::fuzz_target;

/// One fixed base instant, so a crash input replays identically.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The `\U` value; log lines must never show it.
const SECRET: &str = "S3cr3t";

/// `check_secret`: the secret is set and the script cannot spell it itself (no
/// escapes, no literal copy), so any appearance in a log line is a leak.
fn drain(engine: &mut ChatEngine, check_secret: bool) {
    while let Some(action) = engine.poll_action() {
        match action {
            Action::Write(bytes) | Action::Echo(bytes) => {
                let _ = visible(&bytes);
            }
            // What `status` shows (Sent, Heard) must not leak the secret either.
            Action::Log(line) | Action::Sent(line) | Action::Heard(line) => {
                assert!(
                    !check_secret || !line.contains(SECRET),
                    "secret in log or status: {line}"
                )
            }
            Action::Break | Action::Say(_) => {}
        }
    }
}

/// Jump the clock to the engine's next deadline and run it. Returns false when
/// the engine wants no timer.
fn tick(engine: &mut ChatEngine, now: &mut Instant, check_secret: bool) -> bool {
    let Some(deadline) = engine.poll_timeout() else {
        return false;
    };
    *now = (*now).max(deadline);
    engine.handle_timeout(*now);
    drain(engine, check_secret);
    true
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let script = match Script::parse(&text, "fuzz.chat") {
        Ok(script) => script,
        Err(e) => {
            assert!(e.pos.line >= 1 && e.pos.column >= 1, "{e}");
            let _ = e.to_string();
            return;
        }
    };
    let _ = parse_connect_speed(&text);
    let (control, modem) = match rest.split_first() {
        Some((&c, m)) => (c, m),
        None => (0, &[][..]),
    };
    let options = ChatOptions {
        phone: (control & 1 == 0).then(|| "5551234".to_string()),
        phone2: (control & 2 == 0).then(|| SECRET.to_string()),
        timeout: Duration::from_secs(u64::from(control >> 4)),
        echo: control & 4 != 0,
    };
    let chunk = usize::from(control >> 3 & 1) * 15 + 1; // 1 or 16 bytes per read
    let check_secret =
        options.phone2.is_some() && !text.contains(['\\', '^']) && !text.contains(SECRET);
    let mut now = epoch();
    let mut engine = ChatEngine::new(script.clone(), options, now);
    drain(&mut engine, check_secret);
    for piece in modem.chunks(chunk) {
        engine.handle_input(piece, now);
        drain(&mut engine, check_secret);
        // Bytes that look like a pause let the clock run to the next deadline.
        if piece[0] == b'~' {
            tick(&mut engine, &mut now, check_secret);
        }
    }
    // No more input: only the clock moves. Every step waits a bounded time, so
    // the script must end within as many deadlines as it has parts.
    let bound = 16 + 4 * text.len() + modem.len();
    let mut ticks = 0;
    while engine.outcome().is_none() {
        assert!(
            tick(&mut engine, &mut now, check_secret),
            "engine waits forever without a deadline"
        );
        ticks += 1;
        assert!(ticks <= bound, "no outcome after {ticks} deadlines");
    }
    match engine.take_outcome() {
        Some(Outcome::Success(s)) => {
            if let Some(c) = &s.connect {
                let _ = parse_connect_speed(c);
            }
        }
        Some(Outcome::Failure(f)) => assert!(f.exit_code() >= 1),
        None => unreachable!(),
    }
    // Late input is kept as leftover or ignored; never a panic.
    engine.handle_input(b"~~late", now);
    engine.handle_timeout(now + Duration::from_secs(3600));
    engine.handle_hangup();
    drain(&mut engine, check_secret);
});
