//! `cellular::CellularCheck` and the `cellular::reply` parsers: any bytes from the modem, in
//! any pieces, with the clock jumping to each deadline, never panic, never leak the PIN into a
//! log line, and never send more than one `AT+CPIN=`.
//!
//! Input: chunks separated by NUL; an empty chunk fires the pending timeout instead.
#![no_main]

use std::time::{Duration, Instant};

use eqlplus_dialer::cellular::{Action, CellularCheck, CheckConfig, reply};
use libfuzzer_sys::fuzz_target;

const PIN: &str = "4711";

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let config = CheckConfig {
        pin: Some(PIN.into()),
        ..CheckConfig::default()
    };
    let mut check = CellularCheck::new(config, now);
    let mut pins = 0;
    let mut drain = |check: &mut CellularCheck| {
        while let Some(action) = check.poll_action() {
            match action {
                Action::Log(line) => assert!(!line.contains(PIN), "PIN in log: {line}"),
                Action::PinSent => pins += 1,
                Action::Write(_) | Action::Status(_) => {}
            }
        }
        assert!(pins <= 1, "the PIN went out twice");
    };
    drain(&mut check);
    for chunk in data.split(|&b| b == 0) {
        if chunk.is_empty() {
            if let Some(t) = check.poll_timeout() {
                now = now.max(t);
                check.handle_timeout(now);
            }
        } else {
            check.handle_input(chunk, now);
            now += Duration::from_millis(10);
        }
        drain(&mut check);
        if check.outcome().is_some() {
            break;
        }
    }
    for line in String::from_utf8_lossy(data).lines() {
        let _ = reply::parse_cpin(line);
        let _ = reply::parse_registration(line, "CREG");
        let _ = reply::parse_cops(line);
        let _ = reply::parse_csq(line);
        let _ = reply::parse_cesq(line);
        let _ = reply::parse_imei(line);
        let _ = reply::parse_iccid(line);
        let _ = reply::parse_cme_error(line);
    }
});
