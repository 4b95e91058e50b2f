//! The monitor's driver: the terminal, the subscription to the daemon's reports (again every
//! [`retry_delay`] while it is away), the keyboard, the requests, and the signals that end it.

use std::path::Path;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::state::{Effect, MonitorState};
use crate::control::{ClientError, Response, StatusReport, client};

/// How long to wait before subscribing again after the daemon went away.
pub fn retry_delay(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(1))
}

/// Why the driver stopped.
#[derive(Debug)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// A signal (SIGTERM, SIGHUP, SIGINT) ended it.
    Signal,
}

/// Runs the monitor on the terminal until the user quits. Errors are terminal errors.
pub async fn run(socket: &Path, interval: Duration) -> std::io::Result<Exit> {
    let mut terminal = crate::ui::terminal::TerminalGuard::enter()?;
    let mut state = MonitorState::new(socket);
    let mut events = EventStream::new();
    let (answer_tx, mut answers) = mpsc::unbounded_channel::<Result<Response, String>>();
    use tokio::signal::unix::{SignalKind, signal};
    // Ctrl-C is a key in raw mode; these come from elsewhere (kill, a closed terminal).
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut subscription: Option<client::Subscription> = None;
    // When to try to subscribe (now at first).
    let mut retry_at = Some(tokio::time::Instant::now());
    let panic_for_test = test_panic_requested();
    loop {
        terminal.draw(|area, buf| state.render(area, buf))?;
        if panic_for_test && state.report.is_some() {
            test_panic();
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => match state.handle_key(key) {
                    Effect::None => {}
                    Effect::Quit => return Ok(Exit::Quit),
                    Effect::Send(request) => {
                        let socket = socket.to_path_buf();
                        let tx = answer_tx.clone();
                        tokio::spawn(async move {
                            let answer = client::request(&socket, request)
                                .await
                                .map_err(|e| e.to_string());
                            let _ = tx.send(answer);
                        });
                    }
                },
                // Resizes and the rest: just redraw.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(Exit::Quit),
            },
            report = next_report(&mut subscription) => match report {
                Ok(report) => state.on_report(report),
                Err(why) => {
                    subscription = None;
                    state.on_disconnected(&why);
                    retry_at = Some(tokio::time::Instant::now() + retry_delay(interval));
                }
            },
            () = crate::sys::sleep_until_opt(retry_at) => {
                retry_at = None;
                match client::subscribe(socket, interval).await {
                    Ok(s) => subscription = Some(s),
                    Err(e) => {
                        state.on_disconnected(&describe(&e));
                        retry_at = Some(tokio::time::Instant::now() + retry_delay(interval));
                    }
                }
            },
            Some(answer) = answers.recv() => state.on_answer(answer),
            _ = term.recv() => return Ok(Exit::Signal),
            _ = hup.recv() => return Ok(Exit::Signal),
            _ = int.recv() => return Ok(Exit::Signal),
        }
    }
}

/// With the `test-support` feature (tests only): whether `EQLPLUS_MONITOR_TEST_PANIC` asks
/// the monitor to panic once it has drawn a report, to test that the terminal is restored.
#[cfg(feature = "test-support")]
fn test_panic_requested() -> bool {
    std::env::var_os("EQLPLUS_MONITOR_TEST_PANIC").is_some()
}

#[cfg(feature = "test-support")]
fn test_panic() {
    panic!("EQLPLUS_MONITOR_TEST_PANIC is set: panicking to test the terminal restore");
}

/// Without the `test-support` feature the monitor never panics on purpose.
#[cfg(not(feature = "test-support"))]
fn test_panic_requested() -> bool {
    false
}

#[cfg(not(feature = "test-support"))]
fn test_panic() {}

/// A client error, short enough for the header.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::NotRunning { path } => format!("no control socket at {}", path.display()),
        other => other.to_string(),
    }
}

/// The next report of the subscription, or why there is none; never, without one.
async fn next_report(
    subscription: &mut Option<client::Subscription>,
) -> Result<StatusReport, String> {
    let Some(s) = subscription else {
        return std::future::pending().await;
    };
    match s.next().await {
        Some(Ok(Response::Status(report))) => Ok(report),
        Some(Ok(Response::Error { message })) => Err(message),
        Some(Ok(Response::Ok { message })) => Err(format!("unexpected answer: {message}")),
        Some(Err(e)) => Err(describe(&e)),
        None => Err("the daemon closed the connection".into()),
    }
}
