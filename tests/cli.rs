//! The command line as a user runs it: `simulate modem` in one process, `chat` and `probe`
//! against it from others, exit codes as chat(8).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_eqlplus-dialer");

/// A `simulate modem` process, stopped with SIGINT (Ctrl-C) on drop.
struct Simulator {
    child: Child,
    link: PathBuf,
}

impl Simulator {
    fn start(dir: &Path, answers: &str) -> Simulator {
        Simulator::start_with(dir, answers, &[])
    }

    fn start_with(dir: &Path, answers: &str, options: &[&str]) -> Simulator {
        let link = dir.join("ttySIM0");
        // A link left by an earlier simulator would pass the wait below before this one has
        // made its own.
        let _ = std::fs::remove_file(&link);
        let child = Command::new(BIN)
            .args(["simulate", "modem", "--dial-delay", "50", "--link"])
            .arg(&link)
            .args(["--answer", answers])
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::fs::symlink_metadata(&link).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "simulator did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Simulator { child, link }
    }

    fn stop(mut self) -> Output {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], locks: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    // Options go before a `--` script: right after the subcommand.
    cmd.arg(args[0])
        .arg("--lock-dir")
        .arg(locks)
        .args(&args[1..]);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn chat_busy_then_connect_with_chat_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), "busy,connect:57600");
    let link = sim.link.to_str().unwrap().to_string();
    let script = [
        "chat",
        "--device",
        &link,
        "-f",
        "chat-scripts/hayes-dialup.chat",
        "-T",
        "5551234",
    ];

    let out = run(&script, dir.path());
    assert_eq!(out.status.code(), Some(4), "BUSY is the first ABORT string");
    assert!(
        text(&out.stderr).contains("modem said BUSY (exit 4)"),
        "{}",
        text(&out.stderr)
    );

    let mut verbose = script.to_vec();
    verbose.push("-v");
    let out = run(&verbose, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{link}: CONNECT 57600 (57600 bit/s)\n")
    );
    let log = text(&out.stderr);
    assert!(log.contains("chat: send (ATDT5551234^M)"), "{log}");
    assert!(log.contains("chat: expect (CONNECT)"), "{log}");

    let out = sim.stop();
    let said = text(&out.stdout);
    assert!(
        said.contains("call 1: dialed '5551234', CONNECT 57600"),
        "{said}"
    );
    assert!(
        !dir.path().join("ttySIM0").exists(),
        "the link is removed on Ctrl-C"
    );
}

#[test]
fn chat_script_on_the_command_line_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), "no-carrier");
    let link = sim.link.to_str().unwrap().to_string();

    let out = run(
        &[
            "chat",
            "-d",
            &link,
            "--",
            "ABORT",
            "BUSY",
            "ABORT",
            "NO CARRIER",
            "",
            "ATZ",
            "OK",
            "ATD1",
            "CONNECT",
            "",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "second ABORT string: {}",
        text(&out.stderr)
    );

    // A missing \T value is a usage error (1), before anything is sent.
    let out = run(
        &["chat", "-d", &link, "-f", "chat-scripts/hayes-dialup.chat"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no phone number was given (-T)"));

    // A broken script names file:line:column.
    let bad = dir.path().join("bad.chat");
    std::fs::write(&bad, "'' ATZ\nOK 'ATDT\n").unwrap();
    let out = run(
        &["chat", "-d", &link, "-f", bad.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{}:2:4: unterminated quote", bad.display())),
        "{}",
        text(&out.stderr)
    );

    // Timeout: exit 3.
    let out = run(
        &["chat", "-d", &link, "-t", "1", "--", "", "AT", "NEVER", ""],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("timed out waiting for 'NEVER'"));

    // A port locked by a live process: exit 2, naming the PID.
    let lock = dir
        .path()
        .join(eqlplus_dialer::serial::lock_file_name(&sim.link));
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(&lock, format!("{:10}\n", holder.id())).unwrap();
    let out = run(&["chat", "-d", &link, "--", "", "AT", "OK", ""], dir.path());
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("in use by process {}", holder.id())),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn probe_finds_the_simulated_modem_and_prints_a_stanza() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(dir.path(), "connect");
    let link = sim.link.to_str().unwrap().to_string();
    let missing = dir.path().join("ttyUSB9");
    let out = run(&["probe", &link, missing.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{link}: eqlplus SimModem 56K at 115200 bit/s")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: skipped (cannot open", missing.display())),
        "{stdout}"
    );
    assert!(stdout.contains("[[line]]\nname = \"ttySIM0\""), "{stdout}");
    assert!(
        stdout.contains("hayes-dialup.chat"),
        "an analog modem: {stdout}"
    );
    drop(sim);

    // A cellular modem (+GCAP: +CGSM) gets the GSM script and an APN.
    let sim = Simulator::start_with(dir.path(), "connect", &["--cellular"]);
    let out = run(&["probe", &link], dir.path());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("eqlplus SimModem LTE")
            && stdout.contains("gsm-cellular.chat")
            && stdout.contains("apn = "),
        "{stdout}"
    );
    drop(sim);

    let out = run(&["probe", missing.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no modem found"));
}

/// `check-config` refuses what the daemon would refuse or trip over, naming the option.
#[test]
fn check_config_refuses_values_that_would_break_the_system() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eqlplus-dialer.toml");
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let ok = check("[[line]]\ndevice = \"/dev/ttyS1\"\n");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let cases = [
        ("[balancer]\nrule_base = 32700\n", "balancer.rule_base"),
        (
            "[balancer]\ntable_base = 4294967295\n",
            "balancer.table_base",
        ),
        ("[daemon]\nlog_level = \"inf\"\n", "daemon.log_level"),
        (
            "[control]\ngroup = \"no-such-group-eqlplus\"\n",
            "control.group",
        ),
        ("[daemon]\nip_up = \"/nonexistent/ip-up\"\n", "daemon.ip_up"),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nlcp_echo_interval = 0.0001\n",
            "line[1].lcp_echo_interval",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\nholdoff = 1e300\n",
            "line[1].holdoff",
        ),
        (
            "[[line]]\ndevice = \"/dev/ttyS1\"\n[[line]]\nname = \"b\"\ndevice = \"/dev/../dev/ttyS1\"\nslave = \"eq-b\"\n",
            "line[2].device",
        ),
    ];
    for (toml, option) in cases {
        let out = check(toml);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {stderr}");
        let expected = format!("{}:", config.display());
        assert!(
            stderr.starts_with(&expected) && stderr.contains(&format!(": {option}: ")),
            "{toml}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A misspelt log level is reported, not turned into silence.
#[test]
fn bad_log_filter_is_reported() {
    let out = Command::new(BIN)
        .args([
            "--log",
            "inf",
            "check-config",
            "--config",
            "/nonexistent.toml",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad log filter: 'inf': 'inf' is not a log level"),
        "{stderr}"
    );
    assert!(stderr.contains("logging at warn instead"), "{stderr}");
}
