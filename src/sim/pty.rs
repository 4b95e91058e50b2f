//! The master side of a pseudo-terminal: what a simulated device holds while a dialer opens
//! the slave (`/dev/pts/N`) as if it were a serial port.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;

use crate::sys::{read_fd, register};

/// How often a pty without an opener is checked for one.
const REOPEN_POLL: Duration = Duration::from_millis(20);

fn gone() -> io::Error {
    io::Error::other("pty master was lost while re-registering")
}

/// What a read from the master side found.
#[derive(Debug, PartialEq, Eq)]
pub enum MasterRead {
    Data(usize),
    /// No process has the slave open (any more).
    Closed,
}

/// A pty master; the slave end is left for another process to open.
#[derive(Debug)]
pub struct PtyMaster {
    /// Always `Some` between calls; taken only to re-register (see `read`).
    fd: Option<AsyncFd<OwnedFd>>,
    slave_path: PathBuf,
    slave_open: bool,
}

impl PtyMaster {
    /// Creates a pty pair with the slave in raw mode and closed, ready to be opened by path.
    pub fn open() -> io::Result<PtyMaster> {
        let pair = openpty(None, None).map_err(io::Error::from)?;
        let slave_path = nix::unistd::ttyname(&pair.slave).map_err(io::Error::from)?;
        // Raw from the start: the line discipline must not echo our output back or turn LF
        // into CR LF before the opener sets its own modes (the settings outlive the fd).
        let mut t = tcgetattr(&pair.slave).map_err(io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
        drop(pair.slave);
        let flags = fcntl(pair.master.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
        fcntl(
            pair.master.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        Ok(PtyMaster {
            fd: Some(register(pair.master)?),
            slave_path,
            slave_open: false,
        })
    }

    /// The path a dialer opens, e.g. `/dev/pts/3`.
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Reads what the slave's user wrote. Reports [`MasterRead::Closed`] once when the last
    /// opener closes the slave, then waits until someone opens it again.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<MasterRead> {
        loop {
            if !self.slave_open {
                // With no opener the master polls as hung up forever: sample it instead.
                tokio::time::sleep(REOPEN_POLL).await;
                match read_fd(self.master()?, buf) {
                    Ok(n) => {
                        self.reopened()?;
                        return Ok(MasterRead::Data(n));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => self.reopened()?,
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let fd = self.fd.as_ref().ok_or_else(gone)?;
            let mut guard = fd.readable().await?;
            match guard.try_io(|fd| read_fd(fd, buf)) {
                Ok(Ok(n)) => return Ok(MasterRead::Data(n)),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    self.slave_open = false;
                    return Ok(MasterRead::Closed);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes to the slave's reader. Bytes written while nobody has the slave open are kept
    /// by the kernel and read by the next opener (who should flush them, as SerialPort does).
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        crate::sys::write_all(self.master()?, data).await
    }

    fn master(&self) -> io::Result<&AsyncFd<OwnedFd>> {
        self.fd.as_ref().ok_or_else(gone)
    }

    /// Someone opened the slave. tokio remembers the hangup it saw while nobody had it open
    /// and would report the master readable forever (a busy loop): register afresh.
    fn reopened(&mut self) -> io::Result<()> {
        let fd = self.fd.take().ok_or_else(gone)?.into_inner();
        self.fd = Some(register(fd)?);
        self.slave_open = true;
        Ok(())
    }
}
