//! The simulated cellular modem over real ptys: a replug moves its by-id-style symlink to a
//! new tty while the old port sees its end, and a wedged modem hears only `AT+CFUN=1,1`.
//! No root needed.

use std::path::Path;
use std::time::Duration;

use eqlplus_dialer::serial::{SerialConfig, SerialPort};
use eqlplus_dialer::sim::{ModemConfig, SimModem, SimState};
use tokio::time::{Instant, timeout};

fn cellular() -> ModemConfig {
    ModemConfig {
        echo: false,
        sim: "pin:1234".parse().unwrap(),
        registration: "searching:300ms,home".parse().unwrap(),
        reboot_time: Duration::from_millis(300),
        ready_urc: true,
        ..ModemConfig::cellular()
    }
}

fn open(path: &Path, locks: &Path) -> SerialPort {
    let config = SerialConfig {
        lock_dir: Some(locks.to_path_buf()),
        ..SerialConfig::default()
    };
    SerialPort::open(path, &config).unwrap()
}

/// What the modem says within `wait`, stopping early at a final `OK`, an error or `RDY`.
async fn say(port: &SerialPort, text: &str, wait: Duration) -> String {
    port.write_all(text.as_bytes()).await.unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let s = String::from_utf8_lossy(&got).into_owned();
        if s.ends_with("OK\r\n") || s.contains("ERROR") || s.ends_with("RDY\r\n") {
            return s;
        }
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(other) => panic!("port failed: {other:?} after {s:?}"),
            Err(_) => return s,
        }
    }
}

const ANSWER: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_replugged_modem_moves_its_by_id_link_and_the_old_port_sees_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let by_id = dir.path().join("serial/by-id");
    std::fs::create_dir_all(&by_id).unwrap();
    let link = by_id.join("usb-Quectel_EC25_0123456789-if02-port0");
    let (mut sim, _calls) = SimModem::spawn(cellular()).unwrap();
    sim.link(&link).unwrap();
    let first = sim.tty().to_path_buf();
    assert_eq!(std::fs::read_link(&link).unwrap(), first);

    let port = open(&link, dir.path());
    assert_eq!(
        say(&port, "AT+CPIN?\r", ANSWER).await,
        "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    );
    assert_eq!(say(&port, "AT+CPIN=1234\r", ANSWER).await, "\r\nOK\r\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        say(&port, "AT+CEREG?\r", ANSWER).await,
        "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    );

    // Unplugged: the link is gone and the open port reads its end (EOF or EIO).
    sim.vanish().await.unwrap();
    assert!(!sim.is_present());
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    let mut buf = [0u8; 64];
    let end = timeout(ANSWER, port.read(&mut buf))
        .await
        .expect("the old port sees the modem go");
    match end {
        Ok(0) => {}
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
        other => panic!("expected EOF or EIO, got {other:?}"),
    }
    assert!(port.write_all(b"AT\r").await.is_err(), "writes fail too");

    // Plugged in again: a new tty, the link moved there, a fresh power-on (PIN again).
    let second = sim.reappear().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(sim.tty(), second);
    assert_eq!(std::fs::read_link(&link).unwrap(), second);
    drop(port);
    let port = open(&link, dir.path());
    assert_eq!(
        say(&port, "AT+CPIN?\r", ANSWER).await,
        "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    );
    assert_eq!(
        say(&port, "AT+CEREG?\r", ANSWER).await,
        "\r\n+CEREG: 0,0\r\n\r\nOK\r\n"
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.power_cycles, stats.cpin_commands, stats.sim),
        (1, 1, SimState::PinRequired)
    );
    assert_eq!(sim.pin_tries_left(), 3);

    // Gone with the modem when it is dropped.
    drop(sim);
    assert!(std::fs::symlink_metadata(&link).is_err());
}

#[tokio::test]
async fn a_wedged_modem_hears_only_cfun_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _calls) = SimModem::spawn(ModemConfig {
        sim: Default::default(),
        ..cellular()
    })
    .unwrap();
    let port = open(sim.tty(), dir.path());
    assert_eq!(say(&port, "AT\r", ANSWER).await, "\r\nOK\r\n");
    sim.wedge().await.unwrap();
    assert!(sim.is_wedged());
    let quiet = Duration::from_millis(500);
    assert_eq!(say(&port, "AT\r", quiet).await, "");
    assert_eq!(say(&port, "ATZ\r", quiet).await, "");
    assert_eq!(say(&port, "AT+CFUN=1,1\r", ANSWER).await, "\r\nOK\r\n");
    // Silent while it reboots, then RDY and a working modem.
    assert_eq!(say(&port, "AT\r", Duration::from_millis(100)).await, "");
    assert_eq!(say(&port, "", ANSWER).await, "\r\nRDY\r\n");
    assert_eq!(say(&port, "AT\r", ANSWER).await, "\r\nOK\r\n");
    assert_eq!((sim.resets(), sim.is_wedged()), (1, false));
}
