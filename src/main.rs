//! The `eqlplus-dialer` command: argument parsing and dispatch only; the work is in the
//! library.

use clap::{CommandFactory, Parser, Subcommand};
use eqlplus_dialer::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "eqlplus-dialer",
    version,
    about = "Several modem lines, one faster, self-healing Internet connection",
    after_help = cmd::ctl::EXIT_CODES_TOP_HELP
)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. info or eqlplus_dialer=debug.
    /// Default: the configuration's [daemon] log_level (info) for the daemon, warn otherwise.
    #[arg(long, global = true, env = "EQLPLUS_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Balance new connections over links that are already up (no dialing).
    Balance(cmd::balance::BalanceArgs),
    /// Run a pppd chat(8) script against a modem port and print the outcome.
    Chat(cmd::chat::ChatArgs),
    /// Run the supervisor in the foreground: dial every line, keep them up, answer the CLI.
    Daemon(cmd::daemon::DaemonArgs),
    /// Check the configuration, secrets and chat scripts; errors name file:line.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Try the whole program on simulated modems and ISPs, no hardware needed.
    Demo(cmd::demo::DemoArgs),
    /// Find modems on serial ports and print a [[line]] stanza for each (like wvdialconf).
    Probe(cmd::probe::ProbeArgs),
    /// Run simulated equipment (a modem on a pty) to try things without hardware.
    #[command(subcommand)]
    Simulate(cmd::simulate::SimulateCommand),
    /// Ask the daemon to bring lines up (all enabled lines if none are named).
    Up(cmd::ctl::UpArgs),
    /// Ask the daemon to hang lines up and keep them down until `up`.
    Hangup(cmd::ctl::HangupArgs),
    /// Ask the daemon to re-read its configuration.
    Reload(cmd::ctl::ReloadArgs),
    /// Show the daemon's lines: state, addresses, speed, traffic, redials, last error.
    Status(cmd::status::StatusArgs),
    /// Follow the lines' traffic and state, one line per interval (checklinks.sh successor).
    Watch(cmd::watch::WatchArgs),
    /// Full-screen view of the lines: state, share of traffic, rate history; hang up or bring
    /// up the selected line (xeqlinfo successor).
    Monitor(cmd::monitor::MonitorArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Print the man page (roff).
    Man(cmd::completions::ManArgs),
}

/// Commands for tests, kept out of `--help`, completions and the man page (they are parsed
/// only when the first argument names one), and out of the product: they exist only with the
/// `test-support` feature, which test builds have.
#[cfg(feature = "test-support")]
mod hidden {
    use clap::{Parser, Subcommand};
    use eqlplus_dialer::cmd;

    #[derive(Debug, Parser)]
    #[command(name = "eqlplus-dialer")]
    struct HiddenCli {
        #[arg(long, global = true, env = "EQLPLUS_LOG", default_value = "warn")]
        log: String,
        #[command(subcommand)]
        command: Hidden,
    }

    #[derive(Debug, Subcommand)]
    enum Hidden {
        /// Serve canned status reports on a control socket (for tests and trying the CLI).
        ControlTestServer(cmd::control_test_server::ControlTestServerArgs),
    }

    const HIDDEN: &[&str] = &["control-test-server"];

    /// Runs a hidden command and exits, if the first argument names one.
    pub fn run_if_named() {
        let first = std::env::args().nth(1).unwrap_or_default();
        if !HIDDEN.contains(&first.as_str()) {
            return;
        }
        let cli = HiddenCli::parse();
        super::logging(&cli.log, "warn");
        let code = super::runtime().block_on(async {
            match cli.command {
                Hidden::ControlTestServer(args) => cmd::control_test_server::run(args).await,
            }
        });
        std::process::exit(code);
    }
}

/// Starts logging with `filter`; a bad filter is reported and `fallback` used instead (tracing
/// would otherwise drop the bad directive and, for a misspelt level, log nothing at all).
fn logging(filter: &str, fallback: &str) {
    let checked = eqlplus_dialer::config::check_log_filter(filter)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| format!("'{filter}': {e}"))
        });
    let filter = match checked {
        Ok(f) => f,
        Err(e) => {
            eprintln!("eqlplus-dialer: bad log filter: {e}; logging at {fallback} instead");
            tracing_subscriber::EnvFilter::new(fallback)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eqlplus-dialer: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    #[cfg(feature = "test-support")]
    hidden::run_if_named();
    let cli = Cli::parse();
    // The daemon logs at its configuration's `log_level` (default info), others at warn,
    // unless --log or EQLPLUS_LOG says otherwise.
    let fallback = match &cli.command {
        Command::Daemon(_) => "info",
        _ => "warn",
    };
    let default_filter = match &cli.command {
        Command::Daemon(args) => std::fs::read_to_string(&args.config)
            .ok()
            .and_then(|text| eqlplus_dialer::config::log_level_from(&text))
            .unwrap_or_else(|| "info".into()),
        _ => "warn".into(),
    };
    logging(cli.log.as_deref().unwrap_or(&default_filter), fallback);
    let runtime = runtime();
    let code = runtime.block_on(async {
        match cli.command {
            Command::Balance(args) => cmd::balance::run(args).await,
            Command::Chat(args) => cmd::chat::run(args).await,
            Command::CheckConfig(args) => cmd::check_config::run(args),
            Command::Daemon(args) => cmd::daemon::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Probe(args) => cmd::probe::run(args).await,
            Command::Simulate(command) => cmd::simulate::run(command).await,
            Command::Up(args) => cmd::ctl::up(args).await,
            Command::Hangup(args) => cmd::ctl::hangup(args).await,
            Command::Reload(args) => cmd::ctl::reload(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Watch(args) => cmd::watch::run(args).await,
            Command::Monitor(args) => cmd::monitor::run(args).await,
            Command::Completions(args) => cmd::completions::completions(args, Cli::command()),
            Command::Man(args) => cmd::completions::man(args, Cli::command()),
        }
    });
    std::process::exit(code);
}
