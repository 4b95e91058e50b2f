//! The `eqlplus-dialer` command: argument parsing and dispatch only; the work is in the
//! library.

use clap::{Parser, Subcommand};
use eqlplus_dialer::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "eqlplus-dialer",
    version,
    about = "Several modem lines, one faster, self-healing Internet connection"
)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. info or eqlplus_dialer=debug.
    #[arg(long, global = true, env = "EQLPLUS_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Balance new connections over links that are already up (no dialing).
    Balance(cmd::balance::BalanceArgs),
    /// Run a pppd chat(8) script against a modem port and print the outcome.
    Chat(cmd::chat::ChatArgs),
    /// Check the configuration, secrets and chat scripts; errors name file:line.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Try the whole program on simulated modems and ISPs, no hardware needed.
    Demo(cmd::demo::DemoArgs),
    /// Find modems on serial ports and print a [[line]] stanza for each (like wvdialconf).
    Probe(cmd::probe::ProbeArgs),
    /// Run simulated equipment (a modem on a pty) to try things without hardware.
    #[command(subcommand)]
    Simulate(cmd::simulate::SimulateCommand),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eqlplus-dialer: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Balance(args) => cmd::balance::run(args).await,
            Command::Chat(args) => cmd::chat::run(args).await,
            Command::CheckConfig(args) => cmd::check_config::run(args),
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Probe(args) => cmd::probe::run(args).await,
            Command::Simulate(command) => cmd::simulate::run(command).await,
        }
    });
    std::process::exit(code);
}
