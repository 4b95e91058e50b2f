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
    /// Bring lines up (all enabled lines if none are named), starting the daemon if it is not
    /// running, and follow them until they are up or have failed.
    Up(cmd::up::UpArgs),
    /// Hang every line up; stop the daemon too if `up` started it.
    #[command(visible_alias = "stop")]
    Down(cmd::up::DownArgs),
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
        cmd::logging::init(&cli.log, "warn", &cmd::logging::Destination::Stderr);
        let code = super::runtime().block_on(async {
            match cli.command {
                Hidden::ControlTestServer(args) => cmd::control_test_server::run(args).await,
            }
        });
        std::process::exit(code);
    }
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
    let (default_filter, destination) = match &cli.command {
        Command::Daemon(args) => args.logging(),
        _ => ("warn".into(), cmd::logging::Destination::Stderr),
    };
    cmd::logging::init(
        cli.log.as_deref().unwrap_or(&default_filter),
        fallback,
        &destination,
    );
    let runtime = runtime();
    let code = runtime.block_on(async {
        match cli.command {
            Command::Balance(args) => cmd::balance::run(args).await,
            Command::Chat(args) => cmd::chat::run(args).await,
            Command::CheckConfig(args) => cmd::check_config::run(args),
            // On a worker, not this thread: its timers then wake one thread, not two.
            Command::Daemon(args) => {
                tokio::spawn(cmd::daemon::run(args))
                    .await
                    .unwrap_or_else(|e| {
                        eprintln!("eqlplus-dialer daemon: {e}");
                        1
                    })
            }
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Probe(args) => cmd::probe::run(args).await,
            Command::Simulate(command) => cmd::simulate::run(command).await,
            Command::Up(args) => cmd::up::up(args).await,
            Command::Down(args) => cmd::up::down(args).await,
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
