//! `eqlplus-dialer watch`: the checklinks.sh successor. Subscribes to the daemon's status
//! reports and prints one line per report ([`crate::ui::status_view::watch_line`]): each
//! line's state, rx/tx rate and share of the traffic. Pipe-friendly: no colour unless stdout
//! is a terminal, flushed per line, a quiet exit when the reader goes away (`| head`).

use std::time::Duration;

use super::ctl::{self, EXIT_CODES_HELP, SocketArgs, exit};
use crate::control::client;
use crate::ui::{format, status_view};

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct WatchArgs {
    /// Time between reports: 1s, 500ms, 2m… (at least 100ms).
    #[arg(long, short = 'i', default_value = "1s", value_parser = super::parse_duration)]
    pub interval: Duration,
    /// Print each report as JSON, one object per line.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many reports.
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub async fn run(args: WatchArgs) -> i32 {
    let socket = match ctl::socket_or_exit(&args.socket) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if args.count == Some(0) {
        return exit::OK;
    }
    let mut subscription = match client::subscribe(&socket, args.interval).await {
        Ok(s) => s,
        Err(e) => return ctl::report_error(&e),
    };
    let colour = !args.json && format::colour_stdout();
    let mut printed = 0u64;
    loop {
        let Some(answer) = subscription.next().await else {
            eprintln!("eqlplus-dialer: the daemon closed the connection (stopped?)");
            return exit::NOT_RUNNING;
        };
        let report = match ctl::status_report(answer) {
            Ok(report) => report,
            Err(code) => return code,
        };
        match ctl::print_report(&report, args.json, |r| status_view::watch_line(r, colour)) {
            Ok(true) => {}
            // The reader went away: that is how `watch | head` ends.
            Ok(false) => return exit::OK,
            Err(code) => return code,
        }
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return exit::OK;
        }
    }
}
