//! The recovery ladder's steps, carried out (the ladder itself is [`super::recovery`]): a modem
//! reset over the port (`ATZ`, after the `+++` escape and `ATH0` if the modem does not answer:
//! it may still be in a call whose end it never saw; `AT+CFUN=1,1`, a reboot, for a cellular
//! modem — a wedged one often still takes it), a USB port reset (the device de- and re-authorized through sysfs, so
//! it re-enumerates), and the user's reset hook. Each is bounded; each says what it did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::serial::{SerialConfig, SerialPort, at, identity};

/// How long a modem may take to answer a reset command.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long a USB device stays de-authorized.
const USB_OFF: Duration = Duration::from_secs(1);

/// `ATZ`, and for a cellular modem `AT+CFUN=1,1`: what the modem answered, or why not.
pub async fn modem_reset(device: &Path, serial: &SerialConfig, cellular: bool) -> String {
    let port = match SerialPort::open_async(device, serial).await {
        Ok(p) => p,
        Err(e) => return format!("cannot open the port: {e}"),
    };
    let mut said = Vec::new();
    let mut answer = ask(&port, "ATZ").await;
    if answer != "OK" {
        // Perhaps still in a call it never saw end (no DTR to it): the escape, then hang up.
        let guard = serial.hangup.guard;
        tokio::time::sleep(guard).await;
        let _ = port.write_all(b"+++").await;
        tokio::time::sleep(guard + Duration::from_millis(100)).await;
        said.push(format!(
            "ATZ: {answer}, +++ ATH0: {}",
            ask(&port, "ATH0").await
        ));
        answer = ask(&port, "ATZ").await;
    }
    said.push(format!("ATZ: {answer}"));
    if cellular {
        said.push(format!("AT+CFUN=1,1: {}", ask(&port, "AT+CFUN=1,1").await));
    }
    // Dropping the port closes it (DTR drops) and removes its lock.
    drop(port);
    said.join(", ")
}

/// Sends `command`: `OK`, or why not.
async fn ask(port: &SerialPort, command: &str) -> String {
    match at::ask(port, command, ANSWER_WAIT).await {
        Ok(_) => "OK".into(),
        Err(why) => why,
    }
}

/// Whether `device` looks like a USB modem (`ttyUSB*`, `ttyACM*`, a by-id `usb-` link): its
/// port can be reset.
pub fn looks_usb(device: &Path) -> bool {
    let real = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (real, given) = (name(&real), name(device));
    real.starts_with("ttyUSB")
        || real.starts_with("ttyACM")
        || given.starts_with("usb-")
        || device.to_string_lossy().contains("-usb-")
}

/// De- and re-authorizes the USB device behind `device` (sysfs `authorized` 0, then 1): it
/// drops off the bus and enumerates again, as if replugged.
pub async fn usb_port_reset(device: PathBuf) -> String {
    let work = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let real =
            std::fs::canonicalize(&device).map_err(|e| format!("{}: {e}", device.display()))?;
        let tty = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let usb = identity::usb_of(Path::new("/sys"), &tty)
            .ok_or_else(|| format!("{tty} is not a USB device: no port to reset"))?;
        let authorized = usb.device_dir.join("authorized");
        std::fs::write(&authorized, "0").map_err(|e| format!("{}: {e}", authorized.display()))?;
        std::thread::sleep(USB_OFF);
        std::fs::write(&authorized, "1").map_err(|e| format!("{}: {e}", authorized.display()))?;
        Ok(format!("USB {} at port {} re-enumerated", tty, usb.port))
    });
    match work.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => e,
        Err(e) => format!("the reset failed: {e}"),
    }
}

/// Runs the reset hook with the line's name and device as arguments and in the environment
/// (`LINKNAME`, `DEVICE`), killed after `timeout`.
pub async fn run_hook(hook: &Path, line: &str, device: &Path, timeout: Duration) -> String {
    let mut command = tokio::process::Command::new(hook);
    command
        .arg(line)
        .arg(device)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LINKNAME", line)
        .env("DEVICE", device)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return format!("cannot run {}: {e}", hook.display()),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => format!("{} killed after {timeout:?}", hook.display()),
        Ok(Err(e)) => format!("{}: {e}", hook.display()),
        Ok(Ok(out)) if out.status.success() => format!("{} done", hook.display()),
        Ok(Ok(out)) => format!("{} failed: {}", hook.display(), out.status),
    }
}
