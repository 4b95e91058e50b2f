//! `eqlplus-dialer daemon`: the supervisor in the foreground (for systemd, or by hand inside a
//! network namespace).

use std::path::PathBuf;

use super::logging::{self, Destination};
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
    /// Run as the background daemon `up` starts: log to the journal, or to [daemon] log_file
    /// where there is none; `down` stops it. (`up` passes this; not for use by hand.)
    #[arg(long, hide = true)]
    pub detached: bool,
}

impl DaemonArgs {
    /// The default log filter (`[daemon] log_level`, else info) and where the log goes. Read
    /// from the file on its own: logging starts before the whole file is checked.
    pub fn logging(&self) -> (String, Destination) {
        let text = std::fs::read_to_string(&self.config).unwrap_or_default();
        let level = crate::config::log_level_from(&text).unwrap_or_else(|| "info".into());
        let file = crate::config::log_file_from(&text)
            .map(|f| super::ctl::relative_to(&self.config, f))
            .unwrap_or_else(|| PathBuf::from(crate::config::defaults::LOG_FILE));
        (level, logging::daemon_destination(self.detached, &file))
    }
}

pub async fn run(args: DaemonArgs) -> i32 {
    let started_by = crate::daemon::started_by(args.detached);
    crate::daemon::run(&args.config, started_by).await
}
