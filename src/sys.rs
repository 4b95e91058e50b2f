//! Small system helpers: safe wrappers over the raw descriptor calls that the serial port and
//! the simulated modem's pty share, and a `$PATH` lookup.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Registers an owned descriptor with the tokio reactor.
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    register_or_return(fd).map_err(|(_, e)| e)
}

/// Registers an owned descriptor with the tokio reactor; should that fail, the descriptor
/// comes back with the error (the caller keeps using it unregistered).
pub(crate) fn register_or_return(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, (OwnedFd, io::Error)> {
    // SAFETY: the AsyncFd owns `fd` (an OwnedFd, which closes its descriptor only when
    // dropped and never changes it), so the descriptor stays open and the same for its life.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts())
}

/// read(2) into `buf`: errors as the OS reports them (EAGAIN is `WouldBlock`, which tokio's
/// `try_io` takes for "not ready after all").
pub(crate) fn read_fd(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    nix::unistd::read(fd.as_fd().as_raw_fd(), buf).map_err(io::Error::from)
}

/// write(2) of `data`, errors as [`read_fd`]'s.
pub(crate) fn write_fd(fd: impl AsFd, data: &[u8]) -> io::Result<usize> {
    nix::unistd::write(fd, data).map_err(io::Error::from)
}

/// Writes all of `data` to a non-blocking descriptor registered with tokio.
pub(crate) async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        // A hung-up descriptor stays "writable" for ever (tokio never clears the closed
        // state), while a pty master without a slave answers EAGAIN: that would spin.
        if guard.ready().is_write_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the line is closed",
            ));
        }
        match guard.try_io(|fd| write_fd(fd, data)) {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Whether `program` is a file in one of `$PATH`'s directories (an optional tool: resolvconf,
/// resolvectl, tc, …).
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Sleeps until `at`, or for ever when there is no deadline (a `select!` branch that is
/// disabled until a deadline is set).
pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The IPv4 addresses of this host's interfaces (getifaddrs), except those of
/// `except` (a line's own slave, whose address is the line's business). What a
/// PPP peer may not claim or assign (`ppp::IpcpConfig::local_addrs`); an error
/// leaves the list empty (the fixed checks still apply).
pub fn local_ipv4_addrs(except: &str) -> Vec<std::net::Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        if ifa.interface_name == except {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            let ip = sin.ip();
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod local_addr_tests {
    use super::local_ipv4_addrs;
    use std::net::Ipv4Addr;

    #[test]
    fn local_addresses_skip_the_named_interface() {
        assert!(local_ipv4_addrs("none-such").contains(&Ipv4Addr::LOCALHOST));
        assert!(!local_ipv4_addrs("lo").contains(&Ipv4Addr::LOCALHOST));
    }
}
