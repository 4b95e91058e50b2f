//! The command-line subcommands, each a thin layer over the library: argument structs
//! (clap) and a `run` that returns the process exit code.

pub mod balance;
pub mod chat;
pub mod check_config;
pub mod completions;
#[cfg(feature = "test-support")]
pub mod control_test_server;
pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod logging;
pub mod monitor;
pub mod probe;
pub mod simulate;
pub mod status;
pub mod up;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use crate::serial::{DEFAULT_LOCK_DIR, FlowControl, SerialConfig};

/// Port options shared by the subcommands that open a modem.
#[derive(Debug, Clone, clap::Args)]
pub struct PortArgs {
    /// Line speed: any rate the port supports.
    #[arg(long, short = 's', default_value_t = 115_200)]
    pub baud: u32,
    /// Flow control: none or hardware (RTS/CTS).
    #[arg(long, default_value = "none")]
    pub flow: FlowControl,
    /// Directory of UUCP lock files (LCK..ttyS0).
    #[arg(long, default_value = DEFAULT_LOCK_DIR, value_name = "DIR")]
    pub lock_dir: PathBuf,
    /// Don't create a UUCP lock file (exclusive open still applies).
    #[arg(long)]
    pub no_lock: bool,
}

impl PortArgs {
    pub fn serial_config(&self) -> SerialConfig {
        SerialConfig {
            baud: self.baud,
            flow: self.flow,
            lock_dir: (!self.no_lock).then(|| self.lock_dir.clone()),
            ..SerialConfig::default()
        }
    }
}

/// Parses `--interval`-style durations: `1s`, `500ms`, `1.5s`, `2m`, `1h`, or plain seconds
/// (`2`, `0.25`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("'{text}' is not a duration (examples: 1s, 500ms, 1.5s, 2m)");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parsing() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "fast", "1x", "-1s", "1..2s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }
}
