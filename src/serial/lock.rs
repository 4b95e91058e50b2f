//! UUCP lock files (`/var/lock/LCK..ttyS0`), the convention pppd, minicom, ModemManager and
//! friends share so that two programs never drive one modem at once.
//!
//! The file holds the owner's PID as 10 ASCII characters and a newline (`"%10d\n"`). A lock
//! whose PID no longer exists is stale and is removed. Creation is atomic: the content is
//! written to a private temporary file which is then hard-linked to the lock name, so another
//! process never sees a half-written lock (pppd does the same).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Default lock directory on Linux (FHS); Debian links it to `/run/lock`.
pub const DEFAULT_LOCK_DIR: &str = "/var/lock";

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{device} is in use by process {pid} (lock file {path})")]
    Busy {
        device: String,
        pid: i32,
        path: PathBuf,
    },
    #[error("cannot create lock file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A held UUCP lock; the lock file is removed when this is dropped.
#[derive(Debug)]
pub struct UucpLock {
    path: PathBuf,
}

impl UucpLock {
    /// Takes the lock for `device` in `lock_dir` on behalf of this process.
    pub fn acquire(device: &Path, lock_dir: &Path) -> Result<UucpLock, LockError> {
        let path = lock_dir.join(lock_file_name(device));
        let me = std::process::id() as i32;
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Two rounds are enough: a stale lock is removed in the first and taken in the second;
        // a third contender winning in between is reported as the owner.
        for _ in 0..2 {
            match create_exclusive(&path, me) {
                Ok(()) => return Ok(UucpLock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(e)),
            }
            match read_owner(&path) {
                Some(pid) if pid > 0 && process_alive(pid) => {
                    return Err(LockError::Busy {
                        device: device.display().to_string(),
                        pid,
                        path,
                    });
                }
                owner => {
                    tracing::info!(lock = %path.display(), ?owner, "removing stale lock");
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(e)),
                    }
                }
            }
        }
        let pid = read_owner(&path).unwrap_or(0);
        Err(LockError::Busy {
            device: device.display().to_string(),
            pid,
            path,
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UucpLock {
    fn drop(&mut self) {
        // Only remove the file if it is still ours: never delete another owner's lock.
        if read_owner(&self.path) == Some(std::process::id() as i32) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `LCK..ttyS0` for `/dev/ttyS0`. Symlinks are resolved first so that two names of one device
/// share one lock; below `/dev/` the remaining path has `/` replaced by `_` (`/dev/pts/3` →
/// `LCK..pts_3`), as pppd does.
pub fn lock_file_name(device: &Path) -> String {
    let real = fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let text = real.to_string_lossy();
    let name = match text.strip_prefix("/dev/") {
        Some(rest) => rest.replace('/', "_"),
        None => real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| text.replace('/', "_")),
    };
    format!("LCK..{name}")
}

fn create_exclusive(path: &Path, pid: i32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".LTMP.{pid}.{}", unique_suffix()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        writeln!(f, "{pid:10}")?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The PID in a lock file: ASCII (the modern format) or a 4-byte binary int (old Kermit/UUCP).
fn read_owner(path: &Path) -> Option<i32> {
    let bytes = fs::read(path).ok()?;
    parse_owner(&bytes)
}

fn parse_owner(bytes: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(pid) = text.and_then(|t| t.parse::<i32>().ok()) {
        return Some(pid);
    }
    if bytes.len() == 4 {
        return Some(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    }
    None
}

/// Whether a process exists; EPERM means it exists but belongs to someone else.
fn process_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_pppd() {
        assert_eq!(lock_file_name(Path::new("/dev/ttyS0")), "LCK..ttyS0");
        assert_eq!(
            lock_file_name(Path::new("/nonexistent/dir/ttyUSB2")),
            "LCK..ttyUSB2"
        );
    }

    #[test]
    fn owner_formats() {
        assert_eq!(parse_owner(b"      1234\n"), Some(1234));
        assert_eq!(parse_owner(&77i32.to_ne_bytes()), Some(77));
        assert_eq!(parse_owner(b"garbage!!"), None);
        assert_eq!(parse_owner(b""), None);
    }

    #[test]
    fn acquire_writes_pid_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Path::new("/dev/ttyS9");
        let lock = UucpLock::acquire(dev, dir.path()).unwrap();
        let content = fs::read_to_string(lock.path()).unwrap();
        assert_eq!(content, format!("{:10}\n", std::process::id()));
        assert_eq!(content.len(), 11);
        // A second taker in this (live) process is refused and told who holds it.
        match UucpLock::acquire(dev, dir.path()) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, std::process::id() as i32),
            other => panic!("expected Busy, got {other:?}"),
        }
        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn stale_lock_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Path::new("/dev/ttyS8");
        let path = dir.path().join("LCK..ttyS8");
        // PID beyond pid_max: certainly dead.
        fs::write(&path, format!("{:10}\n", 99_999_999)).unwrap();
        let lock = UucpLock::acquire(dev, dir.path()).unwrap();
        assert_eq!(
            read_owner(lock.path()),
            Some(std::process::id() as i32),
            "stale lock replaced by ours"
        );
    }

    #[test]
    fn garbage_lock_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("LCK..ttyS7"), b"not a pid").unwrap();
        assert!(UucpLock::acquire(Path::new("/dev/ttyS7"), dir.path()).is_ok());
    }
}
