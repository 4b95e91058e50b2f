//! The one loader behind `check-config`, daemon start-up and reload: the file itself
//! ([`Config::load`]), then everything it names — the secrets file and every chat script — so
//! that whatever the daemon would refuse or trip over, `check-config` reports first.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, LineConfig, SecretsFile, line_secret};
use crate::chat::Script;

/// A checked configuration with everything its lines need, read once.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Per line name: what the line runs with.
    pub lines: BTreeMap<String, LineSetup>,
}

/// Everything that defines a line's behaviour: its options, its parsed chat scripts and its
/// PAP/CHAP secret. A reload restarts a line only if this changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSetup {
    pub config: LineConfig,
    pub init_script: Option<Script>,
    pub dial_script: Option<Script>,
    pub secret: Option<String>,
    /// The SIM's PIN (`sim-pin LINE PIN` in the secrets file), for a cellular modem.
    pub sim_pin: Option<String>,
}

/// Loads `path` and checks the files it names. Every problem is one message naming the file
/// (and line, where there is one) and the option or line concerned.
pub fn load_checked(path: &Path) -> Result<Config, Vec<String>> {
    load(path).map(|l| l.config)
}

/// Loads `path`, the secrets file and every chat script it names: the one loader behind
/// `check-config`, daemon start-up and reload.
pub fn load(path: &Path) -> Result<Loaded, Vec<String>> {
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
    let mut lines = BTreeMap::new();
    for line in &config.lines {
        let secret = line_secret(line, secrets.as_ref());
        let mut parsed: [Option<Script>; 2] = [None, None];
        for (slot, script_path) in [&line.init_chat, &line.dial_chat].into_iter().enumerate() {
            let Some(script_path) = script_path else {
                continue;
            };
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
            parsed[slot] = Some(script);
        }
        let [init_script, dial_script] = parsed;
        lines.insert(
            line.name.clone(),
            LineSetup {
                config: line.clone(),
                init_script,
                dial_script,
                secret: secret.clone(),
                sim_pin: super::sim_pin(line, secrets.as_ref()),
            },
        );
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
        Ok(Loaded { config, lines })
    } else {
        Err(problems)
    }
}
