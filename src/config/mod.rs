//! The configuration file (TOML) and its validation. Every error names `file:line:column`, the
//! option, and a hint; unknown keys are errors, never silently ignored.
//!
//! The shipped `config/eqlplus-dialer.toml` documents every option with its default.

mod check;
pub mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::balancer::Policy;
use crate::net::RoutingConfig;
use crate::net::default_slave_name;
use crate::serial::FlowControl;

pub use check::load_checked;
pub use secrets::{SecretsError, SecretsFile};

/// Where the daemon looks without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/eqlplus-dialer/eqlplus-dialer.toml";

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The option, e.g. `line[2].baud`.
    pub option: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.option,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All errors found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub balancer: BalancerSection,
    pub control: ControlSection,
    pub daemon: DaemonSection,
    pub lines: Vec<LineConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSection {
    pub policy: Policy,
    /// LAN-side interfaces (documentation for now; balancing applies to all new connections
    /// not addressed to this host).
    pub lan: Vec<String>,
    pub routing: RoutingConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlSection {
    pub socket: PathBuf,
    /// Members of this group may control the daemon (besides root).
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSection {
    pub log_level: String,
    pub lock_dir: PathBuf,
    pub secrets: Option<PathBuf>,
    pub resolv_conf: PathBuf,
    pub ip_up: Option<PathBuf>,
    pub ip_down: Option<PathBuf>,
    pub hook_timeout: Duration,
}

/// How a line's weight is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Fixed(u32),
    /// From the CONNECT speed.
    Auto,
}

/// Redial policy of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedialConfig {
    /// Wait before the first redial (pppd `holdoff`).
    pub holdoff: Duration,
    /// Each further consecutive failure multiplies the wait by this.
    pub backoff_factor: f64,
    pub max_delay: Duration,
    /// Give up after this many consecutive failures (0: never).
    pub max_failures: u32,
}

/// One `[[line]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LineConfig {
    pub name: String,
    pub device: PathBuf,
    pub baud: u32,
    pub flow: FlowControl,
    pub init_chat: Option<PathBuf>,
    pub dial_chat: Option<PathBuf>,
    pub phone: Option<String>,
    pub user: Option<String>,
    /// Key of the secret in the secrets file (default: `user`).
    pub secret_name: Option<String>,
    pub apn: Option<String>,
    pub weight: Weight,
    pub lcp_echo_interval: Duration,
    pub lcp_echo_failure: u32,
    pub redial: RedialConfig,
    /// Silence around the `+++` escape when hanging up a modem without DTR (Hayes S12).
    pub escape_guard: Duration,
    pub slave: String,
    pub enabled: bool,
}

// ---- raw model, as written -------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    balancer: RawBalancer,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    line: Vec<Spanned<RawLine>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBalancer {
    policy: Option<Spanned<String>>,
    sticky_hold: Option<Spanned<f64>>,
    #[serde(default)]
    lan: Vec<String>,
    table_base: Option<Spanned<u32>>,
    rule_base: Option<Spanned<u32>>,
    default_metric: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<PathBuf>,
    group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    log_level: Option<Spanned<String>>,
    lock_dir: Option<PathBuf>,
    secrets: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
    ip_up: Option<Spanned<PathBuf>>,
    ip_down: Option<Spanned<PathBuf>>,
    hook_timeout: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawWeight {
    Number(i64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
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
    holdoff: Option<Spanned<f64>>,
    backoff_factor: Option<Spanned<f64>>,
    max_delay: Option<Spanned<f64>>,
    max_failures: Option<Spanned<i64>>,
    escape_guard: Option<Spanned<f64>>,
    slave: Option<Spanned<String>>,
    enabled: Option<bool>,
}

/// Defaults, also documented in config/eqlplus-dialer.toml.
pub mod defaults {
    pub const SOCKET: &str = "/run/eqlplus-dialer/control.sock";
    pub const RESOLV_CONF: &str = "/run/eqlplus-dialer/resolv.conf";
    pub const LOG_LEVEL: &str = "info";
    pub const BAUD: u32 = 115_200;
    pub const STICKY_HOLD_SECS: f64 = 600.0;
    pub const HOOK_TIMEOUT_SECS: f64 = 30.0;
    pub const LCP_ECHO_INTERVAL_SECS: f64 = 1.0;
    pub const LCP_ECHO_FAILURE: u32 = 3;
    pub const HOLDOFF_SECS: f64 = 2.0;
    pub const BACKOFF_FACTOR: f64 = 2.0;
    pub const MAX_DELAY_SECS: f64 = 300.0;
    pub const ESCAPE_GUARD_SECS: f64 = 1.0;
}

/// Bounds of the options in seconds: above a minimum that keeps timers from spinning, below a
/// maximum that keeps `Duration` arithmetic finite.
pub mod limits {
    use std::ops::RangeInclusive;
    pub const STICKY_HOLD: RangeInclusive<f64> = 1.0..=7.0 * 86_400.0;
    pub const HOOK_TIMEOUT: RangeInclusive<f64> = 0.1..=3_600.0;
    pub const LCP_ECHO_INTERVAL: RangeInclusive<f64> = 0.1..=3_600.0;
    pub const HOLDOFF: RangeInclusive<f64> = 0.1..=86_400.0;
    pub const MAX_DELAY: RangeInclusive<f64> = 0.1..=7.0 * 86_400.0;
    /// Hayes S12 counts fiftieths of a second, up to 255.
    pub const ESCAPE_GUARD: RangeInclusive<f64> = 0.02..=10.0;
}

/// The balancer has this many slots (marks, tables and rules per line).
pub const MAX_LINES: usize = 255;

/// Highest `rule_base`: its rules `rule_base ..= rule_base + 255` stay below the kernel's own
/// 32766 (main) and 32767 (default).
pub const MAX_RULE_BASE: u32 = 32_766 - 256;

/// Lowest `table_base`: its tables `table_base + 1 ..= table_base + 255` stay above the
/// kernel's reserved 0 (unspec), 253 (default), 254 (main) and 255 (local).
pub const MIN_TABLE_BASE: u32 = 255;

/// Highest `table_base`: `table_base + 255` stays below 2^32 - 1.
pub const MAX_TABLE_BASE: u32 = u32::MAX - 256;

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

/// The levels `log_level` (and `--log`) take.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter in tracing's env-filter syntax, as documented: comma-separated
/// directives, each a level or `target=level` (e.g. `info,eqlplus_dialer::ppp=debug`). Stricter
/// than tracing, which takes a misspelt level such as `inf` for a target name and then logs
/// nothing at all.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("empty log filter".into());
    }
    for part in filter.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l).trim();
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "'{part}': '{level}' is not a log level ({})",
                LOG_LEVELS.join(", ")
            ));
        }
        if let Err(e) = part.parse::<tracing_subscriber::filter::Directive>() {
            return Err(format!("'{part}': {e}"));
        }
    }
    Ok(())
}

/// Turns byte offsets into line/column and collects errors.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn at(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |p| offset - p - 1) + 1;
        (line, column)
    }

    fn error(
        &mut self,
        span: std::ops::Range<usize>,
        option: &str,
        message: String,
        hint: Option<&str>,
    ) {
        let (line, column) = self.at(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            option: option.to_string(),
            message,
            hint: hint.map(str::to_string),
        });
    }

    /// A number of seconds within `range` (finite: `Duration::from_secs_f64` panics on huge,
    /// infinite or NaN values, and a zero or sub-millisecond interval spins).
    fn seconds(
        &mut self,
        v: &Option<Spanned<f64>>,
        option: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Duration {
        match v {
            None => Duration::from_secs_f64(default),
            Some(s) => match Duration::try_from_secs_f64(*s.get_ref()) {
                Ok(d) if range.contains(s.get_ref()) => d,
                _ => {
                    self.error(
                        s.span(),
                        option,
                        format!(
                            "{} is not a number of seconds from {} to {}",
                            s.get_ref(),
                            range.start(),
                            range.end()
                        ),
                        Some("write seconds, e.g. 2 or 0.5"),
                    );
                    Duration::from_secs_f64(default)
                }
            },
        }
    }

    fn rule_base(&mut self, v: &Option<Spanned<u32>>, default: u32) -> u32 {
        let Some(v) = v else { return default };
        let base = *v.get_ref();
        if base == 0 || base > MAX_RULE_BASE {
            self.error(
                v.span(),
                "balancer.rule_base",
                format!(
                    "{base}: rules {base}..={} must lie within 1..=32765 (0 is the kernel's local rule, 32766 and 32767 its main and default rules)",
                    u64::from(base) + 255
                ),
                Some("use 1 to 32510, e.g. 7700"),
            );
            return default;
        }
        base
    }

    fn table_base(&mut self, v: &Option<Spanned<u32>>, default: u32) -> u32 {
        let Some(v) = v else { return default };
        let base = *v.get_ref();
        if !(MIN_TABLE_BASE..=MAX_TABLE_BASE).contains(&base) {
            self.error(
                v.span(),
                "balancer.table_base",
                format!(
                    "{base}: tables {}..={} would overlap the kernel's reserved tables (0, 253 default, 254 main, 255 local) or run past 2^32-2",
                    u64::from(base) + 1,
                    u64::from(base) + 255
                ),
                Some("use 255 to 4294967039, e.g. 7700"),
            );
            return default;
        }
        base
    }

    /// `[control] group` must exist: the daemon gives the socket to it.
    fn group(&mut self, g: &Spanned<String>) {
        match nix::unistd::Group::from_name(g.get_ref()) {
            Ok(Some(_)) => {}
            Ok(None) => self.error(
                g.span(),
                "control.group",
                format!("no group named '{}' on this system", g.get_ref()),
                Some("create it (groupadd) or unset group for root-only control"),
            ),
            Err(e) => self.error(
                g.span(),
                "control.group",
                format!("cannot look up group '{}': {e}", g.get_ref()),
                None,
            ),
        }
    }

    /// A hook must be an executable regular file.
    fn hook(&mut self, h: &Spanned<PathBuf>, option: &str, path: PathBuf) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let problem = match std::fs::metadata(&path) {
            Err(e) => Some(format!("cannot use hook {}: {e}", path.display())),
            Ok(m) if !m.is_file() => Some(format!("hook {} is not a regular file", path.display())),
            Ok(m)
                if m.permissions().mode() & 0o111 == 0
                    || nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).is_err() =>
            {
                Some(format!("hook {} is not executable", path.display()))
            }
            Ok(_) => None,
        };
        if let Some(message) = problem {
            self.error(
                h.span(),
                option,
                message,
                Some("point it at an executable script (chmod 755), or unset it"),
            );
        }
        path
    }

    fn count(&mut self, v: &Option<Spanned<i64>>, option: &str, default: u32, min: u32) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(n) if n >= min => n,
                _ => {
                    self.error(
                        s.span(),
                        option,
                        format!("{} is out of range (at least {min})", s.get_ref()),
                        None,
                    );
                    default
                }
            },
        }
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                option: "file".into(),
                message: format!("cannot read: {e}"),
                hint: Some("create it from config/eqlplus-dialer.toml, or pass --config".into()),
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` names errors and resolves relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut c = Checker {
            file: path,
            text,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim().to_string();
                let hint = if message.contains("unknown field") {
                    Some(
                        "check the spelling against config/eqlplus-dialer.toml, which lists every option",
                    )
                } else {
                    None
                };
                let option = option_at(text, span.start);
                c.error(span, &option, message, hint);
                return Err(ConfigErrors(c.errors));
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };

        let b = &raw.balancer;
        let hold = c.seconds(
            &b.sticky_hold,
            "balancer.sticky_hold",
            defaults::STICKY_HOLD_SECS,
            limits::STICKY_HOLD,
        );
        let policy = match &b.policy {
            None => Policy::default(),
            Some(p) => match p.get_ref().parse::<Policy>() {
                Ok(Policy::Sticky { .. }) => Policy::Sticky { hold },
                Ok(policy) => policy,
                Err(message) => {
                    c.error(
                        p.span(),
                        "balancer.policy",
                        message,
                        Some("least-loaded is the default; round-robin is eqlplus classic"),
                    );
                    Policy::default()
                }
            },
        };
        let defaults_routing = RoutingConfig::default();
        let balancer = BalancerSection {
            policy,
            lan: b.lan.clone(),
            routing: RoutingConfig {
                table_base: c.table_base(&b.table_base, defaults_routing.table_base),
                rule_base: c.rule_base(&b.rule_base, defaults_routing.rule_base),
                default_metric: b.default_metric.unwrap_or(defaults_routing.default_metric),
            },
        };
        let control = ControlSection {
            socket: resolve(
                raw.control
                    .socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(defaults::SOCKET)),
            ),
            group: raw.control.group.as_ref().map(|g| {
                c.group(g);
                g.get_ref().clone()
            }),
        };
        let d = &raw.daemon;
        let daemon = DaemonSection {
            log_level: match &d.log_level {
                None => defaults::LOG_LEVEL.into(),
                Some(l) => {
                    if let Err(message) = check_log_filter(l.get_ref()) {
                        c.error(
                            l.span(),
                            "daemon.log_level",
                            message,
                            Some("one of error, warn, info, debug, trace (or e.g. info,eqlplus_dialer::ppp=debug)"),
                        );
                    }
                    l.get_ref().clone()
                }
            },
            lock_dir: resolve(
                d.lock_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(crate::serial::DEFAULT_LOCK_DIR)),
            ),
            secrets: d.secrets.clone().map(resolve),
            resolv_conf: resolve(
                d.resolv_conf
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(defaults::RESOLV_CONF)),
            ),
            ip_up: d
                .ip_up
                .as_ref()
                .map(|h| c.hook(h, "daemon.ip_up", resolve(h.get_ref().clone()))),
            ip_down: d
                .ip_down
                .as_ref()
                .map(|h| c.hook(h, "daemon.ip_down", resolve(h.get_ref().clone()))),
            hook_timeout: c.seconds(
                &d.hook_timeout,
                "daemon.hook_timeout",
                defaults::HOOK_TIMEOUT_SECS,
                limits::HOOK_TIMEOUT,
            ),
        };

        let mut lines = Vec::new();
        let mut names = BTreeSet::new();
        let mut devices: BTreeMap<DeviceKey, (usize, String)> = BTreeMap::new();
        let mut slaves = BTreeSet::new();
        if let Some(extra) = raw.line.get(MAX_LINES) {
            c.error(
                extra.span(),
                &format!("line[{}]", MAX_LINES + 1),
                format!(
                    "{} lines configured; at most {MAX_LINES} (the balancer has {MAX_LINES} slots)",
                    raw.line.len()
                ),
                None,
            );
        }
        for (i, entry) in raw.line.iter().enumerate() {
            let at = |field: &str| format!("line[{}].{field}", i + 1);
            let l = entry.get_ref();
            let device = l.device.get_ref().clone();
            if !device.starts_with('/') {
                c.error(
                    l.device.span(),
                    &at("device"),
                    format!("'{device}' is not an absolute path"),
                    Some("e.g. /dev/ttyS1, /dev/ttyUSB2 or /dev/serial/by-id/…"),
                );
            }
            match devices.entry(device_key(Path::new(&device))) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((i + 1, device.clone()));
                }
                std::collections::btree_map::Entry::Occupied(o) => {
                    let (other, other_device) = o.get();
                    c.error(
                        l.device.span(),
                        &at("device"),
                        format!(
                            "{device} is the same device as line[{other}].device ({other_device})"
                        ),
                        Some("two lines cannot share one modem"),
                    );
                }
            }
            let default_name = device.rsplit('/').next().unwrap_or(&device).to_string();
            let name = l
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or(default_name);
            let name_span = l.name.as_ref().map_or(entry.span(), |n| n.span());
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                c.error(
                    name_span.clone(),
                    &at("name"),
                    format!("'{name}' is not a valid line name"),
                    Some("use letters, digits, '.', '_' and '-' (the CLI names lines this way)"),
                );
            } else if !names.insert(name.clone()) {
                c.error(
                    name_span,
                    &at("name"),
                    format!("another line is already named '{name}'"),
                    None,
                );
            }
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
            let weight = match &l.weight {
                None => Weight::Auto,
                Some(w) => match w.get_ref() {
                    RawWeight::Number(n) if *n > 0 && *n <= 1_000_000 => Weight::Fixed(*n as u32),
                    RawWeight::Word(s) if s == "auto" => Weight::Auto,
                    other => {
                        c.error(
                            w.span(),
                            &at("weight"),
                            format!("{other:?} is neither a positive number nor \"auto\""),
                            Some("\"auto\" weighs the line by its CONNECT speed"),
                        );
                        Weight::Auto
                    }
                },
            };
            let slave = match &l.slave {
                None => default_slave_name(&device),
                Some(s) => {
                    if !crate::net::valid_ifname(s.get_ref()) {
                        c.error(
                            s.span(),
                            &at("slave"),
                            format!("'{}' is not a valid interface name", s.get_ref()),
                            Some("1-15 characters of letters, digits, '.', '_' and '-'"),
                        );
                    }
                    s.get_ref().clone()
                }
            };
            if !slaves.insert(slave.clone()) {
                let span = l.slave.as_ref().map_or(entry.span(), |s| s.span());
                c.error(
                    span,
                    &at("slave"),
                    format!("slave device {slave} is used by another line"),
                    Some("set slave = \"…\" to tell them apart"),
                );
            }
            let redial = RedialConfig {
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
            };
            lines.push(LineConfig {
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
                redial,
                escape_guard: c.seconds(
                    &l.escape_guard,
                    &at("escape_guard"),
                    defaults::ESCAPE_GUARD_SECS,
                    limits::ESCAPE_GUARD,
                ),
                slave,
                enabled: l.enabled.unwrap_or(true),
            });
        }
        if !c.errors.is_empty() {
            return Err(ConfigErrors(c.errors));
        }
        Ok(Config {
            path: path.to_path_buf(),
            balancer,
            control,
            daemon,
            lines,
        })
    }

    /// The line called `name`.
    pub fn line(&self, name: &str) -> Option<&LineConfig> {
        self.lines.iter().find(|l| l.name == name)
    }
}

/// `[daemon] log_level` of a configuration file's text, read on its own (logging starts before
/// the whole file is checked).
pub fn log_level_from(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    table
        .get("daemon")?
        .get("log_level")?
        .as_str()
        .map(str::to_string)
}

/// The dotted option at a byte offset: the nearest `[section]`/`[[line]]` header above it and
/// the key on its line, for errors toml reports without naming the option.
fn option_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let upto = &text[..offset];
    let line_start = upto.rfind('\n').map_or(0, |p| p + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |p| offset + p);
    let current = &text[line_start..line_end];
    let key = current
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or("");
    let mut section = String::new();
    let mut line_count = 0;
    for l in upto.lines() {
        let t = l.trim();
        if t == "[[line]]" {
            line_count += 1;
            section = format!("line[{line_count}]");
        } else if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        }
    }
    match (section.is_empty(), key.is_empty()) {
        (true, true) => "file".into(),
        (true, false) => key.into(),
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

/// The secret of a line (from the secrets file), if it needs one.
pub fn line_secret(line: &LineConfig, secrets: Option<&SecretsFile>) -> Option<String> {
    let key = line.secret_name.as_deref().or(line.user.as_deref())?;
    secrets?.lookup(key, None).map(str::to_string)
}

#[cfg(test)]
mod tests;
