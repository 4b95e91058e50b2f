//! The one loader behind `check-config`, daemon start-up and reload: the file itself
//! ([`Config::load`]), then everything it names — the secrets file and every chat script — so
//! that whatever the daemon would refuse or trip over, `check-config` reports first.

use std::path::Path;

use super::{Config, SecretsFile, line_secret};
use crate::chat::Script;

/// Loads `path` and checks the files it names. Every problem is one message naming the file
/// (and line, where there is one) and the option or line concerned.
pub fn load_checked(path: &Path) -> Result<Config, Vec<String>> {
    let config =
        Config::load(path).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    let mut secrets_failed = false;
    let secrets = match &config.daemon.secrets {
        Some(p) => match SecretsFile::load(p) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(e.to_string());
                secrets_failed = true;
                None
            }
        },
        None => None,
    };
    for line in &config.lines {
        let secret = line_secret(line, secrets.as_ref());
        for script_path in [&line.init_chat, &line.dial_chat].into_iter().flatten() {
            let name = script_path.display().to_string();
            let script = match std::fs::read_to_string(script_path) {
                Ok(text) => match Script::parse(&text, &name) {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(format!("line {}: {e}", line.name));
                        continue;
                    }
                },
                Err(e) => {
                    problems.push(format!(
                        "line {}: cannot read chat script {name}: {e}",
                        line.name
                    ));
                    continue;
                }
            };
            // \U sends the APN, else the line's secret: with neither, the modem would get an
            // empty string where a value belongs.
            let has_value = line.apn.is_some() || secret.is_some();
            let unknown = secrets_failed && line.user.is_some();
            if !has_value && !unknown {
                for pos in script.phone2_positions() {
                    problems.push(format!(
                        "{name}:{}:{}: line {}: \\U is sent here but the line has no value for it: set apn, or user with a secret in the secrets file",
                        pos.line, pos.column, line.name
                    ));
                }
            }
        }
        if line.user.is_some() && secrets.is_some() && secret.is_none() {
            let key = line
                .secret_name
                .as_deref()
                .or(line.user.as_deref())
                .unwrap_or("");
            problems.push(format!(
                "line {}: no secret for '{key}' in {}",
                line.name,
                config
                    .daemon
                    .secrets
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
        }
        if line.user.is_some() && config.daemon.secrets.is_none() {
            problems.push(format!(
                "line {}: user is set but [daemon] secrets is not: where is the password?",
                line.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}
