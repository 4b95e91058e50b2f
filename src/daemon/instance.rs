//! One daemon per network namespace. The kernel state a daemon owns (the `inet eqlplus` table,
//! its rules and routes, the resolv.conf fragment) belongs to a network namespace, so a second
//! daemon there — started by hand while the service runs — must stop before it touches any of
//! it. The guard is an exclusive `flock` on a file named after the namespace's inode, in the
//! root-owned runtime directory (nobody else can plant a file there); the kernel releases it
//! when the holder dies, so a crash never leaves a stale lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where instance locks live: the service's `RuntimeDirectory`.
pub const RUNTIME_DIR: &str = "/run/eqlplus-dialer";

/// Why this daemon may not run.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another eqlplus-dialer daemon{} is running in this network namespace (it holds {}); \
         stop it first (systemctl stop eqlplus-dialer)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path.display()
    )]
    Running { pid: Option<i32>, path: PathBuf },
    #[error("cannot take the instance lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock: this daemon is the only one in its network namespace until it is dropped.
#[derive(Debug)]
pub struct InstanceLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock of the calling thread's network namespace in [`RUNTIME_DIR`].
    pub fn acquire() -> Result<InstanceLock, InstanceError> {
        Self::acquire_in(Path::new(RUNTIME_DIR))
    }

    /// Takes the lock of the calling thread's network namespace in `dir` (created 0755).
    pub fn acquire_in(dir: &Path) -> Result<InstanceLock, InstanceError> {
        let namespace = fs::metadata("/proc/thread-self/ns/net")
            .or_else(|_| fs::metadata("/proc/self/ns/net"))
            .map(|m| m.ino())
            .unwrap_or(0);
        let path = dir.join(format!("instance.netns-{namespace}.lock"));
        let io_err = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io_err)?;
        }
        // A file replaced between open and flock (a daemon that just stopped removed it) is
        // not the lock any more: try again with the new one.
        for _ in 0..3 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(&path)
                .map_err(io_err)?;
            let meta = file.metadata().map_err(io_err)?;
            if !meta.is_file() {
                return Err(io_err(io::Error::other("not a regular file")));
            }
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(InstanceError::Running {
                        pid: read_pid(&mut file),
                        path,
                    });
                }
                Err((_, e)) => return Err(io_err(e.into())),
            };
            let same = fs::symlink_metadata(&path)
                .is_ok_and(|now| now.ino() == meta.ino() && now.dev() == meta.dev());
            if !same {
                continue;
            }
            let pid = format!("{}\n", std::process::id());
            lock.set_len(0).map_err(io_err)?;
            lock.rewind().map_err(io_err)?;
            lock.write_all(pid.as_bytes()).map_err(io_err)?;
            return Ok(InstanceLock { path, _lock: lock });
        }
        Err(io_err(io::Error::other(
            "the lock file keeps being replaced",
        )))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed while still locked: a daemon starting now either locked the old file (and
        // sees it replaced) or creates a new one.
        let _ = fs::remove_file(&self.path);
    }
}

/// The holder's PID, as it wrote it (a few bytes at most).
fn read_pid(file: &mut File) -> Option<i32> {
    let mut buf = [0u8; 16];
    let n = file.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_instance_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire_in(dir.path()).unwrap();
        match InstanceLock::acquire_in(dir.path()) {
            Err(InstanceError::Running { pid, path }) => {
                assert_eq!(pid, Some(std::process::id() as i32));
                assert_eq!(path, first.path());
            }
            other => panic!("expected Running, got {other:?}"),
        }
        let path = first.path().to_path_buf();
        drop(first);
        assert!(!path.exists(), "the lock file goes with the daemon");
        let again = InstanceLock::acquire_in(dir.path()).unwrap();
        assert!(again.path().to_string_lossy().contains("instance.netns-"));
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "keep me").unwrap();
        let probe = InstanceLock::acquire_in(dir.path()).unwrap();
        let path = probe.path().to_path_buf();
        drop(probe);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(
            InstanceLock::acquire_in(dir.path()),
            Err(InstanceError::Io { .. })
        ));
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
    }
}
