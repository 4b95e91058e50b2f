//! `eqlplus-dialer watch`: the checklinks.sh successor. Subscribes to the daemon's status
//! reports and prints one line per report: each line's state, rx/tx rate and share of the
//! traffic. Pipe-friendly: no colour unless stdout is a terminal, flushed per line, a quiet
//! exit when the reader goes away (`| head`).

use std::time::Duration;

use super::ctl::{self, EXIT_CODES_HELP, SocketArgs, exit};
use super::format::{self, style};
use super::status::colour_stdout;
use crate::control::{Response, StatusReport, client};

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct WatchArgs {
    /// Time between reports: 1s, 500ms, 2m… (at least 100ms).
    #[arg(long, short = 'i', default_value = "1s", value_parser = format::parse_duration)]
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

/// One report as one line: `12:34:56  ttyS0 up rx 5.3 KiB/s tx 700 B/s 62% | … | total …`.
pub fn render_line(report: &StatusReport, colour: bool) -> String {
    let paint = |text: &str, s: &'static str| {
        if colour {
            format!("{s}{text}{}", style::RESET)
        } else {
            text.to_string()
        }
    };
    let mut parts = Vec::with_capacity(report.lines.len() + 1);
    for l in &report.lines {
        let state = paint(&l.state, format::state_style(&l.state));
        if l.state == "up" || l.rx_rate > 0.0 || l.tx_rate > 0.0 {
            parts.push(format!(
                "{} {} rx {} tx {} {}",
                l.name,
                state,
                format::rate(l.rx_rate),
                format::rate(l.tx_rate),
                format::percent(l.share)
            ));
        } else {
            parts.push(format!("{} {}", l.name, state));
        }
    }
    let rx: f64 = report.lines.iter().map(|l| l.rx_rate).sum();
    let tx: f64 = report.lines.iter().map(|l| l.tx_rate).sum();
    parts.push(format!(
        "total rx {} tx {}",
        format::rate(rx),
        format::rate(tx)
    ));
    format!("{}  {}\n", format::clock(report.time), parts.join(" | "))
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
    let colour = !args.json && colour_stdout();
    let mut printed = 0u64;
    loop {
        let report = match subscription.next().await {
            Some(Ok(Response::Status(report))) => report,
            Some(Ok(Response::Error { message })) => return ctl::report_refusal(&message),
            Some(Ok(Response::Ok { message })) => {
                eprintln!("eqlplus-dialer: expected a status report, got: {message}");
                return exit::TROUBLE;
            }
            Some(Err(e)) => return ctl::report_error(&e),
            None => {
                eprintln!("eqlplus-dialer: the daemon closed the connection (stopped?)");
                return exit::NOT_RUNNING;
            }
        };
        let text = if args.json {
            match serde_json::to_string(&report) {
                Ok(json) => json + "\n",
                Err(e) => {
                    eprintln!("eqlplus-dialer: cannot encode the report: {e}");
                    return exit::TROUBLE;
                }
            }
        } else {
            render_line(&report, colour)
        };
        match ctl::print_out(&text) {
            Ok(true) => {}
            // The reader went away: that is how `watch | head` ends.
            Ok(false) => return exit::OK,
            Err(e) => {
                eprintln!("eqlplus-dialer: cannot write to stdout: {e}");
                return exit::TROUBLE;
            }
        }
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return exit::OK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::LineStatus;

    #[test]
    fn one_line_per_report() {
        let report = StatusReport {
            time: 0.0,
            policy: "weighted".into(),
            lines: vec![
                LineStatus {
                    name: "ttyS0".into(),
                    state: "up".into(),
                    rx_rate: 5427.0,
                    tx_rate: 700.0,
                    share: 0.624,
                    ..LineStatus::default()
                },
                LineStatus {
                    name: "ttyS1".into(),
                    state: "up".into(),
                    rx_rate: 3200.0,
                    tx_rate: 500.0,
                    share: 0.376,
                    ..LineStatus::default()
                },
                LineStatus {
                    name: "ttyUSB0".into(),
                    state: "holdoff".into(),
                    ..LineStatus::default()
                },
            ],
        };
        let line = render_line(&report, false);
        let (clock, rest) = line.split_at(8);
        assert_eq!(clock, format::clock(0.0));
        assert_eq!(
            rest,
            "  ttyS0 up rx 5.3 KiB/s tx 700 B/s 62% | ttyS1 up rx 3.1 KiB/s tx 500 B/s 38% \
             | ttyUSB0 holdoff | total rx 8.4 KiB/s tx 1.2 KiB/s\n"
        );
        let coloured = render_line(&report, true);
        assert!(
            coloured.contains("ttyS0 \x1b[32mup\x1b[0m rx"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("ttyUSB0 \x1b[33mholdoff\x1b[0m"),
            "{coloured:?}"
        );
    }
}
