//! The configuration file (TOML) and its validation. Every error names `file:line:column`, the
//! option, and a hint; unknown keys are errors, never silently ignored.
//!
//! The shipped `config/eqlplus-dialer.toml` documents every option with its default.

pub mod secrets;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::balancer::Policy;
use crate::net::RoutingConfig;
use crate::net::default_slave_name;
use crate::serial::FlowControl;

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
    /// From CONNECT to IP up at most (PPP establishment), then the attempt fails.
    pub ppp_timeout: Duration,
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
    table_base: Option<u32>,
    rule_base: Option<u32>,
    default_metric: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<PathBuf>,
    group: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    log_level: Option<String>,
    lock_dir: Option<PathBuf>,
    secrets: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
    ip_up: Option<PathBuf>,
    ip_down: Option<PathBuf>,
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
    ppp_timeout: Option<Spanned<f64>>,
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
    pub const PPP_TIMEOUT_SECS: f64 = 30.0;
    pub const HOLDOFF_SECS: f64 = 2.0;
    pub const BACKOFF_FACTOR: f64 = 2.0;
    pub const MAX_DELAY_SECS: f64 = 300.0;
    pub const ESCAPE_GUARD_SECS: f64 = 1.0;
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

    /// A positive number of seconds.
    fn seconds(&mut self, v: &Option<Spanned<f64>>, option: &str, default: f64) -> Duration {
        match v {
            None => Duration::from_secs_f64(default),
            Some(s) if s.get_ref().is_finite() && *s.get_ref() > 0.0 && *s.get_ref() < 1e7 => {
                Duration::from_secs_f64(*s.get_ref())
            }
            Some(s) => {
                self.error(
                    s.span(),
                    option,
                    format!("{} is not a positive number of seconds", s.get_ref()),
                    Some("write seconds, e.g. 2 or 0.5"),
                );
                Duration::from_secs_f64(default)
            }
        }
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
                table_base: b.table_base.unwrap_or(defaults_routing.table_base),
                rule_base: b.rule_base.unwrap_or(defaults_routing.rule_base),
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
            group: raw.control.group.clone(),
        };
        let d = &raw.daemon;
        let daemon = DaemonSection {
            log_level: d
                .log_level
                .clone()
                .unwrap_or_else(|| defaults::LOG_LEVEL.into()),
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
            ip_up: d.ip_up.clone().map(resolve),
            ip_down: d.ip_down.clone().map(resolve),
            hook_timeout: c.seconds(
                &d.hook_timeout,
                "daemon.hook_timeout",
                defaults::HOOK_TIMEOUT_SECS,
            ),
        };

        let mut lines = Vec::new();
        let mut names = BTreeSet::new();
        let mut devices = BTreeSet::new();
        let mut slaves = BTreeSet::new();
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
            if !devices.insert(device.clone()) {
                c.error(
                    l.device.span(),
                    &at("device"),
                    format!("{device} is used by another line"),
                    None,
                );
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
                    if !crate::balancer::kernel::valid_ifname(s.get_ref()) {
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
                holdoff: c.seconds(&l.holdoff, &at("holdoff"), defaults::HOLDOFF_SECS),
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
                max_delay: c.seconds(&l.max_delay, &at("max_delay"), defaults::MAX_DELAY_SECS),
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
                ),
                redial,
                escape_guard: c.seconds(
                    &l.escape_guard,
                    &at("escape_guard"),
                    defaults::ESCAPE_GUARD_SECS,
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
