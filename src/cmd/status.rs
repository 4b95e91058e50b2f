//! `eqlplus-dialer status [LINE] [--json]`: the daemon's lines as a table (the getpppinfo
//! successor), with a detailed block when one line is asked for, or the raw JSON report. The
//! text is made by [`crate::ui::status_view`].

use super::ctl::{self, EXIT_CODES_HELP, SocketArgs, exit};
use crate::control::{Request, client};
use crate::ui::{format, status_view};

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct StatusArgs {
    /// Only this line (and its details).
    #[arg(value_name = "LINE")]
    pub line: Option<String>,
    /// Print the daemon's report as JSON (one object on one line).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub async fn run(args: StatusArgs) -> i32 {
    let socket = match ctl::socket_or_exit(&args.socket) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let detail = args.line.is_some();
    let answer = client::request(&socket, Request::Status { line: args.line }).await;
    let report = match ctl::status_report(answer) {
        Ok(report) => report,
        Err(code) => return code,
    };
    let colour = !args.json && format::colour_stdout();
    match ctl::print_report(&report, args.json, |r| {
        status_view::render(r, detail, colour)
    }) {
        Ok(_) => exit::OK,
        Err(code) => code,
    }
}
