//! The `[[line]]` tables: one modem each, checked on its own and against the other lines (no
//! two share a name, a device or a slave interface).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{LineConfig, MAX_LINES, RedialConfig, Weight, defaults, limits};
use crate::net::default_slave_name;
use crate::serial::FlowControl;
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
    device: Spanned<String>,
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
}

/// What tells two device paths apart: the device number where the device exists, else the
/// canonical (or, for a path that does not exist, lexically normalised) path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DeviceKey {
    Rdev(u64),
    Path(PathBuf),
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
    /// Device → (1-based line number, the device as written there).
    devices: BTreeMap<DeviceKey, (usize, String)>,
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
    let device = device(c, number, l, taken);
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
    let slave = slave(c, number, entry, &device, taken);
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
    LineConfig {
        name,
        device: PathBuf::from(device),
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

/// The device: an absolute path no other line uses, under any spelling.
fn device(c: &mut Checker<'_>, number: usize, l: &RawLine, taken: &mut Taken) -> String {
    let option = format!("line[{number}].device");
    let device = l.device.get_ref().clone();
    if !device.starts_with('/') {
        c.error(
            l.device.span(),
            &option,
            format!("'{device}' is not an absolute path"),
            Some("e.g. /dev/ttyS1, /dev/ttyUSB2 or /dev/serial/by-id/…"),
        );
    }
    match taken.devices.entry(device_key(Path::new(&device))) {
        Entry::Vacant(v) => {
            v.insert((number, device.clone()));
        }
        Entry::Occupied(o) => {
            let (other, other_device) = o.get();
            c.error(
                l.device.span(),
                &option,
                format!("{device} is the same device as line[{other}].device ({other_device})"),
                Some("two lines cannot share one modem"),
            );
        }
    }
    device
}

/// The name (default: the device's file name), which the CLI must be able to spell and which
/// no other line has.
fn name(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    device: &str,
    taken: &mut Taken,
) -> String {
    let option = format!("line[{number}].name");
    let l = entry.get_ref();
    let name = match &l.name {
        Some(n) => n.get_ref().clone(),
        None => device.rsplit('/').next().unwrap_or(device).to_string(),
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

/// The slave interface (default: from the device): a valid interface name no other line has.
fn slave(
    c: &mut Checker<'_>,
    number: usize,
    entry: &Spanned<RawLine>,
    device: &str,
    taken: &mut Taken,
) -> String {
    let option = format!("line[{number}].slave");
    let l = entry.get_ref();
    let slave = match &l.slave {
        None => default_slave_name(device),
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
