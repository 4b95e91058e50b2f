//! The thin async driver: runs a [`ChatEngine`] over a [`SerialPort`].

use std::time::{Duration, Instant};

use super::engine::{Action, ChatEngine, Outcome};
use crate::serial::SerialPort;

/// How often the carrier is sampled for HANGUP ON where the port has modem lines.
const CARRIER_POLL: Duration = Duration::from_millis(250);

/// Runs `engine` to its end over `port`. Writes and BREAKs go to the port; SAY, ECHO and log
/// lines go to `show`, in order. Carrier loss (DCD going from up to down) is reported to the
/// engine, which fails unless the script said HANGUP OFF.
pub async fn run_chat(
    port: &SerialPort,
    engine: &mut ChatEngine,
    show: &mut (dyn FnMut(&Action) + Send),
) -> Outcome {
    let mut buf = [0u8; 1024];
    let mut carrier_was_up = port.carrier() == Some(true);
    loop {
        while let Some(action) = engine.poll_action() {
            match action {
                Action::Write(bytes) => {
                    // A port that takes nothing (a modem still online in an old call, flow
                    // control held) fails the script within its TIMEOUT, as chat's alarm.
                    let limit = engine.current_timeout();
                    match tokio::time::timeout(limit, port.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => engine
                            .handle_io_error(&format!("write to {}: {e}", port.path().display())),
                        Err(_) => engine.handle_io_error(&format!(
                            "write to {}: nothing taken in {limit:?}",
                            port.path().display()
                        )),
                    }
                }
                Action::Break => {
                    if let Err(e) = port.send_break().await {
                        tracing::debug!("BREAK on {}: {e}", port.path().display());
                    }
                }
                other => show(&other),
            }
        }
        if let Some(outcome) = engine.take_outcome() {
            return outcome;
        }
        let deadline = engine.poll_timeout().map(tokio::time::Instant::from_std);
        let watch_carrier = port.has_modem_lines();
        tokio::select! {
            read = port.read(&mut buf) => match read {
                Ok(0) => engine.handle_io_error(&format!("{}: end of file", port.path().display())),
                Ok(n) => engine.handle_input(&buf[..n], Instant::now()),
                Err(e) => engine.handle_io_error(&format!("read from {}: {e}", port.path().display())),
            },
            _ = crate::sys::sleep_until_opt(deadline) => engine.handle_timeout(Instant::now()),
            _ = tokio::time::sleep(CARRIER_POLL), if watch_carrier => {
                let up = port.carrier() == Some(true);
                if carrier_was_up && !up {
                    engine.handle_hangup();
                }
                carrier_was_up = up;
            }
        }
    }
}
