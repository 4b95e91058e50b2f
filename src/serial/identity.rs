//! Which tty a modem is today. USB modems come back as another `ttyUSBn` after a replug or a
//! reboot; a line can name its modem by what does not change — USB vendor:product (and
//! serial number, and interface: a cellular modem has several ttys), or the USB port it sits
//! in — and the tty is looked up in sysfs at each dial. Also the reverse, for a line named by
//! path: the USB device behind a tty (for `status` and the USB port reset).
//!
//! sysfs is read from a root given by the caller (`/sys`; a tree of files in tests).

use std::path::{Path, PathBuf};

/// A tty that belongs to a USB device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbTty {
    /// `ttyUSB2`, `ttyACM0`.
    pub tty: String,
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
    /// The USB interface the tty is on (`bInterfaceNumber`).
    pub interface: Option<u8>,
    /// The USB port path (`1-1.2`): stays the same while the modem sits in the same socket.
    pub port: String,
    /// The USB device's sysfs directory (its `authorized` file resets it).
    pub device_dir: PathBuf,
}

impl UsbTty {
    /// `1199:68c0 serial ABC interface 3 at 1-1.2`, for `probe` and logs.
    pub fn describe(&self) -> String {
        let mut s = format!("{:04x}:{:04x}", self.vid, self.pid);
        if let Some(serial) = &self.serial {
            s += &format!(" serial {serial}");
        }
        if let Some(i) = self.interface {
            s += &format!(" interface {i}");
        }
        s + &format!(" at USB port {}", self.port)
    }
}

/// How a line names its modem, other than by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbMatch {
    /// vendor:product, optionally a serial number and an interface.
    Device {
        vid: u16,
        pid: u16,
        serial: Option<String>,
        interface: Option<u8>,
    },
    /// The USB port path, optionally an interface.
    Port { port: String, interface: Option<u8> },
}

impl UsbMatch {
    fn accepts(&self, t: &UsbTty) -> bool {
        match self {
            UsbMatch::Device {
                vid,
                pid,
                serial,
                interface,
            } => {
                t.vid == *vid
                    && t.pid == *pid
                    && serial.as_ref().is_none_or(|s| t.serial.as_ref() == Some(s))
                    && interface.is_none_or(|i| t.interface == Some(i))
            }
            UsbMatch::Port { port, interface } => {
                t.port == *port && interface.is_none_or(|i| t.interface == Some(i))
            }
        }
    }
}

impl std::fmt::Display for UsbMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsbMatch::Device {
                vid,
                pid,
                serial,
                interface,
            } => {
                write!(f, "USB {vid:04x}:{pid:04x}")?;
                if let Some(s) = serial {
                    write!(f, " serial {s}")?;
                }
                if let Some(i) = interface {
                    write!(f, " interface {i}")?;
                }
                Ok(())
            }
            UsbMatch::Port { port, interface } => {
                write!(f, "USB port {port}")?;
                if let Some(i) = interface {
                    write!(f, " interface {i}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a line names its modem: a path (`/dev/ttyS1`, a by-id link), or a USB match looked up
/// in sysfs at each dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Path(PathBuf),
    Usb(UsbMatch),
}

impl DeviceSpec {
    /// The path, for a line named by one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DeviceSpec::Path(p) => Some(p),
            DeviceSpec::Usb(_) => None,
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Path(p) => write!(f, "{}", p.display()),
            DeviceSpec::Usb(m) => write!(f, "{m}"),
        }
    }
}

/// What a cellular modem says it is (`AT+CGSN`, `AT+CCID`): a line may insist on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModemId {
    pub imei: Option<String>,
    pub iccid: Option<String>,
}

impl ModemId {
    pub fn is_set(&self) -> bool {
        self.imei.is_some() || self.iccid.is_some()
    }
}

impl std::fmt::Display for ModemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [("IMEI", &self.imei), ("ICCID", &self.iccid)]
            .into_iter()
            .filter_map(|(what, v)| v.as_ref().map(|v| format!("{what} {v}")))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Why no single tty was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("no tty of {0} is present")]
    Absent(String),
    #[error("{what} matches several ttys ({}): say which interface (usb_interface)", .ttys.join(", "))]
    Ambiguous { what: String, ttys: Vec<String> },
}

/// Every tty `matcher` names among `ttys`.
pub fn matching<'a>(matcher: &UsbMatch, ttys: &'a [UsbTty]) -> Vec<&'a UsbTty> {
    ttys.iter().filter(|t| matcher.accepts(t)).collect()
}

/// The one tty `matcher` names among `ttys`.
pub fn find<'a>(matcher: &UsbMatch, ttys: &'a [UsbTty]) -> Result<&'a UsbTty, MatchError> {
    let found = matching(matcher, ttys);
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(MatchError::Absent(matcher.to_string())),
        many => Err(MatchError::Ambiguous {
            what: matcher.to_string(),
            ttys: many.iter().map(|t| t.tty.clone()).collect(),
        }),
    }
}

/// Every tty in `sys/class/tty` that belongs to a USB device, sorted by name.
pub fn usb_ttys(sys: &Path) -> Vec<UsbTty> {
    let Ok(entries) = std::fs::read_dir(sys.join("class/tty")) else {
        return Vec::new();
    };
    let mut ttys: Vec<UsbTty> = entries
        .filter_map(Result::ok)
        .filter_map(|e| usb_of(sys, &e.file_name().to_string_lossy()))
        .collect();
    ttys.sort_by(|a, b| a.tty.cmp(&b.tty));
    ttys
}

/// The USB device behind tty `name` (`ttyUSB0`), if it is a USB one.
pub fn usb_of(sys: &Path, name: &str) -> Option<UsbTty> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let device = std::fs::canonicalize(sys.join("class/tty").join(name).join("device")).ok()?;
    // Up from the tty's device: the first directory with bInterfaceNumber is the USB
    // interface, the first with idVendor the USB device (at most a few levels).
    let mut interface = None;
    let mut dir = device.as_path();
    for _ in 0..6 {
        if interface.is_none() {
            interface =
                read_attr(dir, "bInterfaceNumber").and_then(|n| u8::from_str_radix(&n, 16).ok());
        }
        if let Some(vid) = read_attr(dir, "idVendor") {
            let pid = read_attr(dir, "idProduct")?;
            return Some(UsbTty {
                tty: name.to_string(),
                vid: u16::from_str_radix(&vid, 16).ok()?,
                pid: u16::from_str_radix(&pid, 16).ok()?,
                serial: read_attr(dir, "serial"),
                interface,
                port: dir.file_name()?.to_string_lossy().into_owned(),
                device_dir: dir.to_path_buf(),
            });
        }
        dir = dir.parent()?;
    }
    None
}

/// A sysfs attribute, trimmed; `None` if absent, empty or not text.
fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() <= 128 && !text.chars().any(char::is_control))
        .then(|| text.to_string())
}

/// Parses `1199:68c0` (hex vendor:product).
pub fn parse_vid_pid(text: &str) -> Option<(u16, u16)> {
    let (v, p) = text.trim().split_once(':')?;
    if v.len() != 4 || p.len() != 4 {
        return None;
    }
    Some((
        u16::from_str_radix(v, 16).ok()?,
        u16::from_str_radix(p, 16).ok()?,
    ))
}

/// Whether `port` looks like a USB port path (`1-1`, `2-1.4.3`).
pub fn valid_usb_port(port: &str) -> bool {
    let Some((bus, path)) = port.split_once('-') else {
        return false;
    };
    !bus.is_empty()
        && bus.bytes().all(|b| b.is_ascii_digit())
        && !path.is_empty()
        && path
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree with a USB modem at port 1-1.2 exposing ttyUSB0..2 on interfaces 0, 2, 3
    /// (usb-serial: the tty's device is a port directory under the interface), a CDC ACM one
    /// at 1-1.3 (the tty's device is the interface) and a built-in ttyS0.
    fn fake_sys(root: &Path) {
        let usb = root.join("devices/pci0000:00/0000:00:14.0/usb1");
        let modem = usb.join("1-1/1-1.2");
        std::fs::create_dir_all(&modem).unwrap();
        for (attr, value) in [
            ("idVendor", "1199\n"),
            ("idProduct", "68c0\n"),
            ("serial", "SN123\n"),
        ] {
            std::fs::write(modem.join(attr), value).unwrap();
        }
        std::fs::create_dir_all(root.join("class/tty")).unwrap();
        for (n, iface) in [(0, "00"), (1, "02"), (2, "03")] {
            let intf = modem.join(format!("1-1.2:1.{iface}"));
            let port = intf.join(format!("ttyUSB{n}"));
            std::fs::create_dir_all(port.join(format!("tty/ttyUSB{n}"))).unwrap();
            std::fs::write(intf.join("bInterfaceNumber"), format!("{iface}\n")).unwrap();
            let class = root.join(format!("class/tty/ttyUSB{n}"));
            std::fs::create_dir_all(&class).unwrap();
            symlink(&port, class.join("device")).unwrap();
        }
        let acm = usb.join("1-1/1-1.3");
        let intf = acm.join("1-1.3:1.0");
        std::fs::create_dir_all(&intf).unwrap();
        std::fs::write(acm.join("idVendor"), "2c7c\n").unwrap();
        std::fs::write(acm.join("idProduct"), "0125\n").unwrap();
        std::fs::write(intf.join("bInterfaceNumber"), "00\n").unwrap();
        let class = root.join("class/tty/ttyACM0");
        std::fs::create_dir_all(&class).unwrap();
        symlink(&intf, class.join("device")).unwrap();
        let serial8250 = root.join("devices/pnp0/00:00");
        std::fs::create_dir_all(&serial8250).unwrap();
        let class = root.join("class/tty/ttyS0");
        std::fs::create_dir_all(&class).unwrap();
        symlink(&serial8250, class.join("device")).unwrap();
    }

    #[test]
    fn usb_ttys_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        fake_sys(dir.path());
        let ttys = usb_ttys(dir.path());
        let names: Vec<&str> = ttys.iter().map(|t| t.tty.as_str()).collect();
        assert_eq!(names, ["ttyACM0", "ttyUSB0", "ttyUSB1", "ttyUSB2"]);
        let t = &ttys[3];
        assert_eq!((t.vid, t.pid), (0x1199, 0x68c0));
        assert_eq!(t.serial.as_deref(), Some("SN123"));
        assert_eq!(t.interface, Some(3));
        assert_eq!(t.port, "1-1.2");
        assert_eq!(
            t.describe(),
            "1199:68c0 serial SN123 interface 3 at USB port 1-1.2"
        );
        assert_eq!(ttys[0].interface, Some(0));
        assert_eq!(ttys[0].port, "1-1.3");
        assert_eq!(usb_of(dir.path(), "ttyS0"), None);
        assert_eq!(usb_of(dir.path(), "../x"), None);
    }

    #[test]
    fn matching_names_one_tty_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        fake_sys(dir.path());
        let ttys = usb_ttys(dir.path());
        let by_device = |interface| UsbMatch::Device {
            vid: 0x1199,
            pid: 0x68c0,
            serial: Some("SN123".into()),
            interface,
        };
        assert_eq!(find(&by_device(Some(3)), &ttys).unwrap().tty, "ttyUSB2");
        assert_eq!(
            find(&by_device(None), &ttys).unwrap_err().to_string(),
            "USB 1199:68c0 serial SN123 matches several ttys (ttyUSB0, ttyUSB1, ttyUSB2): \
             say which interface (usb_interface)"
        );
        let by_port = UsbMatch::Port {
            port: "1-1.3".into(),
            interface: None,
        };
        assert_eq!(find(&by_port, &ttys).unwrap().tty, "ttyACM0");
        let absent = UsbMatch::Port {
            port: "2-1".into(),
            interface: None,
        };
        assert_eq!(
            find(&absent, &ttys).unwrap_err(),
            MatchError::Absent("USB port 2-1".into())
        );
    }

    #[test]
    fn parsing_ids_and_ports() {
        assert_eq!(parse_vid_pid("1199:68C0"), Some((0x1199, 0x68c0)));
        assert_eq!(parse_vid_pid("1199-68c0"), None);
        assert_eq!(parse_vid_pid("119:68c0"), None);
        assert!(valid_usb_port("1-1.2") && valid_usb_port("2-1"));
        assert!(!valid_usb_port("1-") && !valid_usb_port("usb1") && !valid_usb_port("1-1..2"));
    }
}
