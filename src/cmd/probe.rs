//! `eqlplus-dialer probe`: the wvdialconf successor. Finds modems on serial ports and prints
//! a ready-to-paste `[[line]]` stanza for each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{Instant, timeout};

use super::PortArgs;
use crate::serial::{SerialError, SerialPort};

/// Rates tried in order, fastest first (as wvdialconf does).
const BAUD_RATES: [u32; 5] = [115_200, 57_600, 38_400, 19_200, 9_600];

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Ports to try; default: every /dev/ttyS*, /dev/ttyUSB* and /dev/ttyACM*.
    #[arg(value_name = "DEVICE")]
    pub devices: Vec<PathBuf>,
    #[command(flatten)]
    pub port: PortArgs,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, default_value_t = 700, value_name = "MS")]
    pub answer_timeout: u64,
    /// Upper bound for one port, in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub port_timeout: u64,
}

/// What was found on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Modem(Box<ModemInfo>),
    /// The port opened but nothing answered `AT`.
    Silent,
    /// The port was not tried: locked by someone else, cannot be opened, no UART.
    Skipped(String),
}

/// A modem that answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModemInfo {
    pub baud: u32,
    /// Lines of `ATI`.
    pub identity: Vec<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// What `AT+GCAP` lists (V.250): `+CGSM` for GSM/UMTS/LTE, `+MS` for analog modulations.
    pub capabilities: Vec<String>,
    /// A cellular modem's IMEI (`AT+CGSN`), SIM card (`AT+CCID`) and SIM state (`AT+CPIN?`).
    pub imei: Option<String>,
    pub iccid: Option<String>,
    pub sim: Option<crate::cellular::SimState>,
    /// A name that stays across replugs: udev's `/dev/serial/by-id` link to the port.
    pub by_id: Option<PathBuf>,
    /// The USB device the port belongs to.
    pub usb: Option<crate::serial::identity::UsbTty>,
}

impl ModemInfo {
    /// A modem whose `AT+GCAP` names a cellular command set (as ModemManager decides). Analog
    /// modems often know `AT+CGMI` too, so that alone says nothing.
    pub fn is_cellular(&self) -> bool {
        const CELLULAR: [&str; 4] = ["+CGSM", "+CIS707-A", "+CIS707", "+CDMA"];
        self.capabilities
            .iter()
            .any(|c| CELLULAR.iter().any(|k| c.eq_ignore_ascii_case(k)))
    }

    fn description(&self) -> String {
        match (&self.manufacturer, &self.model) {
            (Some(m), Some(model)) => format!("{m} {model}"),
            _ => self
                .identity
                .first()
                .cloned()
                .unwrap_or_else(|| "Hayes-compatible modem".into()),
        }
    }
}

/// A modem's reply to one command: information lines and the final result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtReply {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// Parses what a modem sent after a command, once it holds a final `OK`/`ERROR` (or
/// numeric `0`/`4`); the echo of `command` and blank lines are dropped.
pub fn parse_at_reply(received: &[u8], command: &str) -> Option<AtReply> {
    let text = String::from_utf8_lossy(received);
    let mut lines = Vec::new();
    for line in text.split(['\r', '\n']).map(str::trim) {
        match line {
            "" => {}
            "OK" | "0" => return Some(AtReply { lines, ok: true }),
            "ERROR" | "4" => return Some(AtReply { lines, ok: false }),
            l if l.starts_with("+CME ERROR") => return Some(AtReply { lines, ok: false }),
            l if l.eq_ignore_ascii_case(command) => {}
            l => lines.push(l.to_string()),
        }
    }
    None
}

pub async fn run(args: ProbeArgs) -> i32 {
    let devices = if args.devices.is_empty() {
        default_candidates()
    } else {
        args.devices.clone()
    };
    if devices.is_empty() {
        eprintln!(
            "eqlplus-dialer probe: no serial ports found (/dev/ttyS*, /dev/ttyUSB*, /dev/ttyACM*)"
        );
        return 1;
    }
    // Every port at once; each is bounded, so the run takes as long as the slowest port.
    let args = std::sync::Arc::new(args);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, device) in devices.iter().cloned().enumerate() {
        let args = args.clone();
        tasks.spawn(async move {
            let bound = Duration::from_secs(args.port_timeout);
            let finding = match timeout(bound, probe_port(&device, &args)).await {
                Ok(f) => f,
                Err(_) => Finding::Skipped(format!("no answer within {}s", bound.as_secs())),
            };
            (index, device, finding)
        });
    }
    let mut findings: Vec<(usize, PathBuf, Finding)> = tasks.join_all().await;
    findings.sort_by_key(|(index, _, _)| *index);
    let findings: Vec<(PathBuf, Finding)> = findings.into_iter().map(|(_, d, f)| (d, f)).collect();
    let mut found = 0;
    for (device, finding) in &findings {
        match finding {
            Finding::Modem(info) => {
                found += 1;
                println!(
                    "{}: {} at {} bit/s",
                    device.display(),
                    info.description(),
                    info.baud
                );
            }
            Finding::Silent => println!("{}: no modem answered", device.display()),
            Finding::Skipped(why) => println!("{}: skipped ({why})", device.display()),
        }
    }
    for (device, finding) in &findings {
        if let Finding::Modem(info) = finding {
            println!();
            print!("{}", stanza(device, info));
        }
    }
    if found == 0 {
        eprintln!("eqlplus-dialer probe: no modem found");
        return 1;
    }
    0
}

fn default_candidates() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        ["ttyS", "ttyUSB", "ttyACM"].iter().any(|prefix| {
                            n.strip_prefix(prefix).is_some_and(|rest| {
                                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                            })
                        })
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // ttyS2 before ttyS10.
    found.sort_by_key(|p| {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
        let prefix = name[..name.len() - digits.len()].to_string();
        (prefix, digits.parse::<u32>().unwrap_or(0))
    });
    found
}

async fn probe_port(device: &Path, args: &ProbeArgs) -> Finding {
    let port = match SerialPort::open_async(device, &args.port.serial_config()).await {
        Ok(p) => p,
        Err(SerialError::Lock(e)) => return Finding::Skipped(e.to_string()),
        Err(e) => return Finding::Skipped(e.to_string()),
    };
    if port.uart_absent() {
        return Finding::Skipped("no UART behind this port".into());
    }
    let wait = Duration::from_millis(args.answer_timeout);
    for baud in BAUD_RATES {
        if port.set_baud(baud, args.port.flow).is_err() {
            continue;
        }
        let _ = port.flush_input();
        // Some modems need a first AT to auto-detect the rate: try twice.
        let mut answered = false;
        for _ in 0..2 {
            if matches!(at(&port, "AT", wait).await, Some(r) if r.ok) {
                answered = true;
                break;
            }
        }
        if !answered {
            continue;
        }
        let mut info = ModemInfo {
            baud,
            ..ModemInfo::default()
        };
        // Verbose results and echo on, as wvdialconf does, before asking who it is.
        at(&port, "ATQ0 V1 E1", wait).await;
        if let Some(r) = at(&port, "ATI", wait).await.filter(|r| r.ok) {
            info.identity = r.lines;
        }
        info.manufacturer = at(&port, "AT+CGMI", wait)
            .await
            .filter(|r| r.ok)
            .and_then(|r| r.lines.into_iter().next());
        info.model = at(&port, "AT+CGMM", wait)
            .await
            .filter(|r| r.ok)
            .and_then(|r| r.lines.into_iter().next());
        info.capabilities = at(&port, "AT+GCAP", wait)
            .await
            .filter(|r| r.ok)
            .map(|r| parse_gcap(&r.lines))
            .unwrap_or_default();
        if info.is_cellular() {
            use crate::cellular::reply;
            let first = |r: Option<AtReply>, parse: fn(&str) -> Option<String>| {
                r.and_then(|r| r.lines.iter().find_map(|l| parse(l)))
            };
            info.imei = first(at(&port, "AT+CGSN", wait).await, reply::parse_imei);
            info.iccid = first(at(&port, "AT+CCID", wait).await, reply::parse_iccid);
            info.sim = at(&port, "AT+CPIN?", wait)
                .await
                .and_then(|r| r.lines.iter().find_map(|l| reply::parse_cpin(l)));
        }
        info.by_id = by_id_link(Path::new("/dev/serial/by-id"), device);
        info.usb = std::fs::canonicalize(device).ok().and_then(|real| {
            let name = real.file_name()?.to_string_lossy().into_owned();
            crate::serial::identity::usb_of(Path::new("/sys"), &name)
        });
        return Finding::Modem(Box::new(info));
    }
    Finding::Silent
}

/// The capabilities of `+GCAP: +CGSM,+DS,+ES` (the prefix may be missing).
fn parse_gcap(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| {
            let l = l.trim();
            let list = l
                .get(..6)
                .filter(|p| p.eq_ignore_ascii_case("+GCAP:"))
                .map_or(l, |_| &l[6..]);
            list.split(',').map(|c| c.trim().to_string())
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Sends one command and waits for its final result.
async fn at(port: &SerialPort, command: &str, wait: Duration) -> Option<AtReply> {
    port.write_all(format!("{command}\r").as_bytes())
        .await
        .ok()?;
    let deadline = Instant::now() + wait;
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = timeout(
            deadline.saturating_duration_since(Instant::now()),
            port.read(&mut buf),
        )
        .await
        .ok()?
        .ok()?;
        received.extend_from_slice(&buf[..n]);
        if let Some(reply) = parse_at_reply(&received, command) {
            return Some(reply);
        }
        if received.len() > 64 * 1024 {
            return None;
        }
    }
}

/// The link in `dir` (udev's `/dev/serial/by-id`) that leads to the same tty as `device`.
fn by_id_link(dir: &Path, device: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(device).ok()?;
    let mut links: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| std::fs::canonicalize(p).is_ok_and(|r| r == real))
        .collect();
    links.sort();
    links.into_iter().next()
}

/// A `[[line]]` configuration stanza for a found modem. A modem with a by-id link is named by
/// it (it stays the same across replugs and reboots; the tty number does not).
pub fn stanza(device: &Path, info: &ModemInfo) -> String {
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "modem".into());
    let mut s = format!("# {}: {}\n", device.display(), info.description());
    if let Some(usb) = &info.usb {
        s += &format!("# USB {}\n", usb.describe());
    }
    if info.imei.is_some() || info.iccid.is_some() {
        s += &format!(
            "# IMEI {}, SIM card (ICCID) {}\n",
            info.imei.as_deref().unwrap_or("-"),
            info.iccid.as_deref().unwrap_or("-")
        );
    }
    if info.sim == Some(crate::cellular::SimState::Pin) {
        s += &format!("# the SIM wants its PIN: add `sim-pin {name} <PIN>` to the secrets file\n");
    }
    let named_by = match &info.by_id {
        Some(link) if link != device => {
            s += &format!(
                "# {} today; the by-id link stays across replugs\n",
                device.display()
            );
            link.as_path()
        }
        _ => device,
    };
    s += "[[line]]\n";
    s += &format!(
        "name = \"{name}\"\ndevice = \"{}\"\nbaud = {}\n",
        named_by.display(),
        info.baud
    );
    if let Some(usb) = &info.usb {
        s += &usb_alternatives(usb);
    }
    if let Some(imei) = &info.imei {
        s += &format!("#imei = \"{imei}\"   # dial only if this modem answers there\n");
    }
    if info.is_cellular() {
        s += "dial_chat = \"/etc/eqlplus-dialer/chat/gsm-cellular.chat\"\n";
        s += "apn = \"internet\"          # your provider's APN\n";
    } else {
        s += "dial_chat = \"/etc/eqlplus-dialer/chat/hayes-dialup.chat\"\n";
        s += "phone = \"5551234\"         # your ISP's number\n";
        s += "user = \"username\"\n";
    }
    s
}

/// Instead of `device`: the modem by what it is, or by the USB socket it sits in.
fn usb_alternatives(usb: &crate::serial::identity::UsbTty) -> String {
    let interface = usb
        .interface
        .map(|i| format!(", usb_interface = {i}"))
        .unwrap_or_default();
    let serial = usb
        .serial
        .as_ref()
        .map(|s| format!(", usb_serial = \"{s}\""))
        .unwrap_or_default();
    format!(
        "# or instead of device, by what it is:  usb = \"{:04x}:{:04x}\"{serial}{interface}\n\
         # or by the USB socket it is in:        usb_port = \"{}\"{interface}\n",
        usb.vid, usb.pid, usb.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_at_reply(b"AT\r\r\nO", "AT"), None);
        assert_eq!(
            parse_at_reply(b"AT\r\r\nOK\r\n", "AT"),
            Some(AtReply {
                lines: vec![],
                ok: true
            })
        );
        assert_eq!(
            parse_at_reply(b"\r\nSimModem 56K\r\n\r\nOK\r\n", "ATI"),
            Some(AtReply {
                lines: vec!["SimModem 56K".into()],
                ok: true
            })
        );
        assert_eq!(
            parse_at_reply(b"AT+CGMI\r\r\nERROR\r\n", "AT+CGMI"),
            Some(AtReply {
                lines: vec![],
                ok: false
            })
        );
        assert_eq!(
            parse_at_reply(b"0\r", "AT"),
            Some(AtReply {
                lines: vec![],
                ok: true
            })
        );
        assert_eq!(
            parse_at_reply(b"\r\n+CME ERROR: 10\r\n", "AT+CPIN?"),
            Some(AtReply {
                lines: vec![],
                ok: false
            })
        );
    }

    #[test]
    fn a_cellular_modem_is_named_by_its_by_id_link_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let tty = dir.path().join("ttyUSB2");
        std::fs::write(&tty, "").unwrap();
        let by_id = dir.path().join("by-id");
        std::fs::create_dir(&by_id).unwrap();
        let link = by_id.join("usb-Sierra_Wireless_EM7455-if03-port0");
        std::os::unix::fs::symlink(&tty, &link).unwrap();
        std::os::unix::fs::symlink(dir.path().join("ttyUSB9"), by_id.join("other")).unwrap();
        assert_eq!(by_id_link(&by_id, &tty), Some(link.clone()));
        let info = ModemInfo {
            baud: 115_200,
            capabilities: vec!["+CGSM".into()],
            imei: Some("356938035643809".into()),
            iccid: Some("89490200001234567892".into()),
            sim: Some(crate::cellular::SimState::Pin),
            by_id: Some(link.clone()),
            usb: Some(crate::serial::identity::UsbTty {
                tty: "ttyUSB2".into(),
                vid: 0x1199,
                pid: 0x9071,
                serial: Some("LQ72".into()),
                interface: Some(3),
                port: "1-1.2".into(),
                device_dir: "/sys/devices/x/1-1.2".into(),
            }),
            ..Default::default()
        };
        let s = stanza(&tty, &info);
        assert!(
            s.contains("usb = \"1199:9071\", usb_serial = \"LQ72\", usb_interface = 3\n"),
            "{s}"
        );
        assert!(
            s.contains("usb_port = \"1-1.2\", usb_interface = 3\n"),
            "{s}"
        );
        assert!(s.contains("#imei = \"356938035643809\""), "{s}");
        // What it suggests is a valid line: uncommented, each alternative parses.
        let usb_line = s
            .lines()
            .find_map(|l| l.strip_prefix("# or instead of device, by what it is:"))
            .unwrap()
            .replace(", ", "\n");
        crate::config::Config::parse(
            &format!("[[line]]\nname = \"lte\"\n{usb_line}\nimei = \"356938035643809\"\n"),
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(
            s.contains(&format!("device = \"{}\"", link.display())),
            "{s}"
        );
        assert!(s.contains("# IMEI 356938035643809, SIM card (ICCID) 89490200001234567892"));
        assert!(s.contains("sim-pin ttyUSB2 <PIN>"), "{s}");
        assert!(
            s.contains("today; the by-id link stays across replugs"),
            "{s}"
        );
    }

    #[test]
    fn stanzas_follow_the_modem_kind() {
        // An analog modem that knows +CGMI is still analog.
        let usr = ModemInfo {
            manufacturer: Some("U.S. Robotics".into()),
            capabilities: parse_gcap(&["+GCAP: +MS,+ES,+DS".into()]),
            ..Default::default()
        };
        assert!(!usr.is_cellular());
        assert_eq!(
            parse_gcap(&["+GCAP: +CGSM, +DS,+ES".into()]),
            vec!["+CGSM", "+DS", "+ES"]
        );
        assert!(stanza(Path::new("/dev/ttyS0"), &usr).contains("hayes-dialup.chat"));
        let dialup = ModemInfo {
            baud: 57600,
            identity: vec!["56000".into()],
            ..Default::default()
        };
        let s = stanza(Path::new("/dev/ttyS1"), &dialup);
        assert!(
            s.contains("name = \"ttyS1\"")
                && s.contains("hayes-dialup.chat")
                && s.contains("baud = 57600"),
            "{s}"
        );
        let cell = ModemInfo {
            baud: 115200,
            manufacturer: Some("Quectel".into()),
            model: Some("EC25".into()),
            capabilities: parse_gcap(&["+GCAP: +CGSM".into()]),
            ..Default::default()
        };
        let s = stanza(Path::new("/dev/ttyUSB2"), &cell);
        assert!(s.starts_with("# /dev/ttyUSB2: Quectel EC25\n"), "{s}");
        assert!(
            s.contains("gsm-cellular.chat") && s.contains("apn = "),
            "{s}"
        );
    }
}
