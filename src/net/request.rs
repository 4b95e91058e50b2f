//! One request to a netfilter netlink subsystem (ctnetlink, nf_tables): a socket made on the
//! caller's thread (so in its network namespace) whose receives are bounded by a deadline, and
//! the kernel's replies read on a blocking thread, off the async runtime.

use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// How long the kernel may take to answer one request.
pub(crate) const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// A netfilter netlink socket, connected to the kernel, that sends `request`; its receives
/// give up after [`REPLY_DEADLINE`].
pub(crate) fn send(request: &[u8]) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    let fd = std::os::fd::AsFd::as_fd(&socket);
    nix::sys::socket::setsockopt(
        &fd,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(REPLY_DEADLINE.as_secs() as i64, 0),
    )
    .map_err(io::Error::from)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(request, 0)?;
    Ok(socket)
}

/// Runs `read` (the blocking receives of the replies) on a blocking thread; `what` names the
/// reader in the error if that thread fails.
pub(crate) async fn off_runtime<T: Send + 'static>(
    what: &str,
    read: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| io::Error::other(format!("{what} failed: {e}")))?
}
