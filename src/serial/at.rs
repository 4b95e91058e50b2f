//! One AT command and its answer, for the short exchanges outside a chat script: a modem
//! reset, asking a modem who it is. Bounded in time and in what it keeps.

use std::time::Duration;

use super::SerialPort;

/// The most an answer may hold before it is taken for noise.
const MAX_ANSWER: usize = 4096;

/// Sends `command` and collects the modem's lines up to its final result: `Ok(lines)` on
/// `OK`, `Err(why)` on `ERROR`/`+CME ERROR`, silence for `wait`, noise or a closed port. The
/// echo of the command is not among the lines.
pub async fn ask(port: &SerialPort, command: &str, wait: Duration) -> Result<Vec<String>, String> {
    if let Err(e) = port.write_all(format!("{command}\r").as_bytes()).await {
        return Err(format!("cannot write: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Err(_) => return Err("no answer".into()),
            Ok(Ok(0)) | Ok(Err(_)) => return Err("the port closed".into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(result) = final_result(&got, command) {
            return result;
        }
        if got.len() > MAX_ANSWER {
            return Err("no answer (noise)".into());
        }
    }
}

/// The answer in `got`, once its final result code has arrived (a whole line).
fn final_result(got: &[u8], command: &str) -> Option<Result<Vec<String>, String>> {
    let text = String::from_utf8_lossy(got);
    // Only complete lines: the last one may still be arriving.
    let complete = &text[..text.rfind(['\r', '\n'])?];
    let mut lines = Vec::new();
    for line in complete.split(['\r', '\n']).map(str::trim) {
        if line.is_empty() || line.eq_ignore_ascii_case(command) {
            continue;
        }
        if line == "OK" {
            return Some(Ok(lines));
        }
        if line == "ERROR" || line.starts_with("+CME ERROR") || line.starts_with("+CMS ERROR") {
            return Some(Err(line.to_string()));
        }
        lines.push(line.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_end_at_their_final_result() {
        let ok = final_result(b"AT+CGSN\r\r\n356938035643809\r\n\r\nOK\r\n", "AT+CGSN");
        assert_eq!(ok, Some(Ok(vec!["356938035643809".to_string()])));
        assert_eq!(final_result(b"\r\n3569380", "AT+CGSN"), None);
        assert_eq!(final_result(b"\r\nO", "AT"), None);
        assert_eq!(
            final_result(b"\r\n+CME ERROR: 10\r\n", "AT+CCID"),
            Some(Err("+CME ERROR: 10".to_string()))
        );
        assert_eq!(
            final_result(b"ERROR\n", "ATZ"),
            Some(Err("ERROR".to_string()))
        );
    }
}
