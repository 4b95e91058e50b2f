//! The modem-control-line path of the serial layer on a real UART, where the machine has one
//! (`/dev/ttyS0` with a 16550 behind it). Only status lines and DTR are touched; nothing is
//! written to the line. Skipped, saying so, where there is no such port.

use std::path::Path;
use std::time::Duration;

use eqlplus_dialer::serial::{SerialConfig, SerialPort, lock_file_name};

#[tokio::test]
async fn dtr_drop_and_carrier_on_a_real_uart() {
    let device = Path::new("/dev/ttyS0");
    let locks = tempfile::tempdir().unwrap();
    let config = SerialConfig {
        lock_dir: Some(locks.path().to_path_buf()),
        ..SerialConfig::default()
    };
    let port = match SerialPort::open(device, &config) {
        Ok(p) if p.has_modem_lines() && !p.uart_absent() => p,
        Ok(_) | Err(_) => {
            eprintln!(
                "skipped: {} is not a UART with modem control lines here",
                device.display()
            );
            return;
        }
    };
    let status = port.modem_status().expect("a UART reports its modem lines");
    assert!(status.dtr, "DTR is raised on open");
    assert_eq!(port.carrier(), Some(status.dcd));

    port.set_dtr(false).unwrap();
    assert!(!port.modem_status().unwrap().dtr);
    port.set_dtr(true).unwrap();
    assert!(port.modem_status().unwrap().dtr);

    let lock = locks.path().join(lock_file_name(device));
    assert!(lock.exists());
    let started = std::time::Instant::now();
    port.hangup().await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "DTR stays low for at least 0.5 s"
    );
    assert!(!lock.exists(), "hangup closes and unlocks");
}
