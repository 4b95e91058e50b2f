//! `eqlplus-dialer monitor`: the xeqlinfo successor, a full-screen view of the daemon's lines
//! with their share of the traffic and rate history; `h`/`u` hang up or bring up the selected
//! line. The screen and its driver are in [`crate::ui::monitor`].

use std::io::IsTerminal;
use std::time::Duration;

use super::ctl::{self, SocketArgs, exit};
use crate::ui::monitor::{self, Exit};

/// Keys and behaviour, for `--help`.
pub const MONITOR_HELP: &str = "\
Keys:
  ↑/↓, k/j      select a line (Home/End, g/G: first/last)
  h             hang up the selected line (asks y/n first)
  u             bring the selected line up (asks y/n first)
  q, Esc, ^C    quit

When the daemon is not running, or stops, the monitor says so in its header, keeps the last
report on screen and tries again every second (or every --interval if longer).

Exit status:
  0  quit (or ended by SIGTERM, SIGHUP or SIGINT)
  2  usage error, or not on a terminal, or a terminal error";

#[derive(Debug, clap::Args)]
#[command(after_help = MONITOR_HELP)]
pub struct MonitorArgs {
    /// Time between reports: 1s, 500ms, 2m… (at least 100ms).
    #[arg(long, short = 'i', default_value = "1s", value_parser = super::parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub async fn run(args: MonitorArgs) -> i32 {
    let socket = match ctl::socket_or_exit(&args.socket) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        eprintln!("eqlplus-dialer: monitor needs a terminal (try `eqlplus-dialer watch` in pipes)");
        return exit::TROUBLE;
    }
    match monitor::run(&socket, args.interval).await {
        Ok(Exit::Quit | Exit::Signal) => exit::OK,
        Err(e) => {
            eprintln!("eqlplus-dialer: monitor: terminal error: {e}");
            exit::TROUBLE
        }
    }
}
