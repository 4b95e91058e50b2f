//! UUCP lock files (`/var/lock/LCK..ttyS0`), the convention pppd, minicom, ModemManager and
//! friends share so that two programs never drive one modem at once.
//!
//! The file holds the owner's PID as 10 ASCII characters and a newline (`"%10d\n"`). A lock
//! whose PID no longer exists is stale and is removed. Creation is atomic: the content is
//! written to a private temporary file which is then hard-linked to the lock name, so another
//! process never sees a half-written lock (pppd does the same).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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
    /// Something other than a regular file sits at the lock's name (the lock directory is
    /// world-writable): never read, waited on or removed by us.
    #[error("lock file {path} is a {kind}, not a regular file; remove it")]
    NotAFile { path: PathBuf, kind: &'static str },
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
            match read_owner(&path).map_err(io_err)? {
                Owner::NotAFile(kind) => return Err(LockError::NotAFile { path, kind }),
                Owner::Pid(pid) if pid > 0 && process_alive(pid) => {
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
        let pid = match read_owner(&path).map_err(io_err)? {
            Owner::Pid(pid) => pid,
            Owner::NotAFile(kind) => return Err(LockError::NotAFile { path, kind }),
            Owner::Unknown => 0,
        };
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
        if let Ok(Owner::Pid(pid)) = read_owner(&self.path)
            && pid == std::process::id() as i32
        {
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

/// At most this much of a lock file is read: a PID is 11 bytes; anything longer that does not
/// parse within this is garbage, hence stale (as in pppd).
const MAX_LOCK_BYTES: u64 = 128;

/// What a lock file says about its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A PID (not necessarily alive).
    Pid(i32),
    /// Missing, empty or unparsable: stale.
    Unknown,
    /// Not a regular file (a FIFO, directory, symlink, device, socket): planted by someone.
    NotAFile(&'static str),
}

/// The owner named in a lock file, read without trusting the file: the lock directory is
/// world-writable, so the name may be a FIFO (a blocking read), a symlink, a device or a huge
/// file. Symlinks are not followed, only regular files are read, and only their first
/// [`MAX_LOCK_BYTES`].
fn read_owner(path: &Path) -> io::Result<Owner> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Ok(Owner::NotAFile(kind_of(&meta.file_type())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Owner::Unknown),
        Err(e) => return Err(e),
    }
    // The name may have been swapped since: O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a
    // FIFO from blocking the open, and fstat checks what was really opened.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Owner::Unknown),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Owner::NotAFile("symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Owner::NotAFile(kind_of(&meta.file_type())));
    }
    let mut bytes = Vec::with_capacity(MAX_LOCK_BYTES as usize);
    file.take(MAX_LOCK_BYTES).read_to_end(&mut bytes)?;
    Ok(parse_owner(&bytes).map_or(Owner::Unknown, Owner::Pid))
}

fn kind_of(t: &fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// The PID in a lock file's bytes: ASCII (the modern format) or a 4-byte binary int (old
/// Kermit/UUCP).
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
            read_owner(lock.path()).unwrap(),
            Owner::Pid(std::process::id() as i32),
            "stale lock replaced by ours"
        );
    }

    #[test]
    fn garbage_lock_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("LCK..ttyS7"), b"not a pid").unwrap();
        assert!(UucpLock::acquire(Path::new("/dev/ttyS7"), dir.path()).is_ok());
    }

    /// Runs `f` on a thread and fails (instead of hanging the suite) if it does not return
    /// within 10 s.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("lock acquisition hung")
    }

    #[test]
    fn planted_fifo_is_refused_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LCK..ttyS1");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let lock_dir = dir.path().to_path_buf();
        let result = within_10s(move || UucpLock::acquire(Path::new("/dev/ttyS1"), &lock_dir));
        match result {
            Err(e @ LockError::NotAFile { kind: "FIFO", .. }) => {
                let text = e.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains("FIFO, not a regular file"), "{text}");
            }
            other => panic!("expected NotAFile(FIFO), got {other:?}"),
        }
        // Left alone: not ours to remove.
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    }

    #[test]
    fn planted_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A symlink to a file holding a live PID (ours): a regular lock would say "busy", a
        // symlinked one is refused as planted.
        let target = dir.path().join("elsewhere");
        fs::write(&target, format!("{:10}\n", std::process::id())).unwrap();
        let path = dir.path().join("LCK..ttyS2");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        match UucpLock::acquire(Path::new("/dev/ttyS2"), dir.path()) {
            Err(LockError::NotAFile {
                kind: "symbolic link",
                path: p,
            }) => assert_eq!(p, path),
            other => panic!("expected NotAFile(symbolic link), got {other:?}"),
        }
        assert!(target.exists());
        assert_eq!(read_owner(&path).unwrap(), Owner::NotAFile("symbolic link"));
    }

    #[test]
    fn planted_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("LCK..ttyS3")).unwrap();
        match UucpLock::acquire(Path::new("/dev/ttyS3"), dir.path()) {
            Err(
                e @ LockError::NotAFile {
                    kind: "directory", ..
                },
            ) => assert!(e.to_string().contains("LCK..ttyS3 is a directory")),
            other => panic!("expected NotAFile(directory), got {other:?}"),
        }
    }

    fn peak_rss_kib() -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn huge_sparse_lock_is_stale_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LCK..ttyS4");
        fs::File::create(&path).unwrap().set_len(2 << 30).unwrap();
        let before = peak_rss_kib();
        let lock_dir = dir.path().to_path_buf();
        let started = std::time::Instant::now();
        let lock = within_10s(move || UucpLock::acquire(Path::new("/dev/ttyS4"), &lock_dir))
            .expect("a garbage lock is stale and replaced");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
        assert_eq!(fs::metadata(lock.path()).unwrap().len(), 11);
    }

    #[test]
    fn drop_leaves_a_planted_fifo_alone() {
        let dir = tempfile::tempdir().unwrap();
        let lock = UucpLock::acquire(Path::new("/dev/ttyS5"), dir.path()).unwrap();
        let path = lock.path().to_path_buf();
        fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        within_10s(move || drop(lock));
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    }
}
