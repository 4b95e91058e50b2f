//! Runs a [`CellularCheck`] over a modem port, as `chat::run_chat` runs a script: the check's
//! writes go to the port, the port's bytes and the clock to the check.

use std::time::Instant;

use super::check::{Action, CellularCheck, Outcome};
use crate::serial::SerialPort;

/// Runs `check` to its end; `seen` gets everything else it says (status, log, PIN sent).
pub async fn run_check(
    port: &SerialPort,
    check: &mut CellularCheck,
    seen: &mut (dyn FnMut(Action) + Send),
) -> Outcome {
    let mut buf = [0u8; 1024];
    loop {
        while let Some(action) = check.poll_action() {
            match action {
                Action::Write(bytes) => {
                    if let Err(e) = port.write_all(&bytes).await {
                        return Outcome::NoAnswer(format!(
                            "cannot write to {}: {e}",
                            port.path().display()
                        ));
                    }
                }
                other => seen(other),
            }
        }
        if let Some(outcome) = check.outcome() {
            return outcome.clone();
        }
        let deadline = check.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            read = port.read(&mut buf) => match read {
                Ok(0) => {
                    return Outcome::NoAnswer(format!("{}: end of file", port.path().display()));
                }
                Ok(n) => check.handle_input(&buf[..n], Instant::now()),
                Err(e) => {
                    return Outcome::NoAnswer(format!("read from {}: {e}", port.path().display()));
                }
            },
            _ = crate::sys::sleep_until_opt(deadline) => check.handle_timeout(Instant::now()),
        }
    }
}
