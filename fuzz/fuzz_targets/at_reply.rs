//! `cmd::probe::parse_at_reply`: the modem's answer to a probe command.
//!
//! Input: `command \0 received` (without a NUL the whole input is the reply to `ATI`).
#![no_main]

use eqlplus_dialer::cmd::probe::parse_at_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (command, received) = match data.iter().position(|&b| b == 0) {
        Some(p) => (
            String::from_utf8_lossy(&data[..p]).into_owned(),
            &data[p + 1..],
        ),
        None => ("ATI".to_string(), data),
    };
    if let Some(reply) = parse_at_reply(received, &command) {
        for line in &reply.lines {
            assert!(!line.is_empty(), "blank lines are dropped");
            assert!(!line.contains(['\r', '\n']), "lines are split: {line:?}");
            assert_eq!(line.trim(), line, "lines are trimmed");
            assert!(
                !line.eq_ignore_ascii_case(&command),
                "the command's echo is dropped"
            );
        }
        // Whatever ends the reply was received, so more input never changes the verdict.
        let mut longer = received.to_vec();
        longer.extend_from_slice(b"\r\nOK\r\n");
        assert_eq!(parse_at_reply(&longer, &command), Some(reply));
    }
});
