//! Finding a line's modem at each dial: its path, or the tty its USB match names today (read
//! from sysfs), and where the line insists on an IMEI or ICCID, the candidate that says so.
//! A line whose modem is not there waits, without polling, for a change that may bring it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cellular::reply::{parse_iccid, parse_imei};
use crate::serial::identity::{self, DeviceSpec, MatchError, ModemId};
use crate::serial::{SerialConfig, SerialPort, at, presence};

/// Where sysfs and the device nodes are.
const SYSFS: &str = "/sys";
const DEV: &str = "/dev";

/// How long a modem may take to say who it is.
const IDENTIFY_WAIT: Duration = Duration::from_secs(3);

/// What a look for the modem found.
pub enum Located {
    /// Opened (and, where the line asks, identified).
    Opened { port: SerialPort, path: PathBuf },
    /// No such modem now; `seen` is what was there, to wait for a change from.
    Absent { why: String, seen: Seen },
    /// The attempt fails with this (the port would not open, a modem did not answer).
    Failed(String),
}

/// The candidates present at a look: each one's path, the node it leads to and that node's
/// inode (a replugged modem is a new node even under the old name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen(Vec<(PathBuf, PathBuf, u64)>);

impl Seen {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(p, _, _)| p.as_path())
    }
}

/// The modem's candidates present now: the path, or the ttys the USB match names.
fn look(spec: &DeviceSpec) -> Seen {
    let paths: Vec<PathBuf> = match spec {
        DeviceSpec::Path(p) => vec![p.clone()],
        DeviceSpec::Usb(m) => {
            let ttys = identity::usb_ttys(Path::new(SYSFS));
            identity::matching(m, &ttys)
                .into_iter()
                .map(|t| Path::new(DEV).join(&t.tty))
                .collect()
        }
    };
    let seen = paths
        .into_iter()
        .filter_map(|p| {
            let node = std::fs::canonicalize(&p).ok()?;
            let ino = std::fs::metadata(&node).ok()?.ino();
            Some((p, node, ino))
        })
        .collect();
    Seen(seen)
}

/// Opens the line's modem: the one candidate, or the first that answers to `id`.
pub async fn open(spec: &DeviceSpec, id: &ModemId, serial: &SerialConfig) -> Located {
    let owned = spec.clone();
    let seen = match tokio::task::spawn_blocking(move || look(&owned)).await {
        Ok(seen) => seen,
        Err(e) => return Located::Failed(format!("cannot look for the modem: {e}")),
    };
    let paths: Vec<PathBuf> = seen.paths().map(Path::to_path_buf).collect();
    match (paths.as_slice(), spec) {
        ([], DeviceSpec::Path(p)) => {
            return Located::Absent {
                why: format!("no device: {} is not there (unplugged?)", p.display()),
                seen,
            };
        }
        ([], DeviceSpec::Usb(m)) => {
            return Located::Absent {
                why: format!("no device: no tty of {m} is present"),
                seen,
            };
        }
        ([_, _, ..], DeviceSpec::Usb(m)) if !id.is_set() => {
            return Located::Failed(
                MatchError::Ambiguous {
                    what: m.to_string(),
                    ttys: paths.iter().map(|p| p.display().to_string()).collect(),
                }
                .to_string(),
            );
        }
        _ => {}
    }
    let mut others = Vec::new();
    let mut errors = Vec::new();
    for path in &paths {
        let port = match SerialPort::open_async(path, serial).await {
            Ok(port) => port,
            // Gone between the look and the open.
            Err(_) if !presence::present(path) => continue,
            Err(e) if paths.len() == 1 && !id.is_set() => return Located::Failed(e.to_string()),
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let identified = if id.is_set() {
            identify(&port, id).await
        } else {
            Ok(())
        };
        match identified {
            Ok(()) => {
                return Located::Opened {
                    port,
                    path: path.clone(),
                };
            }
            Err(Identity::Other(who)) => others.push(format!("{} is {who}", path.display())),
            Err(Identity::NoAnswer(why)) => errors.push(format!("{}: {why}", path.display())),
        }
        // Dropping the port closes it and frees its lock for whoever it belongs to.
    }
    if !errors.is_empty() {
        // A port in use or a modem that did not answer may be ours: try again later.
        return Located::Failed(errors.join("; "));
    }
    let why = if others.is_empty() {
        format!("no device: {spec} went away")
    } else {
        format!("no device: no modem with {id} ({})", others.join("; "))
    };
    Located::Absent { why, seen }
}

/// Returns when the look would find something other than `seen`: a modem plugged in,
/// replugged or removed. Never times out.
pub async fn wait_for_change(spec: &DeviceSpec, seen: &Seen) -> std::io::Result<()> {
    let dirs = || match spec {
        DeviceSpec::Path(p) => presence::watched_dirs(p),
        DeviceSpec::Usb(_) => vec![PathBuf::from(DEV)],
    };
    presence::wait_until(dirs, || look(spec) != *seen).await
}

enum Identity {
    /// Another modem (its IMEI/ICCID).
    Other(String),
    /// It did not say.
    NoAnswer(String),
}

/// Asks the modem on `port` its IMEI and ICCID, as far as `id` names them.
async fn identify(port: &SerialPort, id: &ModemId) -> Result<(), Identity> {
    type Parse = fn(&str) -> Option<String>;
    let checks: [(&Option<String>, &str, &str, Parse); 2] = [
        (&id.imei, "AT+CGSN", "IMEI", parse_imei),
        (&id.iccid, "AT+CCID", "ICCID", parse_iccid),
    ];
    for (want, command, what, parse) in checks {
        let Some(want) = want else { continue };
        let lines = at::ask(port, command, IDENTIFY_WAIT).await.map_err(|e| {
            match e.starts_with("+CME ERROR") {
                // No SIM (10), SIM failure: another modem for this line, as far as it knows.
                true => Identity::Other(format!("without a readable SIM ({e})")),
                false => Identity::NoAnswer(format!("{command}: {e}")),
            }
        })?;
        match lines.iter().find_map(|l| parse(l)) {
            Some(got) if got == *want => {}
            Some(got) => return Err(Identity::Other(format!("{what} {got}"))),
            None => {
                return Err(Identity::NoAnswer(format!(
                    "no {what} in its answer to {command}"
                )));
            }
        }
    }
    Ok(())
}
