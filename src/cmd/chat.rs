//! `eqlplus-dialer chat`: run a pppd chat script against a port, like `chat -v`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::PortArgs;
use crate::chat::{Action, ChatEngine, ChatOptions, Outcome, Script, run_chat};
use crate::serial::SerialPort;

/// Exit status for a bad script or bad arguments (chat(8) uses 1).
const EXIT_INVALID: i32 = 1;
/// Exit status for an I/O error, e.g. the port cannot be opened (chat(8) uses 2).
const EXIT_IO: i32 = 2;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status as chat(8): 0 connected, 1 bad script or arguments, \
2 I/O error, 3 timeout, 4 the first ABORT string matched, 5 the second, and so on."
)]
pub struct ChatArgs {
    /// The modem port, e.g. /dev/ttyS0, /dev/ttyUSB2 or a pty.
    #[arg(long, short = 'd', value_name = "DEVICE")]
    pub device: PathBuf,
    #[command(flatten)]
    pub port: PortArgs,
    /// Chat script file (chat -f).
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with = "script_args")]
    pub script: Option<PathBuf>,
    /// Phone number, substituted for \T (chat -T).
    #[arg(short = 'T', value_name = "PHONE")]
    pub phone: Option<String>,
    /// Second value, substituted for \U, e.g. an APN or a password (chat -U). Never logged.
    #[arg(short = 'U', value_name = "VALUE")]
    pub phone2: Option<String>,
    /// Timeout for each expect until the script sets TIMEOUT, in seconds (chat -t).
    #[arg(short = 't', value_name = "SECONDS", default_value_t = 45)]
    pub timeout: u64,
    /// Start with ECHO ON: show what the modem sends (chat -e).
    #[arg(short = 'e')]
    pub echo: bool,
    /// Verbose: log every expect, send and received line to stderr (chat -v).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// The script as arguments instead of a file, e.g. -- '' ATZ OK ATDT5551234 CONNECT ''.
    #[arg(last = true, value_name = "SCRIPT")]
    pub script_args: Vec<String>,
}

pub async fn run(args: ChatArgs) -> i32 {
    let script = match load_script(&args) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("eqlplus-dialer chat: {message}");
            return EXIT_INVALID;
        }
    };
    let port = match SerialPort::open_async(&args.device, &args.port.serial_config()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eqlplus-dialer chat: {e}");
            return EXIT_IO;
        }
    };
    let options = ChatOptions {
        phone: args.phone.clone(),
        phone2: args.phone2.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
        echo: args.echo,
    };
    let mut engine = ChatEngine::new(script, options, Instant::now());
    let verbose = args.verbose;
    let mut show = |action: &Action| show_action(action, verbose);
    let outcome = run_chat(&port, &mut engine, &mut show).await;
    report(&args, &outcome);
    outcome.exit_code()
}

fn load_script(args: &ChatArgs) -> Result<Script, String> {
    match &args.script {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| format!("cannot read chat script {}: {e}", path.display()))?;
            Script::parse(&String::from_utf8_lossy(&text), &path.display().to_string())
                .map_err(|e| e.to_string())
        }
        None if args.script_args.is_empty() => {
            Err("no script: give --script FILE or the script after --".into())
        }
        None => Script::from_args(&args.script_args).map_err(|e| e.to_string()),
    }
}

fn show_action(action: &Action, verbose: bool) {
    let mut err = std::io::stderr().lock();
    let _ = match action {
        Action::Say(text) => write!(err, "{text}"),
        Action::Echo(bytes) => {
            // Like chat -e: carriage returns dropped, the rest as received.
            let text: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
            err.write_all(&text)
        }
        Action::Log(line) if verbose => writeln!(err, "chat: {line}"),
        _ => Ok(()),
    };
}

fn report(args: &ChatArgs, outcome: &Outcome) {
    match outcome {
        Outcome::Success(s) => {
            let line = s.connect.as_deref().unwrap_or("script completed");
            match s.speed {
                Some(speed) => println!("{}: {line} ({speed} bit/s)", args.device.display()),
                None => println!("{}: {line}", args.device.display()),
            }
            for r in &s.reports {
                if Some(r.as_str()) != s.connect.as_deref() {
                    println!("report: {r}");
                }
            }
        }
        Outcome::Failure(f) => eprintln!(
            "eqlplus-dialer chat: {}: {f} (exit {})",
            args.device.display(),
            f.exit_code()
        ),
    }
}
