//! `eqlplus-dialer daemon`: the supervisor in the foreground (for systemd, or by hand inside a
//! network namespace).

use std::path::PathBuf;

use crate::config::DEFAULT_CONFIG;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Signals: SIGTERM/SIGINT hang every line up and remove all kernel state; \
SIGHUP re-reads the configuration (a broken file is refused and the running one stays)."
)]
pub struct DaemonArgs {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

pub async fn run(args: DaemonArgs) -> i32 {
    crate::daemon::run(&args.config).await
}
