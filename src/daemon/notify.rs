//! systemd's notification protocol (sd_notify): `READY=1` once the control socket is up,
//! `WATCHDOG=1` pings at half the watchdog interval, `STOPPING=1` and `RELOADING=1`.
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) to systemd, if it is listening.
pub fn notify(state: &str) {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state);
}

/// Sends `state` to the socket `$NOTIFY_SOCKET` names (`@name`: abstract), if any.
fn notify_to(socket: Option<&std::ffi::OsStr>, state: &str) {
    let Some(path) = socket else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let result = addr.and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &addr).map(|_| ())
    });
    if let Err(e) = result {
        tracing::debug!("sd_notify {state}: {e}");
    }
}

/// How often to ping the watchdog, if systemd asked for pings (`$WATCHDOG_USEC`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(Some(path.as_os_str()), "READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        notify_to(None, "READY=1"); // no socket: nothing happens
    }
}
