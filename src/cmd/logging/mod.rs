//! Where the log goes: the journal, natively ([`journal`]: structured fields `LINE=ttyS1`,
//! `STATE`, `REASON`, …, so `journalctl -u eqlplus-dialer LINE=ttyS1` works) for a daemon whose stderr
//! systemd connected to the journal, or that `up` started on a machine with a journal; a file
//! for a daemon `up` started where there is none; stderr, as text, for everything else.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub mod journal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Journal,
    /// Appended to this file (a detached daemon without a journal).
    File(PathBuf),
}

/// Where a daemon logs: `detached` (started by `up`): the journal if one runs, else
/// `log_file`; otherwise the journal if systemd connected stderr to it (`JOURNAL_STREAM`
/// names stderr's device and inode, as sd_journal_stream_fd documents), else stderr.
pub fn daemon_destination(detached: bool, log_file: &Path) -> Destination {
    if detached {
        if Path::new(JOURNAL_SOCKET).exists() {
            Destination::Journal
        } else {
            Destination::File(log_file.to_path_buf())
        }
    } else if stderr_is_journal() {
        Destination::Journal
    } else {
        Destination::Stderr
    }
}

/// Whether stderr is the journal stream systemd gave this process.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(2) else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// Starts logging with `filter` to `destination`. A bad filter is reported and `fallback`
/// used instead (tracing would otherwise drop the bad directive and, for a misspelt level,
/// log nothing at all); a journal or file that cannot be opened is reported and stderr used.
pub fn init(filter: &str, fallback: &str, destination: &Destination) {
    let checked = crate::config::check_log_filter(filter)
        .map_err(|e| e.to_string())
        .and_then(|()| EnvFilter::try_new(filter).map_err(|e| format!("'{filter}': {e}")));
    let filter = match checked {
        Ok(f) => f,
        Err(e) => {
            eprintln!("eqlplus-dialer: bad log filter: {e}; logging at {fallback} instead");
            EnvFilter::new(fallback)
        }
    };
    let registry = tracing_subscriber::registry().with(filter);
    match destination {
        Destination::Journal => {
            match journal::JournalLayer::connect(Path::new(JOURNAL_SOCKET), "eqlplus-dialer") {
                Ok(journal) => return registry.with(journal).init(),
                Err(e) => {
                    eprintln!("eqlplus-dialer: cannot log to the journal ({e}); using stderr");
                }
            }
        }
        Destination::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                return registry
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_writer(Mutex::new(file)),
                    )
                    .init();
            }
            Err(e) => eprintln!(
                "eqlplus-dialer: cannot log to {} ({e}); using stderr",
                path.display()
            ),
        },
        Destination::Stderr => {}
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_daemon_without_a_journal_logs_to_its_file() {
        let file = Path::new("/tmp/x.log");
        let want = if Path::new(JOURNAL_SOCKET).exists() {
            Destination::Journal
        } else {
            Destination::File(file.into())
        };
        assert_eq!(daemon_destination(true, file), want);
    }
}
