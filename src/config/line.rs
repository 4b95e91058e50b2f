//! The `[[line]]` tables: one modem each, checked on its own and against the other lines (no
//! two share a name, a device or a slave interface).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{LineConfig, MAX_LINES, RedialConfig, SlaveKind, Weight, defaults, limits};
use crate::net::default_slave_name;
use crate::serial::FlowControl;
use crate::serial::identity::{self, DeviceSpec, ModemId, UsbMatch};
use crate::track::TrackConfig;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawWeight {
    Number(i64),
    Word(String),
}

/// One `[[line]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLine {
    name: Option<Spanned<String>>,
    device: Option<Spanned<String>>,
    usb: Option<Spanned<String>>,
    usb_serial: Option<Spanned<String>>,
    usb_interface: Option<Spanned<i64>>,
    usb_port: Option<Spanned<String>>,
    imei: Option<Spanned<String>>,
    iccid: Option<Spanned<String>>,
    baud: Option<Spanned<i64>>,
    flow_control: Option<Spanned<String>>,
    init_chat: Option<PathBuf>,
    dial_chat: Option<PathBuf>,
    phone: Option<String>,
    user: Option<String>,
    secret_name: Option<String>,
    apn: Option<String>,
    weight: Option<Spanned<RawWeight>>,
    lcp_echo_interval: Option<Spanned<f64>>,
    lcp_echo_failure: Option<Spanned<i64>>,
    ppp_timeout: Option<Spanned<f64>>,
    holdoff: Option<Spanned<f64>>,
    backoff_factor: Option<Spanned<f64>>,
    max_delay: Option<Spanned<f64>>,
    max_failures: Option<Spanned<i64>>,
    escape_guard: Option<Spanned<f64>>,
    slave: Option<Spanned<String>>,
    slave_kind: Option<Spanned<String>>,
    enabled: Option<bool>,
    track: Option<bool>,
    track_targets: Option<Vec<Spanned<String>>>,
    max_latency: Option<Spanned<f64>>,
    max_loss: Option<Spanned<f64>>,
    backup: Option<bool>,
    tier: Option<Spanned<i64>>,
    cellular: Option<bool>,
    registration_timeout: Option<Spanned<f64>>,
    reset_after: Option<Spanned<i64>>,
    reset_hook: Option<Spanned<PathBuf>>,
    pub(super) bundle: Option<Spanned<String>>,
}

/// What tells two device paths apart: the device number where the device exists, else the
/// canonical (or, for a path that does not exist, lexically normalised) path; a USB match by
/// what it matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DeviceKey {
    Rdev(u64),
    Path(PathBuf),
    Usb(String),
}

fn device_key(device: &Path) -> DeviceKey {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if let Ok(meta) = std::fs::metadata(device) {
        let t = meta.file_type();
        if t.is_char_device() || t.is_block_device() {
            return DeviceKey::Rdev(meta.rdev());
        }
    }
    match std::fs::canonicalize(device) {
        Ok(p) => DeviceKey::Path(p),
        Err(_) => {
            let mut out = PathBuf::new();
            for part in device.components() {
                match part {
                    std::path::Component::CurDir => {}
                    std::path::Component::ParentDir => {
                        out.pop();
                    }
                    other => out.push(other),
                }
            }
            DeviceKey::Path(out)
        }
    }
}

/// What the lines checked so far have taken.
#[derive(Default)]
struct Taken {
    names: BTreeSet<String>,
    /// Device → (1-based line number, its option, the device as written there).
    devices: BTreeMap<DeviceKey, (usize, &'static str, String)>,
    slaves: BTreeSet<String>,
}

/// Validates every `[[line]]`; `resolve` makes relative paths relative to the file; `track`
/// is `[track]`, which the lines' own tracking options amend.
pub(super) fn parse(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawLine>],
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    track: &TrackConfig,
) -> Vec<LineConfig> {
    if let Some(extra) = raw.get(MAX_LINES) {
        c.error(
            extra.span(),
            &format!("line[{}]", MAX_LINES + 1),
            format!(
                "{} lines configured; at most {MAX_LINES} (the balancer has {MAX_LINES} slots)",
                raw.len()
            ),
            None,
        );
    }
    let mut taken = Taken::default();
    raw.iter()
        .enumerate()
        .map(|(i, entry)| line(c, i + 1, entry, &mut taken, resolve, track))
        .collect()
}

/// Validates line `number` (1-based, as errors name it).
fn line(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    taken: &mut Taken,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    track: &TrackConfig,
) -> LineConfig {
    let at = |field: &str| format!("line[{number}].{field}");
    let l = entry.get_ref();
    let device = device(c, number, entry, taken);
    let modem_id = modem_id(c, number, l);
    let name = name(c, number, entry, &device, taken);
    let baud = match &l.baud {
        None => defaults::BAUD,
        Some(b) => match u32::try_from(*b.get_ref()) {
            Ok(v) if (50..=20_000_000).contains(&v) => v,
            _ => {
                c.error(
                    b.span(),
                    &at("baud"),
                    format!("{} is not a usable line speed", b.get_ref()),
                    Some("common speeds: 115200, 57600, 460800"),
                );
                defaults::BAUD
            }
        },
    };
    let flow = match &l.flow_control {
        None => FlowControl::None,
        Some(f) => f.get_ref().parse().unwrap_or_else(|message: String| {
            c.error(f.span(), &at("flow_control"), message, None);
            FlowControl::None
        }),
    };
    let weight = weight(c, number, l);
    // The slave is named after the device's path, or the line's name where it has none.
    let slave_base = match &device {
        DeviceSpec::Path(p) => p.display().to_string(),
        DeviceSpec::Usb(_) => name.clone(),
    };
    let slave = slave(c, number, entry, &slave_base, taken);
    let redial = redial(c, number, l);
    let track = super::track::for_line(
        c,
        track,
        &super::track::RawLineTrack {
            enabled: l.track,
            targets: &l.track_targets,
            max_latency: &l.max_latency,
            max_loss: &l.max_loss,
        },
        &at,
    );
    let tier = tier(c, number, l);
    let slave_kind = slave_kind(c, number, l);
    LineConfig {
        name,
        device,
        modem_id,
        baud,
        flow,
        init_chat: l.init_chat.clone().map(resolve),
        dial_chat: l.dial_chat.clone().map(resolve),
        phone: l.phone.clone(),
        user: l.user.clone(),
        secret_name: l.secret_name.clone(),
        apn: l.apn.clone(),
        weight,
        lcp_echo_interval: c.seconds(
            &l.lcp_echo_interval,
            &at("lcp_echo_interval"),
            defaults::LCP_ECHO_INTERVAL_SECS,
            limits::LCP_ECHO_INTERVAL,
        ),
        lcp_echo_failure: c.count(
            &l.lcp_echo_failure,
            &at("lcp_echo_failure"),
            defaults::LCP_ECHO_FAILURE,
            1,
        ),
        ppp_timeout: c.seconds(
            &l.ppp_timeout,
            &at("ppp_timeout"),
            defaults::PPP_TIMEOUT_SECS,
            limits::PPP_TIMEOUT,
        ),
        redial,
        escape_guard: c.seconds(
            &l.escape_guard,
            &at("escape_guard"),
            defaults::ESCAPE_GUARD_SECS,
            limits::ESCAPE_GUARD,
        ),
        slave,
        slave_kind,
        enabled: l.enabled.unwrap_or(true),
        track,
        tier,
        // Every line that dials a number (or has an APN) talks to a modem: one AT+GCAP tells a
        // cellular one.
        cellular: l.cellular.unwrap_or(l.phone.is_some() || l.apn.is_some()),
        registration_timeout: c.seconds(
            &l.registration_timeout,
            &at("registration_timeout"),
            defaults::REGISTRATION_TIMEOUT_SECS,
            limits::REGISTRATION_TIMEOUT,
        ),
        reset_after: c.count(&l.reset_after, &at("reset_after"), defaults::RESET_AFTER, 0),
        reset_hook: l
            .reset_hook
            .as_ref()
            .map(|h| super::daemon::hook(c, h, &at("reset_hook"), resolve(h.get_ref().clone()))),
        bundle: l.bundle.as_ref().map(|b| b.get_ref().clone()),
    }
}

/// `slave_kind`: auto, ppp or tun. A bundle's members all have the bundle's kind (one kernel
/// unit, or our own reassembly), which its `[[bundle]]` table says.
fn slave_kind(c: &mut Checker<'_>, number: usize, l: &RawLine) -> SlaveKind {
    let option = format!("line[{number}].slave_kind");
    let Some(k) = &l.slave_kind else {
        return SlaveKind::Auto;
    };
    match k.get_ref().parse() {
        Ok(_) if l.bundle.is_some() => {
            c.error(
                k.span(),
                &option,
                "a Multilink bundle's lines all have the bundle's slave kind".into(),
                Some("set slave_kind in the bundle's [[bundle]] table"),
            );
            SlaveKind::Auto
        }
        Ok(kind) => kind,
        Err(message) => {
            c.error(k.span(), &option, message, None);
            SlaveKind::Auto
        }
    }
}

/// The failover tier: `tier = N`, or `backup = true` (tier 1); not both.
fn tier(c: &mut Checker<'_>, number: usize, l: &RawLine) -> u32 {
    let option = format!("line[{number}].tier");
    match (&l.tier, l.backup) {
        (Some(t), Some(_)) => {
            c.error(
                t.span(),
                &option,
                "give either tier or backup, not both".into(),
                Some("backup = true is tier = 1"),
            );
            0
        }
        (Some(t), None) => match u32::try_from(*t.get_ref()) {
            Ok(n) if n <= 255 => n,
            _ => {
                c.error(
                    t.span(),
                    &option,
                    format!("{} is not a tier from 0 (primary) to 255", t.get_ref()),
                    None,
                );
                0
            }
        },
        (None, backup) => u32::from(backup == Some(true)),
    }
}

/// The device: an absolute path, or a USB match (`usb = "vid:pid"` with `usb_serial` and
/// `usb_interface`, or `usb_port`), that no other line uses, under any spelling.
fn device(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    taken: &mut Taken,
) -> DeviceSpec {
    let at = |field: &str| format!("line[{number}].{field}");
    let l = entry.get_ref();
    let usb_match = usb_match(c, number, l);
    let (spec, span, option) = match (&l.device, usb_match) {
        (Some(d), None) => {
            let device = d.get_ref();
            if !device.starts_with('/') {
                c.error(
                    d.span(),
                    &at("device"),
                    format!("'{device}' is not an absolute path"),
                    Some("e.g. /dev/ttyS1, /dev/ttyUSB2 or /dev/serial/by-id/…"),
                );
            }
            (DeviceSpec::Path(PathBuf::from(device)), d.span(), "device")
        }
        (None, Some((m, span, option))) => (DeviceSpec::Usb(m), span, option),
        (Some(d), Some((_, _, option))) => {
            c.error(
                d.span(),
                &at("device"),
                format!("give either device or {option}, not both"),
                Some("device names the modem by path; usb and usb_port by what it is"),
            );
            (
                DeviceSpec::Path(PathBuf::from(d.get_ref())),
                d.span(),
                "device",
            )
        }
        (None, None) => {
            // A usb/usb_port that did not parse has been reported.
            if l.usb.is_none() && l.usb_port.is_none() {
                c.error(
                    entry.span(),
                    &at("device"),
                    "the line names no modem".into(),
                    Some("device = \"/dev/ttyS1\" (or a /dev/serial/by-id/… link), usb = \"vid:pid\" or usb_port = \"1-1.2\""),
                );
            }
            (DeviceSpec::Path(PathBuf::new()), entry.span(), "device")
        }
    };
    let key = match &spec {
        DeviceSpec::Path(p) => device_key(p),
        DeviceSpec::Usb(m) => DeviceKey::Usb(m.to_string()),
    };
    match taken.devices.entry(key) {
        Entry::Vacant(v) => {
            v.insert((number, option, spec.to_string()));
        }
        Entry::Occupied(o) => {
            let (other, other_option, other_device) = o.get();
            c.error(
                span,
                &at(option),
                format!(
                    "{spec} is the same device as line[{other}].{other_option} ({other_device})"
                ),
                Some("two lines cannot share one modem"),
            );
        }
    }
    spec
}

/// `usb`/`usb_serial`/`usb_interface` or `usb_port`/`usb_interface`: the match, where it was
/// written and under which option.
fn usb_match(
    c: &mut Checker<'_>,
    number: usize,
    l: &RawLine,
) -> Option<(UsbMatch, std::ops::Range<usize>, &'static str)> {
    let at = |field: &str| format!("line[{number}].{field}");
    let interface = l
        .usb_interface
        .as_ref()
        .and_then(|i| match u8::try_from(*i.get_ref()) {
            Ok(n) => Some(n),
            Err(_) => {
                c.error(
                    i.span(),
                    &at("usb_interface"),
                    format!("{} is not a USB interface number (0-255)", i.get_ref()),
                    Some("probe shows each tty's interface"),
                );
                None
            }
        });
    let lonely =
        |c: &mut Checker<'_>, field: &Option<Spanned<String>>, option: &str, needs: &str| {
            if let Some(f) = field {
                c.error(
                    f.span(),
                    &at(option),
                    format!("{option} narrows {needs}, which the line does not give"),
                    None,
                );
            }
        };
    match (&l.usb, &l.usb_port) {
        (Some(u), port) => {
            if let Some(p) = port {
                c.error(
                    p.span(),
                    &at("usb_port"),
                    "give either usb or usb_port, not both".into(),
                    None,
                );
            }
            let Some((vid, pid)) = identity::parse_vid_pid(u.get_ref()) else {
                c.error(
                    u.span(),
                    &at("usb"),
                    format!("'{}' is not a USB vendor:product", u.get_ref()),
                    Some("four hex digits each, e.g. usb = \"1199:68c0\" (lsusb and probe show them)"),
                );
                return None;
            };
            let serial = l
                .usb_serial
                .as_ref()
                .map(|s| s.get_ref().trim().to_string());
            Some((
                UsbMatch::Device {
                    vid,
                    pid,
                    serial,
                    interface,
                },
                u.span(),
                "usb",
            ))
        }
        (None, Some(p)) => {
            lonely(c, &l.usb_serial, "usb_serial", "usb");
            if !identity::valid_usb_port(p.get_ref()) {
                c.error(
                    p.span(),
                    &at("usb_port"),
                    format!("'{}' is not a USB port path", p.get_ref()),
                    Some("bus-port[.port…], e.g. usb_port = \"1-1.2\" (probe shows it)"),
                );
                return None;
            }
            Some((
                UsbMatch::Port {
                    port: p.get_ref().clone(),
                    interface,
                },
                p.span(),
                "usb_port",
            ))
        }
        (None, None) => {
            lonely(c, &l.usb_serial, "usb_serial", "usb");
            if let Some(i) = &l.usb_interface {
                c.error(
                    i.span(),
                    &at("usb_interface"),
                    "usb_interface narrows usb or usb_port, which the line does not give".into(),
                    None,
                );
            }
            None
        }
    }
}

/// `imei` and `iccid`: what the modem (and its SIM) must say they are.
fn modem_id(c: &mut Checker<'_>, number: usize, l: &RawLine) -> ModemId {
    use crate::cellular::reply::{parse_iccid, parse_imei};
    let mut check =
        |field: &Option<Spanned<String>>, option: &str, parse: fn(&str) -> Option<String>| {
            let f = field.as_ref()?;
            let parsed = parse(&f.get_ref().to_ascii_uppercase());
            if parsed.is_none() {
                c.error(
                    f.span(),
                    &format!("line[{number}].{option}"),
                    format!(
                        "'{}' is not an {}",
                        f.get_ref(),
                        option.to_ascii_uppercase()
                    ),
                    Some("probe prints the modem's IMEI and its SIM's ICCID"),
                );
            }
            parsed
        };
    ModemId {
        imei: check(&l.imei, "imei", parse_imei),
        iccid: check(&l.iccid, "iccid", parse_iccid),
    }
}

/// The name (default: the device's file name), which the CLI must be able to spell and which
/// no other line has.
fn name(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    device: &DeviceSpec,
    taken: &mut Taken,
) -> String {
    let option = format!("line[{number}].name");
    let l = entry.get_ref();
    let name = match (&l.name, device) {
        (Some(n), _) => n.get_ref().clone(),
        (None, DeviceSpec::Path(p)) => match p.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            // No device: said already.
            None => return String::new(),
        },
        (None, DeviceSpec::Usb(_)) => {
            c.error(
                entry.span(),
                &option,
                "a line that names its modem by USB needs a name".into(),
                Some("name = \"lte1\": status, hangup and the secrets file call the line so"),
            );
            return String::new();
        }
    };
    let span = l.name.as_ref().map_or(entry.span(), |n| n.span());
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        c.error(
            span,
            &option,
            format!("'{name}' is not a valid line name"),
            Some("use letters, digits, '.', '_' and '-' (the CLI names lines this way)"),
        );
    } else if !taken.names.insert(name.clone()) {
        c.error(
            span,
            &option,
            format!("another line is already named '{name}'"),
            None,
        );
    }
    name
}

fn weight(c: &mut Checker<'_>, number: usize, l: &RawLine) -> Weight {
    let Some(w) = &l.weight else {
        return Weight::Auto;
    };
    match w.get_ref() {
        RawWeight::Number(n) if *n > 0 && *n <= 1_000_000 => Weight::Fixed(*n as u32),
        RawWeight::Word(s) if s == "auto" => Weight::Auto,
        other => {
            c.error(
                w.span(),
                &format!("line[{number}].weight"),
                format!("{other:?} is neither a positive number nor \"auto\""),
                Some("\"auto\" weighs the line by its CONNECT speed"),
            );
            Weight::Auto
        }
    }
}

/// The slave interface (default: from `base`): a valid interface name no other line has.
fn slave(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    base: &str,
    taken: &mut Taken,
) -> String {
    let option = format!("line[{number}].slave");
    let l = entry.get_ref();
    let slave = match &l.slave {
        None => default_slave_name(base),
        Some(s) => {
            if !crate::net::valid_ifname(s.get_ref()) {
                c.error(
                    s.span(),
                    &option,
                    format!("'{}' is not a valid interface name", s.get_ref()),
                    Some("1-15 characters of letters, digits, '.', '_' and '-'"),
                );
            }
            s.get_ref().clone()
        }
    };
    if !taken.slaves.insert(slave.clone()) {
        let span = l.slave.as_ref().map_or(entry.span(), |s| s.span());
        c.error(
            span,
            &option,
            format!("slave device {slave} is used by another line"),
            Some("set slave = \"…\" to tell them apart"),
        );
    }
    slave
}

fn redial(c: &mut Checker<'_>, number: usize, l: &RawLine) -> RedialConfig {
    let at = |field: &str| format!("line[{number}].{field}");
    RedialConfig {
        holdoff: c.seconds(
            &l.holdoff,
            &at("holdoff"),
            defaults::HOLDOFF_SECS,
            limits::HOLDOFF,
        ),
        backoff_factor: match &l.backoff_factor {
            None => defaults::BACKOFF_FACTOR,
            Some(f) if (1.0..=10.0).contains(f.get_ref()) => *f.get_ref(),
            Some(f) => {
                c.error(
                    f.span(),
                    &at("backoff_factor"),
                    format!("{} is outside 1.0 to 10.0", f.get_ref()),
                    None,
                );
                defaults::BACKOFF_FACTOR
            }
        },
        max_delay: c.seconds(
            &l.max_delay,
            &at("max_delay"),
            defaults::MAX_DELAY_SECS,
            limits::MAX_DELAY,
        ),
        max_failures: c.count(&l.max_failures, &at("max_failures"), 0, 0),
    }
}
