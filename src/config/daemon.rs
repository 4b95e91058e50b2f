//! The `[daemon]` section: logging, the lock directory, the secrets and resolv.conf files and
//! the ip-up/ip-down hooks.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::checker::Checker;
use super::{DaemonSection, defaults, limits};

/// `[daemon]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    log_level: Option<Spanned<String>>,
    log_file: Option<PathBuf>,
    lock_dir: Option<PathBuf>,
    secrets: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
    ip_up: Option<Spanned<PathBuf>>,
    ip_down: Option<Spanned<PathBuf>>,
    hook_timeout: Option<Spanned<f64>>,
}

/// Validates `[daemon]`; `resolve` makes relative paths relative to the file.
pub(super) fn parse(
    c: &mut Checker<'_>,
    d: &RawDaemon,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> DaemonSection {
    DaemonSection {
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
        log_file: resolve(
            d.log_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(defaults::LOG_FILE)),
        ),
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
            .map(|h| hook(c, h, "daemon.ip_up", resolve(h.get_ref().clone()))),
        ip_down: d
            .ip_down
            .as_ref()
            .map(|h| hook(c, h, "daemon.ip_down", resolve(h.get_ref().clone()))),
        hook_timeout: c.seconds(
            &d.hook_timeout,
            "daemon.hook_timeout",
            defaults::HOOK_TIMEOUT_SECS,
            limits::HOOK_TIMEOUT,
        ),
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

/// `[daemon] log_file` of a configuration file's text, read on its own like `log_level`.
pub fn log_file_from(text: &str) -> Option<PathBuf> {
    let table: toml::Table = toml::from_str(text).ok()?;
    table
        .get("daemon")?
        .get("log_file")?
        .as_str()
        .map(PathBuf::from)
}

/// A hook must be an executable regular file.
pub(super) fn hook(
    c: &mut Checker<'_>,
    h: &Spanned<PathBuf>,
    option: &str,
    path: PathBuf,
) -> PathBuf {
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
        c.error(
            h.span(),
            option,
            message,
            Some("point it at an executable script (chmod 755), or unset it"),
        );
    }
    path
}
