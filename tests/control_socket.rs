//! The control socket over a real Unix socket in a temporary directory: a fake daemon
//! (`ControlHandler`) behind `serve`, talked to by the library client, by raw bytes, and by the
//! `eqlplus-dialer` binary (as root, also as another user).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eqlplus_dialer::control::canned::CannedHandler;
use eqlplus_dialer::control::protocol::MAX_REQUEST_BYTES;
use eqlplus_dialer::control::{
    ClientError, ControlHandler, LineStatus, Request, Response, ServerOptions, StatusReport,
    client, serve, serve_with,
};

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

/// Whether tests that switch users can run: as non-root they are skipped, saying so; with
/// `EQLPLUS_REQUIRE_ROOT=1` (CI) they fail instead.
fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("EQLPLUS_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test} needs root (EQLPLUS_REQUIRE_ROOT=1)");
    }
    eprintln!("skipped: {test} needs root (runs the client as another user)");
    false
}

/// A fake daemon that records what it was asked and answers predictably.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<Request>>,
    statuses: AtomicUsize,
    /// Lines in each status report (to make reports big).
    lines: usize,
    /// A `last_error` this long on every line.
    error_len: usize,
}

impl Recorder {
    fn with_lines(lines: usize, error_len: usize) -> Recorder {
        Recorder {
            lines,
            error_len,
            ..Recorder::default()
        }
    }

    fn report(&self, only: Option<&str>) -> StatusReport {
        let n = self.statuses.fetch_add(1, Ordering::SeqCst) as u64;
        let lines = (0..self.lines.max(2))
            .map(|i| LineStatus {
                name: format!("ttyS{i}"),
                state: "up".into(),
                rx_bytes: n * 1000,
                rx_rate: 1000.0,
                share: 1.0 / self.lines.max(2) as f64,
                last_error: (self.error_len > 0).then(|| "e".repeat(self.error_len)),
                ..LineStatus::default()
            })
            .filter(|l| only.is_none_or(|o| o == l.name))
            .collect();
        StatusReport {
            time: n as f64,
            policy: "round-robin".into(),
            lines,
            daemon: None,
        }
    }

    fn asked(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl ControlHandler for Recorder {
    async fn handle(&self, request: Request) -> Response {
        self.requests.lock().unwrap().push(request.clone());
        match request {
            Request::Up { lines } => Response::Ok {
                message: format!("up: {}", lines.join(",")),
            },
            Request::Hangup { lines } if lines.iter().any(|l| l == "ttyS9") => Response::Error {
                message: "no line named ttyS9".into(),
            },
            Request::Hangup { lines } => Response::Ok {
                message: format!("hung up {}", lines.join(",")),
            },
            Request::Status { line } => Response::Status(self.report(line.as_deref())),
            Request::Reload => Response::Ok {
                message: "reloaded".into(),
            },
            Request::Subscribe { .. } => panic!("subscribe must not reach the handler"),
            Request::Shutdown => Response::Ok {
                message: "stopping".into(),
            },
        }
    }
}

/// Whether the handler stops being asked for status reports (no new one for 500 ms) within
/// 10 s: a server polling for a client that left would go on forever.
async fn polling_stops(handler: &Recorder) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = handler.statuses.load(Ordering::SeqCst);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = handler.statuses.load(Ordering::SeqCst);
        if now == last {
            return true;
        }
        last = now;
    }
    false
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run").join("control.sock")
}

/// Sends raw bytes on a new connection and reads `n` response lines.
fn raw_exchange(stream: &mut StdStream, bytes: &[u8], n: usize) -> Vec<String> {
    stream.write_all(bytes).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (0..n)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line
        })
        .collect()
}

fn error_message(line: &str) -> String {
    match serde_json::from_str::<Response>(line) {
        Ok(Response::Error { message }) => message,
        other => panic!("expected an error response, got {other:?} from {line:?}"),
    }
}

fn connect_blocking(path: &Path) -> StdStream {
    let s = StdStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[tokio::test]
async fn every_request_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let handler = Arc::new(Recorder::default());
    let server = serve(&path, None, handler.clone()).await.unwrap();
    // The directory was created 0755, the socket is 0660.
    let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode();
    assert_eq!(dir_mode & 0o7777, 0o755);
    let sock_mode = std::fs::symlink_metadata(&path).unwrap().mode();
    assert_eq!(sock_mode & 0o7777, 0o660);

    let up = client::request(
        &path,
        Request::Up {
            lines: vec!["ttyS0".into(), "ttyS1".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        up,
        Response::Ok {
            message: "up: ttyS0,ttyS1".into()
        }
    );
    let hangup = client::request(
        &path,
        Request::Hangup {
            lines: vec!["ttyS9".into()],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        hangup,
        Response::Error {
            message: "no line named ttyS9".into()
        }
    );
    let Response::Status(one) = client::request(
        &path,
        Request::Status {
            line: Some("ttyS1".into()),
        },
    )
    .await
    .unwrap() else {
        panic!("expected a status report");
    };
    assert_eq!(one.lines.len(), 1);
    assert_eq!(one.lines[0].name, "ttyS1");
    let reload = client::request(&path, Request::Reload).await.unwrap();
    assert_eq!(
        reload,
        Response::Ok {
            message: "reloaded".into()
        }
    );
    // Several requests on one connection, answered in order.
    let mut c = eqlplus_dialer::control::Client::connect(&path)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            c.request(Request::Status { line: None }).await.unwrap(),
            Response::Status(_)
        ));
    }
    assert_eq!(
        handler.asked()[..4],
        [
            Request::Up {
                lines: vec!["ttyS0".into(), "ttyS1".into()]
            },
            Request::Hangup {
                lines: vec!["ttyS9".into()]
            },
            Request::Status {
                line: Some("ttyS1".into())
            },
            Request::Reload,
        ]
    );

    server.shutdown().await;
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "socket file left behind"
    );
    let gone = client::request(&path, Request::Reload).await.unwrap_err();
    assert!(matches!(gone, ClientError::NotRunning { .. }), "{gone:?}");
    assert_eq!(
        gone.to_string(),
        format!(
            "eqlplus-dialer is not running (no control socket at {})",
            path.display()
        )
    );
}

#[tokio::test]
async fn subscribe_streams_reports_until_the_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let handler = Arc::new(Recorder::default());
    let _server = serve(&path, None, handler.clone()).await.unwrap();

    // 1 ms is raised to the 100 ms minimum.
    let started = Instant::now();
    let mut sub = client::subscribe(&path, Duration::from_millis(1))
        .await
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..4 {
        match sub.next().await {
            Some(Ok(Response::Status(report))) => times.push(report.time),
            other => panic!("expected a status report, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290),
        "4 reports in {elapsed:?}: interval not clamped to 100 ms"
    );
    // Each report is a fresh one.
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(
        handler
            .asked()
            .iter()
            .all(|r| *r == Request::Status { line: None })
    );

    drop(sub);
    // The server notices at its next write, at the latest.
    assert!(
        polling_stops(&handler).await,
        "the server kept polling for a client that left"
    );
}

#[tokio::test]
async fn subscribe_as_a_stream() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let _server = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let sub = client::subscribe(&path, Duration::from_millis(100))
        .await
        .unwrap();
    let reports: Vec<_> = sub.into_stream().take(3).collect().await;
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| matches!(r, Ok(Response::Status(_)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let _server = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = connect_blocking(&p);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"{\"version\" 1}\n".to_vec(),
                "bad request: expected `:` at line 1 column 12",
            ),
            (
                b"hello\n".to_vec(),
                "bad request: expected value at line 1 column 1",
            ),
            (
                br#"{"version":2,"cmd":"status"}"#.to_vec(),
                "unsupported protocol version 2: this daemon speaks version 1",
            ),
            (
                br#"{"cmd":"status"}"#.to_vec(),
                "bad request: missing field `version`",
            ),
            (
                br#"{"version":1,"cmd":"explode"}"#.to_vec(),
                "bad request: unknown variant `explode`, expected one of",
            ),
            (
                br#"{"version":1,"cmd":"status","colour":"blue"}"#.to_vec(),
                "bad request: unknown field `colour`",
            ),
            (b"42\n".to_vec(), "bad request: expected a JSON object"),
            (
                b"\xff\xfe\x00\x01garbage\x80\n".to_vec(),
                "bad request: invalid UTF-8 at byte 0",
            ),
            (
                b"\x00\x01\x02\x03\n".to_vec(),
                "bad request: expected value at line 1 column 1",
            ),
        ];
        for (bytes, expected) in cases {
            let mut bytes = bytes;
            if bytes.last() != Some(&b'\n') {
                bytes.push(b'\n');
            }
            let line = raw_exchange(&mut s, &bytes, 1).remove(0);
            let message = error_message(&line);
            assert!(
                message.starts_with(expected),
                "{:?}: got {message:?}, expected {expected:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // Over-long: one error for the whole line, then the connection still works.
        let mut long = vec![b'x'; MAX_REQUEST_BYTES + 10];
        long.extend_from_slice(b"\n{\"version\":1,\"cmd\":\"reload\"}\n");
        let lines = raw_exchange(&mut s, &long, 2);
        assert!(
            error_message(&lines[0]).starts_with("bad request: line longer than 65536 bytes"),
            "{}",
            lines[0]
        );
        assert_eq!(
            serde_json::from_str::<Response>(&lines[1]).unwrap(),
            Response::Ok {
                message: "reloaded".into()
            }
        );
        // Blank lines are skipped; a good request after all that is answered.
        let lines = raw_exchange(&mut s, b"\n\r\n{\"version\":1,\"cmd\":\"status\"}\r\n", 1);
        assert!(matches!(
            serde_json::from_str::<Response>(&lines[0]).unwrap(),
            Response::Status(_)
        ));
        // A last request without a newline, then EOF: still answered.
        let mut s2 = connect_blocking(&p);
        s2.write_all(br#"{"version":1,"cmd":"reload"}"#).unwrap();
        s2.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        s2.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "{\"result\":\"ok\",\"message\":\"reloaded\"}\n");
    })
    .await
    .unwrap();
    // Other clients were never disturbed.
    assert!(matches!(
        client::request(&path, Request::Status { line: None })
            .await
            .unwrap(),
        Response::Status(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_dropped_and_do_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let options = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let _server = serve_with(&path, options, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let silent = connect_blocking(&path);
    // Meanwhile others are served.
    assert!(matches!(
        client::request(&path, Request::Reload).await.unwrap(),
        Response::Ok { .. }
    ));
    let started = Instant::now();
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        (&silent).read_to_string(&mut rest).unwrap();
        rest
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        error_message(&rest).starts_with("timeout: no request within 0.3s"),
        "{rest}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let options = ServerOptions {
        write_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    // ~100 KiB per report: the socket buffers fill after a few.
    let handler = Arc::new(Recorder::with_lines(100, 1000));
    let _server = serve_with(&path, options, handler.clone()).await.unwrap();
    let mut stuck = connect_blocking(&path);
    stuck
        .write_all(b"{\"version\":1,\"cmd\":\"subscribe\",\"interval_ms\":100}\n")
        .unwrap();
    // While it is stuck, others get their answers promptly.
    for _ in 0..5 {
        let started = Instant::now();
        let r = client::request(
            &path,
            Request::Status {
                line: Some("ttyS3".into()),
            },
        )
        .await
        .unwrap();
        assert!(matches!(r, Response::Status(_)));
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stuck client was dropped: the polling for it stopped.
    assert!(
        polling_stops(&handler).await,
        "still polling for a client that stopped reading"
    );
    // Draining it ends in EOF, not a hang.
    let drained = tokio::task::spawn_blocking(move || {
        let mut sink = Vec::new();
        stuck.read_to_end(&mut sink).map(|_| sink.len())
    })
    .await
    .unwrap();
    assert!(drained.is_ok(), "{drained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_limit_are_told_the_daemon_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let options = ServerOptions {
        max_clients: 2,
        ..ServerOptions::default()
    };
    let _server = serve_with(&path, options, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let a = connect_blocking(&path);
    let b = connect_blocking(&path);
    // Make sure both were accepted and hold their slots.
    for s in [&a, &b] {
        let mut s = s.try_clone().unwrap();
        let line = raw_exchange(&mut s, b"{\"version\":1,\"cmd\":\"reload\"}\n", 1);
        assert!(line[0].contains("reloaded"));
    }
    let third = client::request(&path, Request::Reload).await.unwrap();
    match third {
        Response::Error { message } => assert!(message.starts_with("busy: 2 clients"), "{message}"),
        other => panic!("expected busy, got {other:?}"),
    }
    drop(a);
    // The slot frees once the server sees the close.
    let started = Instant::now();
    loop {
        match client::request(&path, Request::Reload).await.unwrap() {
            Response::Ok { .. } => break,
            _ if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("slot never freed: {other:?}"),
        }
    }
    drop(b);
}

#[tokio::test]
async fn stale_socket_is_replaced_live_daemon_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A crashed daemon's socket: the file is there, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path).is_ok());
    let stale = client::request(&path, Request::Reload).await.unwrap_err();
    assert!(matches!(stale, ClientError::NotRunning { .. }), "{stale:?}");

    let first = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap();
    assert!(matches!(
        client::request(&path, Request::Reload).await.unwrap(),
        Response::Ok { .. }
    ));

    let second = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap_err();
    assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        second
            .to_string()
            .starts_with("another eqlplus-dialer daemon is running"),
        "{second}"
    );
    // The first one is untouched and still serving.
    assert!(matches!(
        client::request(&path, Request::Reload).await.unwrap(),
        Response::Ok { .. }
    ));
    drop(first);
    assert!(std::fs::symlink_metadata(&path).is_err());

    // Something that is not a socket is never removed.
    std::fs::write(&path, "precious").unwrap();
    let e = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn a_replaced_socket_is_not_removed_by_the_old_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let old = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap();
    // Someone removed the old socket and a new server took the path.
    std::fs::remove_file(&path).unwrap();
    let new = serve(&path, None, Arc::new(Recorder::default()))
        .await
        .unwrap();
    drop(old);
    assert!(matches!(
        client::request(&path, Request::Reload).await.unwrap(),
        Response::Ok { .. }
    ));
    drop(new);
}

#[tokio::test]
async fn group_of_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let e = serve(
        &path,
        Some("no-such-group-eqlplus"),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .starts_with("unknown group 'no-such-group-eqlplus' ([control] group)"),
        "{e}"
    );
    assert!(
        !path.parent().unwrap().exists(),
        "created files before failing"
    );
    if !require_root("group_of_the_socket") {
        return;
    }
    let Some(users) = nix::unistd::Group::from_name("users").unwrap() else {
        eprintln!("skipped: no group 'users' on this machine");
        return;
    };
    let _server = serve(&path, Some("users"), Arc::new(Recorder::default()))
        .await
        .unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.gid(), users.gid.as_raw());
    assert_eq!(meta.mode() & 0o7777, 0o660);
}

/// `eqlplus-dialer ARGS…` with `--socket`, optionally as another user.
fn cli(socket: &Path, args: &[&str], user: Option<(u32, u32, Vec<u32>)>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("EQLPLUS_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some((uid, gid, groups)) = user {
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let groups: Vec<libc::gid_t> = groups.clone();
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

async fn cli_async(socket: &Path, args: &[&str], user: Option<(u32, u32, Vec<u32>)>) -> Output {
    let socket = socket.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&socket, &args, user)
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_watch_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let _server = serve(&path, None, Arc::new(CannedHandler::new()))
        .await
        .unwrap();

    let out = cli_async(&path, &["status", "--json"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: StatusReport = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = report.lines.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ttyS0", "ttyS1", "ttyUSB0"]);

    let out = cli_async(&path, &["status"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("policy weighted, 2 of 3 lines up"),
        "{stdout}"
    );
    assert!(stdout.contains("\nLINE "), "{stdout}");
    assert!(stdout.contains("dial-chat: BUSY"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "colour in a pipe: {stdout:?}");

    let out = cli_async(&path, &["status", "ttyS1"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\nttyS1:\n  device      /dev/ttyS1\n"));

    let out = cli_async(&path, &["status", "ttyS7"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "eqlplus-dialer: no line named ttyS7\n");

    let started = Instant::now();
    let out = cli_async(
        &path,
        &["watch", "--json", "--count", "3", "--interval", "100ms"],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let reports: Vec<StatusReport> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 3, "{stdout}");
    assert!(
        reports
            .windows(2)
            .all(|w| w[0].lines[0].rx_bytes < w[1].lines[0].rx_bytes)
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    let out = cli_async(&path, &["watch", "-n", "2", "-i", "100ms"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        assert!(line.contains("  ttyS0 up rx "), "{line}");
        assert!(line.contains("| ttyUSB0 holdoff | total rx "), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let _server = serve(&path, None, Arc::new(CannedHandler::new()))
        .await
        .unwrap();
    let socket = path.clone();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["watch", "--interval", "100ms", "--socket"])
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one line, then close the pipe, like `| head -1`.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(first.contains("ttyS0"), "{first}");
        drop(out);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (child.wait().unwrap(), stderr)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_hangup_reload_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let handler = Arc::new(Recorder::default());
    let server = serve(&path, None, handler.clone()).await.unwrap();

    // `up --no-wait` returns with the daemon's answer (`up` follows the lines: see
    // tests/up_down.rs).
    let out = cli_async(&path, &["up", "--no-wait"], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "up: \n");
    let out = cli_async(&path, &["up", "--no-wait", "ttyS0", "ttyS1"], None).await;
    assert_eq!(text(&out.stdout), "up: ttyS0,ttyS1\n");
    let out = cli_async(&path, &["hangup", "ttyS1"], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "hung up ttyS1\n");
    let out = cli_async(&path, &["hangup", "ttyS9"], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "eqlplus-dialer: no line named ttyS9\n");
    let out = cli_async(&path, &["reload"], None).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "reloaded\n");
    // hangup needs a line.
    let out = cli_async(&path, &["hangup"], None).await;
    assert_eq!(out.status.code(), Some(2));
    let asked: Vec<Request> = handler
        .asked()
        .into_iter()
        .filter(|r| !matches!(r, Request::Status { .. }))
        .collect();
    assert_eq!(
        asked,
        [
            Request::Up { lines: vec![] },
            Request::Up {
                lines: vec!["ttyS0".into(), "ttyS1".into()]
            },
            Request::Hangup {
                lines: vec!["ttyS1".into()]
            },
            Request::Hangup {
                lines: vec!["ttyS9".into()]
            },
            Request::Reload,
        ]
    );

    server.shutdown().await;
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["watch", "-n", "1"],
        &["reload"],
    ] {
        let out = cli_async(&path, args, None).await;
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "eqlplus-dialer: eqlplus-dialer is not running (no control socket at {})\n",
                path.display()
            )
        );
    }
}

#[test]
fn socket_path_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eqlplus-dialer.toml");
    let socket = dir.path().join("from-config.sock");
    std::fs::write(
        &config,
        format!("[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .env_remove("EQLPLUS_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains(&format!("no control socket at {}", socket.display())),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(dir.path().join("missing.toml"))
        .env_remove("EQLPLUS_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn help_completions_and_man_page() {
    let out = Command::new(BIN)
        .args(["hangup", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("Exit status:"), "{help}");
    assert!(help.contains("3  the daemon is not running"), "{help}");
    assert!(help.contains("--socket <PATH>"), "{help}");
    let out = Command::new(BIN).args(["up", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("starts one: the systemd service"), "{help}");
    assert!(help.contains("--no-wait"), "{help}");
    assert!(help.contains("--timeout <TIMEOUT>"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let script = text(&out.stdout);
        assert!(script.contains("eqlplus-dialer"), "{shell}");
        assert!(script.contains("hangup"), "{shell}");
        assert!(
            !script.contains("control-test-server"),
            "{shell}: hidden command"
        );
    }
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH eqlplus-dialer 8"),
        "{page}"
    );
    assert!(page.contains("watch"), "{page}");
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_hidden_test_server_serves_canned_reports() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let mut child = Command::new(BIN)
        .args(["control-test-server", "--socket"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, format!("listening on {}\n", path.display()));
    let status = cli(&path, &["status", "--json"], None);
    assert_eq!(status.status.code(), Some(0));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "socket left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_by_peer_credentials() {
    if !require_root("permissions_by_peer_credentials") {
        return;
    }
    let Some(users) = nix::unistd::Group::from_name("users").unwrap() else {
        eprintln!("skipped: no group 'users' on this machine");
        return;
    };
    let users = users.gid.as_raw();
    let nobody = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = socket_in(&dir);
    let handler = Arc::new(CannedHandler::new());

    // No group: the socket is root's, 0660; nobody cannot even connect.
    let server = serve(&path, None, handler.clone()).await.unwrap();
    let out = cli_async(&path, &["status"], Some((nobody, nobody, vec![]))).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with(&format!(
            "eqlplus-dialer: permission denied on {}: only root and members",
            path.display()
        )),
        "{}",
        text(&out.stderr)
    );
    // Loosened by hand: nobody may read the status but not act.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = cli_async(&path, &["status", "--json"], Some((nobody, nobody, vec![]))).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = cli_async(&path, &["hangup", "ttyS0"], Some((nobody, nobody, vec![]))).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).starts_with("eqlplus-dialer: permission denied: uid 65534 (pid "),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("only root may up, hangup or reload"));
    drop(server);

    // With a group: members act, through their primary or a supplementary group.
    let _server = serve(&path, Some("users"), handler.clone()).await.unwrap();
    let out = cli_async(&path, &["hangup", "ttyS1"], Some((nobody, users, vec![]))).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hung up ttyS1\n");
    let out = cli_async(
        &path,
        &["up", "--no-wait", "ttyS1"],
        Some((nobody, nobody, vec![users])),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "brought up ttyS1\n");
    // A non-member is refused at the socket, and (socket loosened) by the server.
    let out = cli_async(&path, &["reload"], Some((nobody, nobody, vec![]))).await;
    assert_eq!(out.status.code(), Some(4));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = cli_async(&path, &["reload"], Some((nobody, nobody, vec![]))).await;
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("is neither root nor a member of group 'users'"),
        "{}",
        text(&out.stderr)
    );
    // Root always may.
    let out = cli_async(&path, &["reload"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A daemon with bugs: `reload` panics, `up` never answers.
struct Buggy;

impl ControlHandler for Buggy {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Reload => panic!("reload exploded"),
            Request::Up { .. } => std::future::pending().await,
            _ => Response::Status(StatusReport::default()),
        }
    }
}

#[tokio::test]
async fn a_buggy_handler_is_answered_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let options = ServerOptions {
        handler_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let _server = serve_with(&path, options, Arc::new(Buggy)).await.unwrap();
    let mut c = eqlplus_dialer::control::Client::connect(&path)
        .await
        .unwrap();
    assert_eq!(
        c.request(Request::Reload).await.unwrap(),
        Response::Error {
            message: "internal error: the daemon failed while handling this request".into()
        }
    );
    assert_eq!(
        c.request(Request::Up { lines: vec![] }).await.unwrap(),
        Response::Error {
            message: "internal error: the daemon did not answer within 0.2s".into()
        }
    );
    // The same connection still works.
    assert!(matches!(
        c.request(Request::Status { line: None }).await.unwrap(),
        Response::Status(_)
    ));
    // An absurd interval is clamped, not a crash.
    let mut sub = c.subscribe(Duration::from_millis(u64::MAX)).await.unwrap();
    assert!(matches!(sub.next().await, Some(Ok(Response::Status(_)))));
    drop(sub);
    assert!(matches!(
        client::request(&path, Request::Status { line: None })
            .await
            .unwrap(),
        Response::Status(_)
    ));
}

/// `n` connections to `path` opened by a child process running as `uid` (gid `uid`, no
/// supplementary groups) and handed back over `SCM_RIGHTS`: the server sees `uid` in
/// `SO_PEERCRED`, the test holds and drives the sockets. Needs root.
fn connect_as(path: &Path, uid: u32, n: usize) -> Vec<StdStream> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    const FD_MSG_SPACE: usize = 64;
    let mut pair = [0 as libc::c_int; 2];
    // SAFETY: socketpair fills the two descriptors, which we own from here on.
    let (ours, theirs) = unsafe {
        assert_eq!(
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr()
            ),
            0
        );
        (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1]))
    };
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let chan = theirs.as_raw_fd();
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null());
    // SAFETY: only async-signal-safe system calls between fork and exec, on stack memory.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return fail();
            }
            for _ in 0..n {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if fd < 0 {
                    return fail();
                }
                if libc::connect(
                    fd,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                ) != 0
                {
                    return fail();
                }
                let mut byte = [0u8; 1];
                let mut iov = libc::iovec {
                    iov_base: byte.as_mut_ptr().cast(),
                    iov_len: 1,
                };
                let mut control = [0u64; FD_MSG_SPACE / 8];
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen =
                    libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
                let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
                if libc::sendmsg(chan, &raw const msg, 0) != 1 {
                    return fail();
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "{status}");
    drop(theirs);
    (0..n)
        .map(|_| {
            let mut byte = [0u8; 1];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let mut control = [0u64; FD_MSG_SPACE / 8];
            // SAFETY: msghdr points at live stack buffers; the received descriptor is ours.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = FD_MSG_SPACE as _;
                let got = libc::recvmsg(ours.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC);
                assert_eq!(got, 1, "{}", std::io::Error::last_os_error());
                let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
                assert!(!cmsg.is_null());
                assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                let stream = StdStream::from_raw_fd(fd);
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream
            }
        })
        .collect()
}

/// Sends `subscribe` (100 ms) on each stream and returns each one's first answer line.
fn subscribe_all(streams: &[StdStream]) -> Vec<String> {
    let request = b"{\"version\":1,\"cmd\":\"subscribe\",\"interval_ms\":100}\n";
    for mut s in streams {
        // A refused client may already be closed: its answer is still there to read.
        let _ = s.write_all(request);
    }
    streams.iter().map(read_one_line).collect()
}

/// One line (with its newline; empty at the end), read a byte at a time so that nothing
/// after it is taken from the socket.
fn read_one_line(mut s: &StdStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while s.read(&mut byte).unwrap() == 1 {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    String::from_utf8(line).unwrap()
}

fn is_status(line: &str) -> bool {
    matches!(
        serde_json::from_str::<Response>(line),
        Ok(Response::Status(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_crowds_cannot_lock_root_out() {
    if !require_root("read_only_crowds_cannot_lock_root_out") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = socket_in(&dir);
    let _server = serve(&path, None, Arc::new(CannedHandler::new()))
        .await
        .unwrap();
    // Loosened by hand: anyone may connect (and only read).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();

    // 72 subscribers from one read-only user: 8 get in, the rest are told why not.
    let p = path.clone();
    let (crowd, answers) = tokio::task::spawn_blocking(move || {
        let crowd = connect_as(&p, 65534, 72);
        let answers = subscribe_all(&crowd);
        (crowd, answers)
    })
    .await
    .unwrap();
    let served = answers.iter().filter(|l| is_status(l)).count();
    assert_eq!(served, 8, "{answers:?}");
    for line in answers.iter().filter(|l| !is_status(l)) {
        assert_eq!(
            error_message(line),
            "busy: uid 65534 has 8 connections already, the most one user may have; close one \
             and try again"
        );
    }
    // Another user fills the read-only slots; a third one finds them taken.
    let p = path.clone();
    let (more, answers) = tokio::task::spawn_blocking(move || {
        let mut more = connect_as(&p, 65533, 8);
        more.extend(connect_as(&p, 65532, 2));
        let answers = subscribe_all(&more);
        (more, answers)
    })
    .await
    .unwrap();
    assert!(answers[..8].iter().all(|l| is_status(l)), "{answers:?}");
    for line in &answers[8..] {
        assert!(
            error_message(line).starts_with("busy: 16 read-only clients are connected already"),
            "{line}"
        );
    }
    // Root is answered, by the library and through the binary.
    let status = client::request(&path, Request::Status { line: None })
        .await
        .unwrap();
    assert!(matches!(status, Response::Status(_)), "{status:?}");
    let out = cli_async(&path, &["status", "--json"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    drop((crowd, more));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_makes_room_for_root_by_closing_a_read_only_subscriber() {
    if !require_root("a_full_server_makes_room_for_root_by_closing_a_read_only_subscriber") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = socket_in(&dir);
    let options = ServerOptions {
        max_clients: 4,
        admin_reserve: 1,
        max_per_user: 2,
        max_read_only: 3,
        ..ServerOptions::default()
    };
    let _server = serve_with(&path, options, Arc::new(CannedHandler::new()))
        .await
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();

    // uid 65533 subscribes first, then uid 65534 twice: every read-only slot is taken.
    let p = path.clone();
    let (held, refused) = tokio::task::spawn_blocking(move || {
        let mut held = connect_as(&p, 65533, 1);
        held.extend(connect_as(&p, 65534, 2));
        assert!(subscribe_all(&held).iter().all(|l| is_status(l)));
        let refused = subscribe_all(&connect_as(&p, 65534, 1))
            .into_iter()
            .chain(subscribe_all(&connect_as(&p, 65532, 1)))
            .map(|l| error_message(&l))
            .collect::<Vec<_>>();
        (held, refused)
    })
    .await
    .unwrap();
    assert!(
        refused[0].starts_with("busy: uid 65534 has 2 connections already"),
        "{refused:?}"
    );
    assert!(
        refused[1].starts_with("busy: 3 read-only clients are connected already"),
        "{refused:?}"
    );

    // Root takes the reserved slot, then (all four taken) the slot of uid 65534's older
    // subscriber — uid 65534 holds the most read-only slots.
    let mut root = eqlplus_dialer::control::Client::connect(&path)
        .await
        .unwrap();
    let first = root.request(Request::Status { line: None }).await.unwrap();
    assert!(matches!(first, Response::Status(_)), "{first:?}");
    let second = client::request(&path, Request::Status { line: None })
        .await
        .unwrap();
    assert!(matches!(second, Response::Status(_)), "{second:?}");

    let (evicted, kept) = tokio::task::spawn_blocking(move || {
        // Everything uid 65534's first subscriber got, to the end of the connection.
        let evicted: Vec<String> = std::iter::from_fn(|| Some(read_one_line(&held[1])))
            .take_while(|l| !l.is_empty())
            .collect();
        let kept: Vec<String> = [&held[0], &held[2]]
            .iter()
            .flat_map(|s| (0..3).map(|_| read_one_line(s)))
            .collect();
        (evicted, kept)
    })
    .await
    .unwrap();
    // It was told why, then closed; the others go on receiving reports.
    let (last, before) = evicted.split_last().unwrap();
    assert_eq!(
        error_message(last),
        "busy: making room for an administrator; reconnect later"
    );
    assert!(before.iter().all(|l| is_status(l)), "{before:?}");
    assert!(kept.iter().all(|l| is_status(l)), "{kept:?}");
    drop(root);
}
