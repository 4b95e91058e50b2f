//! `eqlplus-dialer check-config`: validates the configuration, the secrets file and every
//! chat script it names, as the daemon would at start-up or reload.

use std::path::PathBuf;

use crate::config::{Config, DEFAULT_CONFIG};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

/// Everything wrong with the configuration and the files it names, as messages (the
/// daemon's own loader, [`crate::config::load_checked`]).
pub fn check(path: &std::path::Path) -> Result<Config, Vec<String>> {
    crate::config::load_checked(path)
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
