//! Waiting for a modem to be plugged in, without polling: inotify on the nearest directory of
//! its path that exists (`/dev` for `/dev/ttyUSB2`; `/dev/serial` or `/dev` while udev's
//! `/dev/serial/by-id` is not there yet), and for a symlink whose target is missing, on its
//! target's directory too. Any change there is a reason to look again.

use std::io;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use inotify::{Inotify, WatchMask};

/// Whether the device at `path` is there (a symlink counts only if its target is).
pub fn present(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}

/// Returns once `path` exists. Never times out: the caller selects it against its commands.
pub async fn wait_for(path: &Path) -> io::Result<()> {
    wait_until(|| watched_dirs(path), || present(path)).await
}

/// Returns once `ready()` holds, looking again at each change in the directories `dirs()`
/// names (asked anew each time: they may appear). Never times out.
pub async fn wait_until(
    dirs: impl Fn() -> Vec<PathBuf>,
    ready: impl Fn() -> bool,
) -> io::Result<()> {
    loop {
        if ready() {
            return Ok(());
        }
        let inotify = Inotify::init()?;
        let mask = WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        for dir in dirs() {
            inotify.watches().add(&dir, mask)?;
        }
        let mut events = inotify.into_event_stream([0u8; 4096])?;
        // It may have changed between the look and the watch.
        if ready() {
            return Ok(());
        }
        match events.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(io::Error::other("inotify closed")),
        }
    }
}

/// The directories whose changes can make `path` appear.
pub fn watched_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![nearest_dir(path)];
    // A dangling symlink (a by-id link to a tty that is gone): its target's directory too.
    if let Ok(target) = std::fs::read_link(path) {
        let target = match path.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
        let dir = nearest_dir(&target);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The deepest existing directory above `path` (`/` at worst).
fn nearest_dir(path: &Path) -> PathBuf {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.is_dir() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    PathBuf::from("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_a_device_in_a_directory_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial/by-id/usb-Sim_Modem-if03");
        assert!(!present(&path));
        let wait = tokio::spawn({
            let path = path.clone();
            async move { wait_for(&path).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!wait.is_finished());
        // udev: first the directories, then the link, to a tty that exists.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!wait.is_finished());
        let tty = dir.path().join("ttyUSB3");
        std::fs::write(&tty, "").unwrap();
        std::os::unix::fs::symlink(&tty, &path).unwrap();
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("seen at once")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_dangling_link_waits_for_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pts")).unwrap();
        let tty = dir.path().join("pts/7");
        let link = dir.path().join("ttySIM0");
        std::os::unix::fs::symlink(&tty, &link).unwrap();
        let wait = tokio::spawn({
            let link = link.clone();
            async move { wait_for(&link).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!wait.is_finished());
        std::fs::write(&tty, "").unwrap();
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("seen at once")
            .unwrap()
            .unwrap();
    }
}
