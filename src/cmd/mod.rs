//! The command-line subcommands, each a thin layer over the library: argument structs
//! (clap) and a `run` that returns the process exit code.

pub mod balance;
pub mod chat;
pub mod check_config;
pub mod completions;
pub mod control_test_server;
pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod format;
pub mod monitor;
pub mod probe;
pub mod simulate;
pub mod status;
pub mod watch;

use std::path::PathBuf;

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
