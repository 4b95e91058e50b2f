//! The configuration file (TOML) and its validation. Every error names `file:line:column`, the
//! option, and a hint; unknown keys are errors, never silently ignored.
//!
//! The shipped `config/eqlplus-dialer.toml` documents every option with its default.

mod balancer;
mod bundle;
mod check;
mod checker;
mod control;
mod daemon;
mod line;
mod metrics;
pub mod secrets;
mod track;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use self::checker::Checker;
use crate::balancer::Policy;
use crate::net::RoutingConfig;
use crate::serial::FlowControl;
use crate::serial::identity::{DeviceSpec, ModemId};

pub use balancer::{MAX_RULE_BASE, MAX_TABLE_BASE, MIN_TABLE_BASE};
pub use bundle::BundleConfig;
pub use check::{LineSetup, Loaded, load, load_checked};
pub use daemon::{LOG_LEVELS, check_log_filter, log_file_from, log_level_from};
pub use metrics::{MetricsListen, MetricsSection};
pub use secrets::{SecretsError, SecretsFile};
pub use track::MAX_TARGETS;

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
    /// The metrics endpoint, if the file has a `[metrics]` section.
    pub metrics: Option<MetricsSection>,
    pub lines: Vec<LineConfig>,
    /// Multilink PPP bundles, each with its member lines.
    pub bundles: Vec<BundleConfig>,
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
    /// Where a daemon that `up` started logs when there is no journal.
    pub log_file: PathBuf,
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

/// What kind of slave device a line's calls get (`slave_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlaveKind {
    /// Kernel PPP where `/dev/ppp` opens and the port is a real tty, else TUN.
    #[default]
    Auto,
    /// Kernel PPP (`ppp_async` + `ppp_generic`, a `pppN` renamed to the slave name).
    Ppp,
    /// A TUN device; the HDLC framing in this process.
    Tun,
}

impl std::str::FromStr for SlaveKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SlaveKind::Auto),
            "ppp" => Ok(SlaveKind::Ppp),
            "tun" => Ok(SlaveKind::Tun),
            other => Err(format!(
                "unknown slave kind \"{other}\": \"auto\", \"ppp\" or \"tun\""
            )),
        }
    }
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
    pub device: DeviceSpec,
    /// The IMEI/ICCID the modem must report, if the line insists on one.
    pub modem_id: ModemId,
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
    /// Kernel PPP or TUN (`slave_kind`).
    pub slave_kind: SlaveKind,
    pub enabled: bool,
    /// Upstream tracking (`[track]` with the line's own options); no targets: off.
    pub track: crate::track::TrackConfig,
    /// Failover tier: 0 primary, higher tiers carry traffic only while no lower one has the
    /// Internet (`backup = true` is 1).
    pub tier: u32,
    /// Check the modem before each dial: a cellular one (`AT+GCAP` lists +CGSM) gets its SIM,
    /// PIN and registration checked (default: lines with a phone number).
    pub cellular: bool,
    /// How long a cellular modem may take to register before the attempt fails.
    pub registration_timeout: Duration,
    /// Failed attempts in a row before the recovery ladder's next step (0: off).
    pub reset_after: u32,
    /// The ladder's last step: a program that power-cycles the modem (GPIO, switchable hub).
    pub reset_hook: Option<PathBuf>,
    /// The Multilink PPP bundle the line proposes to join (`bundle = "NAME"`).
    pub bundle: Option<String>,
}

/// The file as written; each section's own file has its raw model and its checks.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    balancer: balancer::RawBalancer,
    #[serde(default)]
    control: control::RawControl,
    #[serde(default)]
    daemon: daemon::RawDaemon,
    #[serde(default)]
    track: track::RawTrack,
    metrics: Option<metrics::RawMetrics>,
    #[serde(default)]
    line: Vec<Spanned<line::RawLine>>,
    #[serde(default)]
    bundle: Vec<Spanned<bundle::RawBundle>>,
}

/// Defaults, also documented in config/eqlplus-dialer.toml.
pub mod defaults {
    pub const SOCKET: &str = "/run/eqlplus-dialer/control.sock";
    pub const RESOLV_CONF: &str = "/run/eqlplus-dialer/resolv.conf";
    pub const LOG_LEVEL: &str = "info";
    pub const LOG_FILE: &str = "/var/log/eqlplus-dialer.log";
    pub const BAUD: u32 = 115_200;
    pub const STICKY_HOLD_SECS: f64 = 600.0;
    pub const HOOK_TIMEOUT_SECS: f64 = 30.0;
    pub const LCP_ECHO_INTERVAL_SECS: f64 = 1.0;
    pub const LCP_ECHO_FAILURE: u32 = 3;
    pub const PPP_TIMEOUT_SECS: f64 = 30.0;
    pub const REGISTRATION_TIMEOUT_SECS: f64 = 120.0;
    pub const RESET_AFTER: u32 = 3;
    pub const HOLDOFF_SECS: f64 = 2.0;
    pub const BACKOFF_FACTOR: f64 = 2.0;
    pub const MAX_DELAY_SECS: f64 = 300.0;
    pub const ESCAPE_GUARD_SECS: f64 = 1.0;
    /// A bundle's MRRU: an Ethernet-sized packet goes whole.
    pub const MRRU: u16 = 1500;
    /// `[metrics]` without `listen`: loopback only, the port the issue asked for.
    pub const METRICS_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9460);
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
    pub const PPP_TIMEOUT: RangeInclusive<f64> = 1.0..=3_600.0;
    pub const REGISTRATION_TIMEOUT: RangeInclusive<f64> = 1.0..=3_600.0;
    /// Hayes S12 counts fiftieths of a second, up to 255.
    pub const ESCAPE_GUARD: RangeInclusive<f64> = 0.02..=10.0;
}

/// The balancer has this many slots (marks, tables and rules per line).
pub const MAX_LINES: usize = 255;

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
    /// A TOML error stops there; past it, every section's errors are collected.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut c = Checker::new(path, text);
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => return Err(c.toml_error(&e)),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let balancer = balancer::parse(&mut c, &raw.balancer);
        let control = control::parse(&mut c, &raw.control, &resolve);
        let daemon = daemon::parse(&mut c, &raw.daemon, &resolve);
        let track = track::parse(&mut c, &raw.track);
        let metrics = raw
            .metrics
            .as_ref()
            .map(|m| metrics::parse(&mut c, m, &resolve));
        let lines = line::parse(&mut c, &raw.line, &resolve, &track);
        let line_bundles: Vec<_> = raw
            .line
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, l.get_ref().bundle.clone()))
            .collect();
        let bundles = bundle::parse(&mut c, &raw.bundle, &lines, &line_bundles);
        c.finish()?;
        Ok(Config {
            path: path.to_path_buf(),
            balancer,
            control,
            daemon,
            metrics,
            lines,
            bundles,
        })
    }

    /// The line called `name`.
    pub fn line(&self, name: &str) -> Option<&LineConfig> {
        self.lines.iter().find(|l| l.name == name)
    }
}

/// The secret of a line (from the secrets file), if it needs one.
pub fn line_secret(line: &LineConfig, secrets: Option<&SecretsFile>) -> Option<String> {
    let key = line.secret_name.as_deref().or(line.user.as_deref())?;
    secrets?.lookup(key, None).map(str::to_string)
}

/// The SIM PIN of a line: the secrets file's `sim-pin LINE PIN` (or `sim-pin * PIN` for all).
pub fn sim_pin(line: &LineConfig, secrets: Option<&SecretsFile>) -> Option<String> {
    secrets?
        .lookup("sim-pin", Some(&line.name))
        .map(str::to_string)
}

#[cfg(test)]
mod tests;
