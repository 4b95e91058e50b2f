//! Chat scripts over real ptys against the simulated modem: the serial layer, the chat driver
//! and the shipped scripts together.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eqlplus_dialer::chat::{ChatEngine, ChatOptions, Failure, Outcome, Script, run_chat};
use eqlplus_dialer::serial::{HangupTiming, LockError, SerialConfig, SerialError, SerialPort};
use eqlplus_dialer::sim::{ModemConfig, SimModem, parse_answers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const GUARD: Duration = Duration::from_millis(200);

fn serial_config(lock_dir: &Path) -> SerialConfig {
    SerialConfig {
        lock_dir: Some(lock_dir.to_path_buf()),
        hangup: HangupTiming {
            dtr_drop: Duration::from_millis(500),
            guard: GUARD,
        },
        ..SerialConfig::default()
    }
}

fn modem(answers: &str) -> ModemConfig {
    ModemConfig {
        answers: parse_answers(answers).unwrap(),
        guard: GUARD,
        dial_delay: Duration::from_millis(50),
        ..ModemConfig::default()
    }
}

fn shipped(name: &str) -> Script {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("chat-scripts")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    Script::parse(&text, &path.display().to_string()).unwrap()
}

async fn chat(port: &SerialPort, script: Script, options: ChatOptions) -> (Outcome, Vec<String>) {
    let mut engine = ChatEngine::new(script, options, Instant::now());
    let mut log = Vec::new();
    let outcome = timeout(
        Duration::from_secs(20),
        run_chat(port, &mut engine, &mut |a| log.push(format!("{a:?}"))),
    )
    .await
    .expect("chat finished");
    (outcome, log)
}

fn phone() -> ChatOptions {
    ChatOptions {
        phone: Some("5551234".into()),
        ..ChatOptions::default()
    }
}

#[tokio::test]
async fn hayes_script_connects_and_data_flows_both_ways() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, mut calls) = SimModem::spawn(modem("connect:57600")).unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    assert!(!port.has_modem_lines(), "a pty has no modem control lines");
    assert_eq!(port.carrier(), None);
    let (outcome, log) = chat(&port, shipped("hayes-dialup.chat"), phone()).await;
    let Outcome::Success(s) = outcome else {
        panic!("{outcome:?} {log:#?}")
    };
    assert_eq!(s.connect.as_deref(), Some("CONNECT 57600"));
    assert_eq!(s.speed, Some(57600));
    assert_eq!(s.reports, vec!["CONNECT 57600".to_string()]);
    let mut call = calls.recv().await.unwrap();
    assert_eq!(call.number, "5551234");
    assert_eq!(call.speed, Some(57600));

    // The far end gets our bytes unchanged, and we get its bytes (no CR/LF mangling).
    let frame = b"\x7e\xff\x7d\x23\xc0\x21\x0a\x0d\x7e";
    port.write_all(frame).await.unwrap();
    let mut got = vec![0u8; frame.len() + 1];
    // The script's final '' sends a CR first.
    timeout(Duration::from_secs(5), call.stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[1..], frame);
    call.stream
        .write_all(b"\x7e\x0a\x0d\x00\x7e")
        .await
        .unwrap();
    let mut back = vec![0u8; 5];
    let mut n = 0;
    while n < back.len() {
        n += port.read(&mut back[n..]).await.unwrap();
    }
    assert_eq!(back, b"\x7e\x0a\x0d\x00\x7e");

    // Parked (the kernel's PPP has the line): out of the reactor, reads and writes refused
    // saying why, the descriptor kept; back in, what came meanwhile is read.
    let port = port.park();
    let refused = port.read(&mut back).await.unwrap_err();
    assert!(refused.to_string().contains("parked"), "{refused}");
    assert!(port.write_all(b"x").await.is_err());
    call.stream.write_all(b"later").await.unwrap();
    let port = port.park().unpark();
    let mut later = vec![0u8; 5];
    let mut n = 0;
    while n < later.len() {
        n += timeout(Duration::from_secs(5), port.read(&mut later[n..]))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(later, b"later");

    // Hangup on a pty: +++ escape and ATH0; the far end sees the call end; lock removed.
    let lock_file = locks
        .path()
        .join(eqlplus_dialer::serial::lock_file_name(sim.tty()));
    assert!(lock_file.exists());
    timeout(Duration::from_secs(5), port.hangup())
        .await
        .unwrap();
    assert!(!lock_file.exists(), "hangup releases the lock");
    let mut rest = Vec::new();
    timeout(Duration::from_secs(5), call.stream.read_to_end(&mut rest))
        .await
        .expect("far end sees the hangup")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_then_connect_on_redial() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(modem("busy,connect:33600")).unwrap();
    let config = serial_config(locks.path());

    let port = SerialPort::open(sim.tty(), &config).unwrap();
    let (outcome, _) = chat(&port, shipped("hayes-dialup.chat"), phone()).await;
    assert_eq!(
        outcome,
        Outcome::Failure(Failure::Aborted {
            index: 0,
            string: "BUSY".into()
        })
    );
    assert_eq!(outcome.exit_code(), 4);
    port.hangup().await;

    let port = SerialPort::open(sim.tty(), &config).unwrap();
    let (outcome, log) = chat(&port, shipped("hayes-dialup.chat"), phone()).await;
    let Outcome::Success(s) = outcome else {
        panic!("{outcome:?} {log:#?}")
    };
    assert_eq!(s.speed, Some(33600));
}

#[tokio::test]
async fn silent_modem_times_out_with_exit_3() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(modem("silent")).unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    let script = Script::parse("ABORT BUSY TIMEOUT 1 '' ATZ OK ATDT123 CONNECT ''", "t").unwrap();
    let started = Instant::now();
    let (outcome, _) = chat(&port, script, ChatOptions::default()).await;
    assert_eq!(
        outcome,
        Outcome::Failure(Failure::Timeout {
            expected: "CONNECT".into()
        })
    );
    assert_eq!(outcome.exit_code(), 3);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn no_carrier_and_no_dialtone_are_distinguished() {
    for (answer, index) in [("no-carrier", 1), ("no-dialtone", 2), ("no-answer", 3)] {
        let locks = tempfile::tempdir().unwrap();
        let (sim, _calls) = SimModem::spawn(modem(answer)).unwrap();
        let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
        let (outcome, _) = chat(&port, shipped("hayes-dialup.chat"), phone()).await;
        let Outcome::Failure(Failure::Aborted { index: got, .. }) = outcome else {
            panic!("{answer}: {outcome:?}")
        };
        assert_eq!(got, index, "{answer}");
    }
}

#[tokio::test]
async fn gsm_script_sends_apn_and_dials() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, mut calls) = SimModem::spawn(modem("connect")).unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    let options = ChatOptions {
        phone2: Some("internet.example".into()),
        ..ChatOptions::default()
    };
    let (outcome, log) = chat(&port, shipped("gsm-cellular.chat"), options).await;
    let Outcome::Success(s) = outcome else {
        panic!("{outcome:?} {log:#?}")
    };
    assert_eq!(s.connect.as_deref(), Some("CONNECT"));
    assert_eq!(s.speed, None);
    assert!(
        s.reports.iter().any(|r| r.starts_with("+CSQ: 21")),
        "{:?}",
        s.reports
    );
    assert_eq!(calls.recv().await.unwrap().number, "*99#");
    let log = log.join("\n");
    assert!(
        !log.contains("internet.example"),
        "the \\U value is never logged"
    );
}

#[tokio::test]
async fn direct_script_needs_no_modem() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(modem("connect")).unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    let (outcome, log) = chat(&port, shipped("direct.chat"), ChatOptions::default()).await;
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert!(log.iter().any(|l| l.contains("direct line")));
}

#[tokio::test]
async fn lock_held_by_a_live_process_is_refused_with_its_pid() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(modem("connect")).unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let lock_file = locks
        .path()
        .join(eqlplus_dialer::serial::lock_file_name(sim.tty()));
    std::fs::write(&lock_file, format!("{:10}\n", holder.id())).unwrap();

    let err = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap_err();
    match &err {
        SerialError::Lock(LockError::Busy { pid, .. }) => assert_eq!(*pid, holder.id() as i32),
        other => panic!("expected a busy lock, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("in use by process {}", holder.id())),
        "{err}"
    );
    assert!(lock_file.exists(), "another owner's lock is never removed");

    // Once the holder is gone, its lock is stale and is replaced.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    let content = std::fs::read_to_string(&lock_file).unwrap();
    assert_eq!(content, format!("{:10}\n", std::process::id()));
    drop(port);
    assert!(!lock_file.exists(), "closing the port releases the lock");
}

#[tokio::test]
async fn opening_a_non_tty_or_missing_device_fails_clearly() {
    let locks = tempfile::tempdir().unwrap();
    let config = serial_config(locks.path());
    let err = SerialPort::open(Path::new("/nonexistent/ttyS99"), &config).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot open /nonexistent/ttyS99"),
        "{err}"
    );
    let file = locks.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let err = SerialPort::open(&file, &config).unwrap_err();
    assert!(matches!(err, SerialError::NotATty { .. }), "{err}");
    // Failed opens leave no lock behind.
    assert_eq!(std::fs::read_dir(locks.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn stale_bytes_are_flushed_on_open_and_baud_is_settable() {
    let locks = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(modem("connect")).unwrap();
    let config = serial_config(locks.path());
    // A first opener that leaves the modem's answer unread.
    {
        let port = SerialPort::open(sim.tty(), &config).unwrap();
        port.write_all(b"ATI\r").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let port = SerialPort::open(
        sim.tty(),
        &SerialConfig {
            baud: 31_250,
            ..config
        },
    )
    .unwrap();
    port.set_baud(250_000, Default::default()).unwrap();
    let script = Script::parse("'' AT OK ''", "t").unwrap();
    let (outcome, log) = chat(&port, script, ChatOptions::default()).await;
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert!(
        !log.iter().any(|l| l.contains("SimModem")),
        "the previous opener's unread answer was flushed: {log:#?}"
    );
}

#[tokio::test]
async fn hangup_finishes_when_the_far_end_stops_reading() {
    // A far end that never reads: the pty's buffer fills and every write blocks.
    let master = eqlplus_dialer::sim::PtyMaster::open().unwrap();
    let locks = tempfile::tempdir().unwrap();
    let port = SerialPort::open(master.slave_path(), &serial_config(locks.path())).unwrap();
    let stuffing = vec![b'x'; 1 << 20];
    assert!(
        timeout(Duration::from_millis(500), port.write_all(&stuffing))
            .await
            .is_err(),
        "the output buffer should be full"
    );
    let started = Instant::now();
    timeout(Duration::from_secs(15), port.hangup())
        .await
        .expect("hangup has a deadline");
    // guard, +++ (blocked), and the slack: well below the 15 s above.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(locks.path()).unwrap().collect();
    assert!(left.is_empty(), "the lock goes with the port: {left:?}");
    drop(master);
}

/// Hostile modems: line noise and an endless line without newline after ATD. The chat
/// script times out as for a silent modem (its buffers stay bounded meanwhile), and the
/// hangup afterwards is not held up by a modem still talking.
#[tokio::test]
async fn noisy_and_endless_modems_time_out_and_hang_up() {
    for answer in ["garbage", "endless"] {
        let locks = tempfile::tempdir().unwrap();
        let (sim, _calls) = SimModem::spawn(modem(answer)).unwrap();
        let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
        let script =
            Script::parse("ABORT BUSY TIMEOUT 2 '' ATZ OK ATDT123 CONNECT ''", "t").unwrap();
        let started = Instant::now();
        let (outcome, log) = chat(&port, script, ChatOptions::default()).await;
        assert_eq!(
            outcome,
            Outcome::Failure(Failure::Timeout {
                expected: "CONNECT".into()
            }),
            "{answer}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{answer}: {took:?}"
        );
        // The modem talked all along (some 50 KB in 2 s).
        assert!(log.len() > 100, "{answer}: {} actions", log.len());
        timeout(Duration::from_secs(10), port.hangup())
            .await
            .expect("hangup in time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_finishes_when_the_far_end_floods_and_never_reads() {
    // A far end that talks without pause (an LCP storm) and takes nothing: every read has
    // data at once, every write blocks. The hangup must still keep its deadline.
    let master = std::sync::Arc::new(eqlplus_dialer::sim::PtyMaster::open().unwrap());
    let locks = tempfile::tempdir().unwrap();
    let port = SerialPort::open(master.slave_path(), &serial_config(locks.path())).unwrap();
    let stuffing = vec![b'x'; 1 << 20];
    assert!(
        timeout(Duration::from_millis(500), port.write_all(&stuffing))
            .await
            .is_err()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (master, stop) = (master.clone(), stop.clone());
        tokio::spawn(async move {
            let noise = [0x7eu8; 512];
            // 512 bytes a millisecond: more than the line carries, so a read always has data.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = timeout(Duration::from_millis(1), master.write_all(&noise)).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    timeout(Duration::from_secs(30), port.hangup())
        .await
        .expect("hangup has a deadline");
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flood.await;
    // guard 0.2 s: the bound is 0.5 + 4 × 0.2 + 2 s.
    assert!(took < Duration::from_secs(5), "hangup took {took:?}");
}
