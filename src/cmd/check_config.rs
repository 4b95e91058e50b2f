//! `eqlplus-dialer check-config`: validates the configuration, the secrets file and every
//! chat script it names, as the daemon would at start-up or reload.

use std::path::PathBuf;

use crate::chat::Script;
use crate::config::{Config, DEFAULT_CONFIG, SecretsFile, line_secret};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

/// Everything wrong with the configuration and the files it names, as messages.
pub fn check(path: &std::path::Path) -> Result<Config, Vec<String>> {
    let config =
        Config::load(path).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    let secrets = match &config.daemon.secrets {
        Some(p) => match SecretsFile::load(p) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        None => None,
    };
    for line in &config.lines {
        for script in [&line.init_chat, &line.dial_chat].into_iter().flatten() {
            match std::fs::read_to_string(script) {
                Ok(text) => {
                    if let Err(e) = Script::parse(&text, &script.display().to_string()) {
                        problems.push(format!("line {}: {e}", line.name));
                    }
                }
                Err(e) => problems.push(format!(
                    "line {}: cannot read chat script {}: {e}",
                    line.name,
                    script.display()
                )),
            }
        }
        if line.user.is_some() && secrets.is_some() && line_secret(line, secrets.as_ref()).is_none()
        {
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

pub fn run(args: CheckConfigArgs) -> i32 {
    match check(&args.config) {
        Ok(config) => {
            let names: Vec<&str> = config.lines.iter().map(|l| l.name.as_str()).collect();
            println!(
                "{}: ok, {} line(s): {}",
                args.config.display(),
                names.len(),
                names.join(", ")
            );
            0
        }
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            1
        }
    }
}
