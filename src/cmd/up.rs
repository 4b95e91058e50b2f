//! `up` and `down`: the way in and out, as `pon`/`poff` and `wvdial` users expect.
//!
//! `up` brings lines up, starting the daemon when none answers: through systemd where the
//! unit is installed and systemd runs the machine (so it stays a supervised service), else as
//! a background daemon of its own (`daemon --detached`: a new session, logging to the journal
//! or `[daemon] log_file`; the instance lock keeps a second one out). Then it follows the
//! lines ([`crate::ui::progress`]) until each is up or has failed: rows redrawn in place on a
//! terminal, one line per change otherwise. `down` hangs every line up and stops a daemon that
//! `up` started.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ctl::{self, SocketArgs, exit};
use crate::config::DEFAULT_CONFIG;
use crate::control::{ClientError, Request, Response, StartedBy, StatusReport, client};
use crate::ui::{format, progress::Progress};

/// The systemd unit `up` starts where it is installed.
const UNIT: &str = "eqlplus-dialer.service";

/// How long a daemon `up` started may take to answer on its socket.
const START_BOUND: Duration = Duration::from_secs(20);

/// How long a daemon started at the same time by another `up` may take to answer, after ours
/// stopped because that one holds the instance lock.
const RACE_GRACE: Duration = Duration::from_secs(3);

/// How long `systemctl start`/`stop` may take (the unit's TimeoutStopSec is 45 s).
const SYSTEMCTL_BOUND: Duration = Duration::from_secs(90);

/// How often the progress view hears from the daemon.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// The most of a starting daemon's stderr kept to show when it fails.
const STDERR_KEPT: u64 = 16 * 1024;

pub const UP_HELP: &str = "\
Without a daemon answering, `up` starts one: the systemd service where it is installed
(systemctl start eqlplus-dialer), else a background daemon of its own that `down` stops.

Exit status:
  0  every requested line came up (or --no-wait: the daemon took the request)
  1  a line failed or was not up within --timeout (named, with the reason), or the daemon
     refused
  2  usage error, a configuration error, or the daemon could not be started or talked to
  4  permission denied (starting the daemon needs root; using it, the [control] group)";

#[derive(Debug, clap::Args)]
#[command(after_help = UP_HELP)]
pub struct UpArgs {
    /// Lines to bring up (their names in the configuration); none: every enabled line.
    #[arg(value_name = "LINE")]
    pub lines: Vec<String>,
    /// Return once the daemon has the request; do not follow the lines.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following after this long: 90s, 2m… (the daemon keeps dialling).
    #[arg(long, default_value = "120s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub const DOWN_HELP: &str = "\
A daemon that `up` started stops too. The service (systemd) stops when it is not enabled at
boot; an enabled service, or a daemon run by hand, keeps running with its lines held down
until `up`.

Exit status:
  0  every line is down (also: no daemon was running)
  1  the daemon refused, or did not stop within --timeout
  2  usage error, or the daemon could not be talked to
  4  permission denied";

#[derive(Debug, clap::Args)]
#[command(after_help = DOWN_HELP)]
pub struct DownArgs {
    /// How long to wait for the lines to hang up and the daemon to stop.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub socket: SocketArgs,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Prints a line to stdout (ignoring a reader that went away) and flushes.
fn say(text: &str) {
    let _ = ctl::print_out(&format!("{text}\n"));
}

pub async fn up(args: UpArgs) -> i32 {
    let socket = match ctl::socket_or_exit(&args.socket) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let started = epoch_now();
    match client::request(&socket, Request::Status { line: None }).await {
        Ok(_) => {}
        Err(ClientError::NotRunning { .. }) => {
            if let Err(code) = start_daemon(&args.socket, &socket).await {
                return code;
            }
        }
        Err(e) => return ctl::report_error(&e),
    }
    let message = match client::request(
        &socket,
        Request::Up {
            lines: args.lines.clone(),
        },
    )
    .await
    {
        Ok(Response::Ok { message }) => message,
        Ok(Response::Error { message }) => return ctl::report_refusal(&message),
        Ok(Response::Status(_)) => {
            eprintln!("eqlplus-dialer: the daemon answered with a status report, not ok/error");
            return exit::TROUBLE;
        }
        Err(e) => return ctl::report_error(&e),
    };
    if args.no_wait {
        say(&message);
        return exit::OK;
    }
    follow(&socket, args.lines, started, args.timeout).await
}

/// Starts the daemon: the service where systemd runs the machine and the unit is installed
/// (and the configuration asked for is the service's), else a background daemon of our own.
/// Returns once it answers on `socket`.
async fn start_daemon(args: &SocketArgs, socket: &Path) -> Result<(), i32> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "eqlplus-dialer: the daemon is not running, and starting it needs root \
             (sudo eqlplus-dialer up)"
        );
        return Err(exit::PERMISSION);
    }
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let services_config = args.socket.is_none() && config == Path::new(DEFAULT_CONFIG);
    if services_config && systemd_unit_installed().await {
        say(&format!("starting the service: systemctl start {UNIT}"));
        systemctl(&["start", UNIT]).await.map_err(|e| {
            eprintln!("eqlplus-dialer: {e}; see systemctl status {UNIT} and journalctl -u {UNIT}");
            exit::TROUBLE
        })?;
        return wait_ready(socket, None).await;
    }
    // The configuration is checked here first, so that its mistakes (file:line) are shown
    // at once rather than in a log.
    if let Err(problems) = crate::config::load(&config) {
        for p in problems {
            eprintln!("{p}");
        }
        return Err(exit::TROUBLE);
    }
    let config = std::fs::canonicalize(&config).unwrap_or(config);
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("eqlplus-dialer: cannot find this program's own path: {e}");
        exit::TROUBLE
    })?;
    let mut command = Command::new(exe);
    command
        .arg("daemon")
        .arg("--config")
        .arg(&config)
        .arg("--detached")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Until it is ready the daemon's complaints come here; then it lets go of stderr.
        .stderr(Stdio::piped());
    // A session of its own: no controlling terminal, so closing this one does not hang it up.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|e| {
        eprintln!("eqlplus-dialer: cannot start the daemon: {e}");
        exit::TROUBLE
    })?;
    say(&format!(
        "starting the daemon (pid {}, configuration {})",
        child.id(),
        config.display()
    ));
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.take(STDERR_KEPT).read_to_string(&mut text);
            text
        })
    });
    let ready = wait_ready(socket, Some(&mut child)).await;
    if ready.is_err() {
        // Whatever it said before it gave up (its stderr closes when it exits).
        if let Ok(Some(_)) = child.try_wait()
            && let Some(text) = stderr.and_then(|t| t.join().ok())
        {
            for line in text.lines() {
                eprintln!("  {line}");
            }
        }
    }
    ready
}

/// Waits until the daemon answers on `socket`; with the `child` we started, gives up at once
/// if it exits.
async fn wait_ready(socket: &Path, mut child: Option<&mut std::process::Child>) -> Result<(), i32> {
    let deadline = Instant::now() + START_BOUND;
    loop {
        match client::request(socket, Request::Status { line: None }).await {
            Ok(_) => return Ok(()),
            Err(ClientError::NotRunning { .. }) => {}
            Err(e) => return Err(ctl::report_error(&e)),
        }
        if let Some(child) = child.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            // Two `up`s at once: the other one's daemon took the instance lock and ours
            // stopped; that one answers shortly.
            if answers_within(socket, RACE_GRACE).await {
                return Ok(());
            }
            eprintln!("eqlplus-dialer: the daemon did not start ({status}):");
            return Err(exit::TROUBLE);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "eqlplus-dialer: the daemon did not answer on {} within {}s",
                socket.display(),
                START_BOUND.as_secs()
            );
            return Err(exit::TROUBLE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a daemon answers on `socket` within `bound`.
async fn answers_within(socket: &Path, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if client::request(socket, Request::Status { line: None })
            .await
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether systemd runs this machine (sd_booted: /run/systemd/system) and knows our unit.
async fn systemd_unit_installed() -> bool {
    if !Path::new("/run/systemd/system").is_dir() {
        return false;
    }
    matches!(
        run_bounded("systemctl", &["show", "--property=LoadState", "--value", UNIT]).await,
        Ok(out) if out.trim() == "loaded"
    )
}

/// Whether the unit is enabled at boot.
async fn systemd_unit_enabled() -> bool {
    matches!(
        run_bounded("systemctl", &["is-enabled", UNIT]).await,
        Ok(out) if out.trim() == "enabled"
    )
}

async fn systemctl(args: &[&str]) -> Result<String, String> {
    run_bounded("systemctl", args).await
}

/// Runs a program with a deadline; its stdout, or what went wrong.
async fn run_bounded(program: &str, args: &[&str]) -> Result<String, String> {
    let what = format!("{program} {}", args.join(" "));
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(SYSTEMCTL_BOUND, child).await {
        Err(_) => Err(format!(
            "{what}: no answer within {}s",
            SYSTEMCTL_BOUND.as_secs()
        )),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Follows the lines until each is up or has failed, or `timeout` passes.
async fn follow(socket: &Path, lines: Vec<String>, started: f64, timeout: Duration) -> i32 {
    let mut subscription = match client::subscribe(socket, FOLLOW_EVERY).await {
        Ok(s) => s,
        Err(e) => return ctl::report_error(&e),
    };
    let terminal = std::io::stdout().is_terminal();
    let colour = format::colour_stdout();
    let mut progress = Progress::new(lines, started);
    let mut drawn = 0usize;
    let mut frame = 0usize;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = tokio::select! {
            a = subscription.next() => a,
            () = tokio::time::sleep_until(deadline) => {
                let changes = progress.time_out(epoch_now(), &format::duration(timeout.as_secs_f64()));
                show(&progress, &changes, terminal, colour, &mut drawn, frame);
                break;
            }
        };
        let Some(answer) = answer else {
            eprintln!("eqlplus-dialer: the daemon closed the connection (stopped?)");
            return exit::NOT_RUNNING;
        };
        let report: StatusReport = match ctl::status_report(answer) {
            Ok(r) => r,
            Err(code) => return code,
        };
        let changes = progress.on_report(&report);
        frame += 1;
        show(&progress, &changes, terminal, colour, &mut drawn, frame);
        if progress.is_empty() {
            say("no lines to bring up (every line is disabled in the configuration)");
            return exit::OK;
        }
        if progress.finished() {
            break;
        }
    }
    say(&progress.summary());
    if progress.all_up() {
        exit::OK
    } else {
        exit::REFUSED
    }
}

/// Shows the progress: on a terminal the rows redrawn in place, else the changed rows as
/// lines.
fn show(
    progress: &Progress,
    changes: &[String],
    terminal: bool,
    colour: bool,
    drawn: &mut usize,
    frame: usize,
) {
    if !terminal {
        for change in changes {
            say(change);
        }
        return;
    }
    let width = crossterm::terminal::size().map_or(80, |(w, _)| w as usize) - 1;
    let rows = progress.render(epoch_now(), frame, colour, width);
    let mut out = String::new();
    if *drawn > 0 {
        // Back to the first row, then each row over the old one.
        out += &format!("\x1b[{}A", *drawn);
    }
    for row in &rows {
        out += "\r\x1b[2K";
        out += row;
        out += "\n";
    }
    *drawn = rows.len();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
}

pub async fn down(args: DownArgs) -> i32 {
    let socket = match ctl::socket_or_exit(&args.socket) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let report = match client::request(&socket, Request::Status { line: None }).await {
        Ok(Response::Status(r)) => r,
        Ok(Response::Error { message }) => return ctl::report_refusal(&message),
        Ok(_) => {
            eprintln!("eqlplus-dialer: expected a status report");
            return exit::TROUBLE;
        }
        Err(ClientError::NotRunning { .. }) => {
            say("eqlplus-dialer is not running");
            return exit::OK;
        }
        Err(e) => return ctl::report_error(&e),
    };
    let deadline = Instant::now() + args.timeout;
    let daemon = report.daemon.clone();
    match daemon.as_ref().map(|d| d.started_by) {
        Some(StartedBy::Up) => {
            let pid = daemon.as_ref().map_or(0, |d| d.pid);
            match client::request(&socket, Request::Shutdown).await {
                Ok(Response::Ok { message }) => say(&message),
                Ok(Response::Error { message }) => return ctl::report_refusal(&message),
                Ok(_) => {}
                Err(e) => return ctl::report_error(&e),
            }
            stopped(
                &socket,
                deadline,
                &format!("the daemon (pid {pid})"),
                Some(pid),
            )
            .await
        }
        Some(StartedBy::Systemd) if !systemd_unit_enabled().await => {
            say(&format!("stopping the service: systemctl stop {UNIT}"));
            match systemctl(&["stop", UNIT]).await {
                Ok(_) => stopped(&socket, deadline, "the service", None).await,
                Err(e) => {
                    eprintln!("eqlplus-dialer: {e}");
                    exit::REFUSED
                }
            }
        }
        started_by => {
            let names: Vec<String> = report.lines.iter().map(|l| l.name.clone()).collect();
            if !names.is_empty() {
                match client::request(&socket, Request::Hangup { lines: names }).await {
                    Ok(Response::Ok { message }) => say(&message),
                    Ok(Response::Error { message }) => return ctl::report_refusal(&message),
                    Ok(_) => {}
                    Err(e) => return ctl::report_error(&e),
                }
            }
            let code = lines_down(&socket, deadline).await;
            if code == exit::OK {
                say(match started_by {
                    Some(StartedBy::Systemd) => {
                        "the service keeps running (enabled at boot); its lines stay down until \
                         `eqlplus-dialer up` (systemctl stop eqlplus-dialer stops it)"
                    }
                    _ => {
                        "the daemon keeps running (it was not started by `up`); its lines stay \
                         down until `eqlplus-dialer up`"
                    }
                });
            }
            code
        }
    }
}

/// Waits until nothing answers on `socket` any more and the process `pid` (if known) has
/// exited: the socket goes first, then the lines hang up and the kernel state goes.
async fn stopped(socket: &Path, deadline: Instant, what: &str, pid: Option<u32>) -> i32 {
    loop {
        match client::request(socket, Request::Status { line: None }).await {
            Err(ClientError::NotRunning { .. }) if pid.is_none_or(process_gone) => {
                say(&format!("{what} stopped"));
                return exit::OK;
            }
            _ if Instant::now() >= deadline => {
                eprintln!("eqlplus-dialer: {what} is still running");
                return exit::REFUSED;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether process `pid` has exited (no such process, or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the first field after the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
    }
}

/// Waits until every line is down (or disabled).
async fn lines_down(socket: &Path, deadline: Instant) -> i32 {
    use crate::control::LineState;
    loop {
        let report = match client::request(socket, Request::Status { line: None }).await {
            Ok(Response::Status(r)) => r,
            Ok(_) => return exit::TROUBLE,
            Err(e) => return ctl::report_error(&e),
        };
        let busy: Vec<&str> = report
            .lines
            .iter()
            .filter(|l| !matches!(l.state, LineState::Down | LineState::Disabled))
            .map(|l| l.name.as_str())
            .collect();
        if busy.is_empty() {
            say("all lines down");
            return exit::OK;
        }
        if Instant::now() >= deadline {
            eprintln!("eqlplus-dialer: still not down: {}", busy.join(", "));
            return exit::REFUSED;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
