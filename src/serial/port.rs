//! An open modem port: a tty (real UART, USB modem or pty) in raw 8N1 mode, exclusively ours,
//! read and written asynchronously.

use std::io;
use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::sys::termios::{FlushArg, tcflush};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, sleep, timeout};

use super::lock::{DEFAULT_LOCK_DIR, LockError, UucpLock};
use crate::sys::{read_fd, register, write_fd};

/// Beyond the guard times, how long the `+++`/`ATH0` escape may take in all.
const ESCAPE_WRITE_LIMIT: Duration = Duration::from_secs(2);

/// Hardware handshake on the serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// No flow control (what a pty and many USB modems want).
    #[default]
    None,
    /// RTS/CTS (`crtscts` in pppd).
    Hardware,
}

impl std::str::FromStr for FlowControl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(FlowControl::None),
            "hardware" | "rtscts" | "crtscts" => Ok(FlowControl::Hardware),
            other => Err(format!(
                "unknown flow control '{other}' (expected 'none' or 'hardware')"
            )),
        }
    }
}

/// How long a BREAK lasts (tcsendbreak's 0.25–0.5 s).
const BREAK_LENGTH: Duration = Duration::from_millis(250);

/// Slack on top of a hangup's own timings before it is cut short.
const HANGUP_SLACK: Duration = Duration::from_secs(2);

/// Timings of a modem hangup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HangupTiming {
    /// How long DTR stays low; Hayes modems need at least 0.5 s to notice.
    pub dtr_drop: Duration,
    /// Guard time of silence around the `+++` escape (S12, 1 s on Hayes modems).
    pub guard: Duration,
}

impl Default for HangupTiming {
    fn default() -> Self {
        HangupTiming {
            dtr_drop: Duration::from_millis(600),
            guard: Duration::from_millis(1100),
        }
    }
}

/// How to open a port.
#[derive(Debug, Clone)]
pub struct SerialConfig {
    /// Any rate the UART supports; non-standard rates are set with `BOTHER`.
    pub baud: u32,
    pub flow: FlowControl,
    /// Where UUCP lock files live; `None` disables lock files (TIOCEXCL still applies).
    pub lock_dir: Option<PathBuf>,
    pub hangup: HangupTiming,
}

impl Default for SerialConfig {
    fn default() -> Self {
        SerialConfig {
            baud: 115_200,
            flow: FlowControl::None,
            lock_dir: Some(PathBuf::from(DEFAULT_LOCK_DIR)),
            hangup: HangupTiming::default(),
        }
    }
}

/// Why a port could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a terminal device")]
    NotATty { path: PathBuf },
    #[error("cannot configure {path} ({what}): {source}")]
    Configure {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The modem status lines, where the device has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModemStatus {
    pub dcd: bool,
    pub dsr: bool,
    pub cts: bool,
    pub ri: bool,
    pub dtr: bool,
    pub rts: bool,
}

/// An open, locked, raw serial port.
#[derive(Debug)]
pub struct SerialPort {
    fd: PortFd,
    path: PathBuf,
    has_modem_lines: bool,
    hangup: HangupTiming,
    // Dropped after `fd`: the port is closed before its lock file goes.
    _lock: Option<UucpLock>,
}

/// The port's descriptor: with the runtime's reactor, or parked outside it while the kernel
/// has the line (kernel PPP: `ppp_async` reads and writes the tty, and a UART wakes the tty's
/// waiters at every transmit interrupt, which a registration would turn into wake-ups of
/// this process that nobody awaits).
#[derive(Debug)]
enum PortFd {
    Registered(AsyncFd<OwnedFd>),
    Parked(OwnedFd),
}

impl PortFd {
    /// The registered descriptor, for reads and writes; a parked port has none.
    fn registered(&self) -> io::Result<&AsyncFd<OwnedFd>> {
        match self {
            PortFd::Registered(fd) => Ok(fd),
            PortFd::Parked(_) => Err(io::Error::other(
                "the port is parked: the kernel's PPP has the line",
            )),
        }
    }

    fn owned(&self) -> &OwnedFd {
        match self {
            PortFd::Registered(fd) => fd.get_ref(),
            PortFd::Parked(fd) => fd,
        }
    }
}

impl SerialPort {
    /// [`SerialPort::open`] on tokio's blocking pool: taking the lock and opening the device
    /// touch the filesystem and a device driver (an open of a tty can wait for carrier), which
    /// must not stall an async worker. Use this from async code.
    pub async fn open_async(path: &Path, config: &SerialConfig) -> Result<SerialPort, SerialError> {
        let (owned_path, owned_config) = (path.to_path_buf(), config.clone());
        match tokio::task::spawn_blocking(move || SerialPort::open(&owned_path, &owned_config))
            .await
        {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(SerialError::Open {
                path: path.to_path_buf(),
                source: io::Error::other(e.to_string()),
            }),
        }
    }

    /// Locks and opens `path`, puts it in raw 8N1 at `config.baud`, and discards stale input.
    /// Must be called within a tokio runtime; it blocks, so async code calls
    /// [`SerialPort::open_async`].
    pub fn open(path: &Path, config: &SerialConfig) -> Result<SerialPort, SerialError> {
        let lock = match &config.lock_dir {
            Some(dir) => Some(UucpLock::acquire(path, dir)?),
            None => None,
        };
        let fd = open_tty(path)?;
        let configure = |what, r: io::Result<()>| {
            r.map_err(|source| SerialError::Configure {
                path: path.to_path_buf(),
                what,
                source,
            })
        };
        if !fd.is_terminal() {
            return Err(SerialError::NotATty {
                path: path.to_path_buf(),
            });
        }
        // Exclusive mode: further open(2)s fail with EBUSY (root can still override, which is
        // why the UUCP lock is taken as well).
        configure("TIOCEXCL", set_exclusive(fd.as_fd()))?;
        configure("termios", set_raw(fd.as_fd(), config.baud, config.flow))?;
        // Bytes the far end sent before we opened (a previous session's tail) would be read
        // first and confuse the chat script.
        configure("flush", flush(fd.as_fd(), FlushArg::TCIFLUSH))?;
        let has_modem_lines = get_modem_bits(fd.as_fd()).is_ok();
        if has_modem_lines {
            configure(
                "raise DTR/RTS",
                set_modem_bits(fd.as_fd(), libc::TIOCM_DTR | libc::TIOCM_RTS, true),
            )?;
        }
        let fd = register(fd).map_err(|source| SerialError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        tracing::debug!(port = %path.display(), baud = config.baud, has_modem_lines, "port open");
        Ok(SerialPort {
            fd: PortFd::Registered(fd),
            path: path.to_path_buf(),
            has_modem_lines,
            hangup: config.hangup,
            _lock: lock,
        })
    }

    /// Takes the port out of the runtime's reactor while the kernel has the line (see
    /// [`PortFd`]): reads and writes fail until [`unpark`](Self::unpark); ioctls (DTR,
    /// carrier, the line discipline) work as ever.
    pub fn park(self) -> SerialPort {
        match self.fd {
            PortFd::Registered(fd) => SerialPort {
                fd: PortFd::Parked(fd.into_inner()),
                ..self
            },
            PortFd::Parked(_) => self,
        }
    }

    /// Back in the reactor for reads and writes. Should the registration fail (the kernel
    /// out of memory for it), the port stays parked, which the caller's next read reports as
    /// an error; its hangup still drops DTR.
    pub fn unpark(self) -> SerialPort {
        let PortFd::Parked(fd) = self.fd else {
            return self;
        };
        match crate::sys::register_or_return(fd) {
            Ok(fd) => SerialPort {
                fd: PortFd::Registered(fd),
                ..self
            },
            Err((fd, e)) => {
                tracing::warn!(port = %self.path.display(), "cannot read the port again: {e}");
                SerialPort {
                    fd: PortFd::Parked(fd),
                    ..self
                }
            }
        }
    }

    /// The path the port was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device has modem control lines (a UART or USB modem has; a pty has not).
    pub fn has_modem_lines(&self) -> bool {
        self.has_modem_lines
    }

    /// Reads what is available (at least one byte). An error means the line is gone: on a pty
    /// whose far end closed, Linux reports EIO.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.registered()?.readable().await?;
            match guard.try_io(|fd| read_fd(fd, buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data`, waiting for room in the output buffer as needed.
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        crate::sys::write_all(self.fd.registered()?, data).await
    }

    /// Changes the line speed of the open port.
    pub fn set_baud(&self, baud: u32, flow: FlowControl) -> io::Result<()> {
        set_raw(self.fd.owned().as_fd(), baud, flow)
    }

    /// Discards written bytes the device has not taken yet.
    pub fn flush_output(&self) -> io::Result<()> {
        flush(self.fd.owned().as_fd(), FlushArg::TCOFLUSH)
    }

    /// Discards received bytes not yet read.
    pub fn flush_input(&self) -> io::Result<()> {
        flush(self.fd.owned().as_fd(), FlushArg::TCIFLUSH)
    }

    /// A handle that reads the carrier (DCD) while the port itself is lent to another task
    /// (the PPP driver); `None` where the device has no modem lines.
    pub fn carrier_watch(&self) -> Option<CarrierWatch> {
        if !self.has_modem_lines {
            return None;
        }
        self.fd
            .owned()
            .try_clone()
            .ok()
            .map(|fd| CarrierWatch { fd })
    }

    /// Modem status lines, or `None` where the device has none (a pty).
    pub fn modem_status(&self) -> Option<ModemStatus> {
        if !self.has_modem_lines {
            return None;
        }
        let bits = get_modem_bits(self.fd.owned().as_fd()).ok()?;
        Some(ModemStatus {
            dcd: bits & libc::TIOCM_CAR != 0,
            dsr: bits & libc::TIOCM_DSR != 0,
            cts: bits & libc::TIOCM_CTS != 0,
            ri: bits & libc::TIOCM_RNG != 0,
            dtr: bits & libc::TIOCM_DTR != 0,
            rts: bits & libc::TIOCM_RTS != 0,
        })
    }

    /// Data Carrier Detect, or `None` where the device has no modem lines.
    pub fn carrier(&self) -> Option<bool> {
        self.modem_status().map(|s| s.dcd)
    }

    /// Whether this is a serial driver port with no UART behind it (the kernel registers
    /// ttyS0-31 whether or not the hardware exists; TIOCGSERIAL reports PORT_UNKNOWN).
    /// Devices without TIOCGSERIAL (ptys, most USB modems) are not "absent".
    pub fn uart_absent(&self) -> bool {
        // struct serial_struct starts with `int type`; the buffer is large enough for the
        // whole structure on every architecture.
        let mut buf = [0u8; 256];
        // SAFETY: TIOCGSERIAL copies one serial_struct (< 128 bytes) into `buf`, which is
        // larger, on a descriptor we own.
        let r = unsafe { ioctls::tiocgserial(self.fd.owned().as_raw_fd(), &mut buf) };
        let port_type = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        r == Ok(0) && port_type == 0
    }

    /// Raises or drops DTR. Fails with ENOTTY on a pty.
    pub fn set_dtr(&self, on: bool) -> io::Result<()> {
        set_modem_bits(self.fd.owned().as_fd(), libc::TIOCM_DTR, on)
    }

    /// Sends a BREAK (a quarter second of space), as chat's `\K`. Not tcsendbreak(3), which
    /// blocks its thread for the whole break: the break is switched on and off around an
    /// async sleep.
    pub async fn send_break(&self) -> io::Result<()> {
        /// Ends the break however the wait ends (an abandoned chat too).
        struct Breaking<'a>(BorrowedFd<'a>);
        impl Drop for Breaking<'_> {
            fn drop(&mut self) {
                let _ = set_break(self.0, false);
            }
        }
        let fd = self.fd.owned().as_fd();
        set_break(fd, true)?;
        let _breaking = Breaking(fd);
        sleep(BREAK_LENGTH).await;
        Ok(())
    }

    /// Hangs the modem up and closes the port, releasing its lock, whatever state the line
    /// was in. Drops DTR where the device has modem lines; otherwise (pty, some USB modems)
    /// escapes to command mode with `+++` between guard times and sends `ATH0`.
    pub async fn hangup(self) {
        let timing = self.hangup;
        // A far end that stopped reading must not keep the line in `hanging-up`: each step
        // has its own bound, and the whole hangup has this one.
        let bound = timing.dtr_drop + timing.guard * 4 + HANGUP_SLACK;
        let steps = async {
            if self.has_modem_lines {
                match self.set_dtr(false) {
                    Ok(()) => sleep(timing.dtr_drop).await,
                    Err(e) => {
                        tracing::warn!(port = %self.path.display(), "cannot drop DTR: {e}")
                    }
                }
            } else {
                self.escape_and_hang_up(timing).await;
            }
        };
        if timeout(bound, steps).await.is_err() {
            tracing::warn!(
                port = %self.path.display(),
                "hangup did not finish within {bound:?} (the far end stopped reading?); closing the port"
            );
        }
        // close(2) of a tty waits for unsent output to drain (closing_wait: 30 s by default),
        // and unsent output is what a stuck far end leaves: discard it, then close off the
        // async threads.
        let _ = self.flush_output();
        let path = self.path.clone();
        // Dropping self closes the descriptor (with HUPCL, which drops DTR again) and then
        // removes the lock file.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
        tracing::debug!(port = %path.display(), "port closed");
    }

    async fn escape_and_hang_up(&self, timing: HangupTiming) {
        // Errors are expected here (the far end may already be gone): the port is closed
        // regardless, so they are only worth a debug line. Unsent PPP frames are dropped
        // (they would break the guard time), and a modem that takes nothing (flow control
        // held, a hung far end) cannot hold the hangup: it is bounded as a whole.
        let _ = self.flush_output();
        sleep(timing.guard).await;
        let limit = timing.guard * 3 + ESCAPE_WRITE_LIMIT;
        let steps = async {
            self.write_all(b"+++").await?;
            sleep(timing.guard).await;
            let _ = self.flush_input();
            self.write_all(b"ATH0\r").await?;
            wait_for(self, b"OK", timing.guard).await
        };
        let steps = async {
            timeout(limit, steps).await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "modem took nothing",
                ))
            })
        };
        if let Err(e) = steps.await {
            tracing::debug!(port = %self.path.display(), "escape hangup: {e}");
        }
    }
}

/// Reads DCD through a duplicate of a port's descriptor.
#[derive(Debug)]
pub struct CarrierWatch {
    fd: OwnedFd,
}

impl CarrierWatch {
    /// Whether the carrier is up (`None` if the line cannot be read any more).
    pub fn carrier(&self) -> Option<bool> {
        get_modem_bits(self.fd.as_fd())
            .ok()
            .map(|bits| bits & libc::TIOCM_CAR != 0)
    }
}

/// Reads until `needle` shows up or `limit` passes.
async fn wait_for(port: &SerialPort, needle: &[u8], limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    // Only the last bytes can start a match: a modem that floods the line costs a constant
    // amount of memory and work per read, and the deadline holds even when data never stops.
    let keep = needle.len().saturating_sub(1);
    let mut tail: Vec<u8> = Vec::with_capacity(keep + 256);
    let mut buf = [0u8; 256];
    loop {
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match timeout(deadline - Instant::now(), port.read(&mut buf)).await {
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(n)) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.windows(needle.len()).any(|w| w == needle) {
                    return Ok(());
                }
                tail.drain(..tail.len().saturating_sub(keep));
            }
        }
    }
}

/// Non-blocking read(2) once the reactor says the descriptor is readable.
fn poll_read_fd(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut guard = ready!(fd.poll_read_ready(cx))?;
        let unfilled = buf.initialize_unfilled();
        match guard.try_io(|fd| read_fd(fd, unfilled)) {
            Ok(Ok(n)) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

/// Non-blocking write(2) once the reactor says the descriptor is writable.
fn poll_write_fd(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    loop {
        let mut guard = ready!(fd.poll_write_ready(cx))?;
        match guard.try_io(|fd| write_fd(fd, data)) {
            Ok(result) => return Poll::Ready(result),
            Err(_would_block) => continue,
        }
    }
}

/// Reads as [`SerialPort::read`] does: an error (EIO on a pty whose far end closed) means the
/// line is gone.
impl AsyncRead for SerialPort {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self).poll_read(cx, buf)
    }
}

/// Writes go straight to the tty: flushing and shutting down have nothing to do (the kernel
/// drains its output buffer by itself; [`SerialPort::hangup`] ends the line).
impl AsyncWrite for SerialPort {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A shared port reads and writes as well (one reader and one writer at a time make sense).
impl AsyncRead for &SerialPort {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.fd.registered() {
            Ok(fd) => poll_read_fd(fd, cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for &SerialPort {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.fd.registered() {
            Ok(fd) => poll_write_fd(fd, cx, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsFd for SerialPort {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.owned().as_fd()
    }
}

fn open_tty(path: &Path) -> Result<OwnedFd, SerialError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let open_err = |source| SerialError::Open {
        path: path.to_path_buf(),
        source,
    };
    // No path with a NUL byte opens; this error is the one it has always been refused with
    // (std's would word it differently).
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(open_err(io::ErrorKind::InvalidInput.into()));
    }
    // O_NONBLOCK: don't wait for carrier on open, and let tokio drive the descriptor. std
    // adds O_CLOEXEC.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map(OwnedFd::from)
        .map_err(open_err)
}

/// The tty ioctls nix has no safe call for. Each is `unsafe` only because the kernel reads or
/// writes through the pointer: every caller passes a value of the type the ioctl expects.
mod ioctls {
    nix::ioctl_none_bad!(tiocexcl, libc::TIOCEXCL);
    nix::ioctl_none_bad!(tiocsbrk, libc::TIOCSBRK);
    nix::ioctl_none_bad!(tioccbrk, libc::TIOCCBRK);
    nix::ioctl_read_bad!(tiocmget, libc::TIOCMGET, libc::c_int);
    nix::ioctl_write_ptr_bad!(tiocmbis, libc::TIOCMBIS, libc::c_int);
    nix::ioctl_write_ptr_bad!(tiocmbic, libc::TIOCMBIC, libc::c_int);
    nix::ioctl_read_bad!(tcgets2, libc::TCGETS2, libc::termios2);
    nix::ioctl_write_ptr_bad!(tcsets2, libc::TCSETS2, libc::termios2);
    // The buffer is larger than any architecture's struct serial_struct.
    nix::ioctl_read_bad!(tiocgserial, libc::TIOCGSERIAL, [u8; 256]);
}

/// tcflush(3).
fn flush(fd: BorrowedFd<'_>, what: FlushArg) -> io::Result<()> {
    tcflush(fd, what).map_err(io::Error::from)
}

/// Raw 8N1 (cfmakeraw) at any baud rate via termios2/BOTHER, receiver on, modem lines
/// ignored for open/read (CLOCAL: carrier is watched explicitly), DTR dropped on close (HUPCL).
/// termios2, which nix's termios calls do not know, is what takes a rate that is not a `Bnnn`.
fn set_raw(fd: BorrowedFd<'_>, baud: u32, flow: FlowControl) -> io::Result<()> {
    // SAFETY: termios2 is integers and arrays of integers, for which all zeroes is a value.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 fills one termios2, which `t` is.
    unsafe { ioctls::tcgets2(fd.as_raw_fd(), &mut t) }?;
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON
        | libc::IXOFF
        | libc::IXANY);
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::CSTOPB | libc::CBAUD | libc::CIBAUD);
    t.c_cflag |= libc::CS8 | libc::CREAD | libc::CLOCAL | libc::HUPCL | libc::BOTHER;
    t.c_cflag |= libc::BOTHER << libc::IBSHIFT;
    match flow {
        FlowControl::None => t.c_cflag &= !libc::CRTSCTS,
        FlowControl::Hardware => t.c_cflag |= libc::CRTSCTS,
    }
    t.c_ispeed = baud;
    t.c_ospeed = baud;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: TCSETS2 reads one termios2, which `t` is.
    unsafe { ioctls::tcsets2(fd.as_raw_fd(), &t) }?;
    Ok(())
}

/// TIOCEXCL: further open(2)s of the device fail with EBUSY.
fn set_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCEXCL takes no argument.
    unsafe { ioctls::tiocexcl(fd.as_raw_fd()) }?;
    Ok(())
}

/// Switches a BREAK on or off (TIOCSBRK/TIOCCBRK).
fn set_break(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TIOCSBRK and TIOCCBRK take no argument.
    unsafe {
        if on {
            ioctls::tiocsbrk(fd.as_raw_fd())
        } else {
            ioctls::tioccbrk(fd.as_raw_fd())
        }
    }?;
    Ok(())
}

fn get_modem_bits(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut bits: libc::c_int = 0;
    // SAFETY: TIOCMGET writes one int, which `bits` is.
    unsafe { ioctls::tiocmget(fd.as_raw_fd(), &mut bits) }?;
    Ok(bits)
}

fn set_modem_bits(fd: BorrowedFd<'_>, bits: libc::c_int, on: bool) -> io::Result<()> {
    // SAFETY: TIOCMBIS and TIOCMBIC read one int, which `bits` is.
    unsafe {
        if on {
            ioctls::tiocmbis(fd.as_raw_fd(), &bits)
        } else {
            ioctls::tiocmbic(fd.as_raw_fd(), &bits)
        }
    }?;
    Ok(())
}
