//! `eqlplus-dialer simulate modem`: a simulated Hayes modem on a new pty.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sim::{DialAnswer, ModemConfig, SimCall, SimModem, parse_answers};

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCommand {
    /// A Hayes-style modem on a new pty, to try chat scripts without hardware.
    Modem(SimModemArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimModemArgs {
    /// Also make this symlink to the pty, e.g. /tmp/ttySIM0.
    #[arg(long, value_name = "PATH")]
    pub link: Option<PathBuf>,
    /// Answers to successive ATDs, comma-separated; the last repeats:
    /// connect[:SPEED], busy, no-carrier, no-dialtone, no-answer, silent.
    #[arg(long, default_value = "connect:57600", value_parser = parse_answer_list, value_name = "LIST")]
    pub answer: AnswerList,
    /// Time from ATD to the answer, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub dial_delay: u64,
    /// Escape guard time for +++, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub guard: u64,
    /// Start with command echo off (ATE0).
    #[arg(long)]
    pub no_echo: bool,
    /// Be a cellular modem ("SimModem LTE", +GCAP: +CGSM) rather than a 56K analog one.
    #[arg(long)]
    pub cellular: bool,
}

/// A parsed `--answer` list.
#[derive(Debug, Clone)]
pub struct AnswerList(pub Vec<DialAnswer>);

fn parse_answer_list(s: &str) -> Result<AnswerList, String> {
    parse_answers(s).map(AnswerList)
}

pub async fn run(command: SimulateCommand) -> i32 {
    match command {
        SimulateCommand::Modem(args) => match modem(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("eqlplus-dialer simulate modem: {e}");
                1
            }
        },
    }
}

async fn modem(args: SimModemArgs) -> std::io::Result<()> {
    let config = ModemConfig {
        answers: args.answer.0.clone(),
        dial_delay: Duration::from_millis(args.dial_delay),
        guard: Duration::from_millis(args.guard),
        echo: !args.no_echo,
        cellular: args.cellular,
        model: if args.cellular {
            "SimModem LTE".into()
        } else {
            ModemConfig::default().model
        },
        ..ModemConfig::default()
    };
    let (mut sim, mut calls) = SimModem::spawn(config)?;
    if let Some(link) = &args.link {
        sim.link(link).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot link {}: {e}", link.display()))
        })?;
    }
    let answers: Vec<String> = args.answer.0.iter().map(ToString::to_string).collect();
    match sim.link_path() {
        Some(link) => println!(
            "simulated modem on {} (linked as {})",
            sim.tty().display(),
            link.display()
        ),
        None => println!("simulated modem on {}", sim.tty().display()),
    }
    println!("answers to ATD: {} (the last repeats)", answers.join(", "));
    println!("after CONNECT the call loops data back; Ctrl-C to stop");
    let mut n = 0u32;
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(call) = call else { break };
                n += 1;
                println!(
                    "call {n}: dialed '{}', {}",
                    call.number,
                    call.speed.map_or("CONNECT".to_string(), |s| format!("CONNECT {s}"))
                );
                tokio::spawn(loop_back(call));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(sim);
    Ok(())
}

/// The far end of a call when no peer is attached: echoes everything back.
async fn loop_back(mut call: SimCall) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = call.stream.read(&mut buf).await {
        if n == 0 || call.stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
