//! `eqlplus-dialer simulate modem`: a simulated Hayes modem on a new pty.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use std::net::Ipv4Addr;

use crate::ppp::Config as PppConfig;
use crate::sim::isp::Misbehave;
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
    /// connect[:SPEED], busy, no-carrier, no-dialtone, no-answer, silent (nothing ever),
    /// garbage (random bytes every 10 ms, never a result code), endless (one line
    /// without end, "RING RING …", never a newline).
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
    /// Who answers a connected call: loopback (echo every byte back), ppp (a PPP
    /// server: addresses 10.64.1.1 ↔ 10.64.1.2, DNS 10.64.0.53, no auth, nothing routed),
    /// or a broken ISP: ack-no-request (acks our LCP Configure-Request, never sends its
    /// own), lcp-storm (LCP Configure-Requests as fast as the line takes them),
    /// echo-flood (comes up, then floods Echo-Requests and unknown protocols and stops
    /// reading), no-read (comes up, then neither reads nor writes), bad-address (assigns
    /// the caller 127.0.0.2), assign:A.B.C.D (assigns the caller that address).
    #[arg(long, default_value = "loopback", value_parser = parse_far_end, value_name = "MODE")]
    pub isp: FarEnd,
}

/// Who answers a connected call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FarEnd {
    /// Every byte back.
    Loopback,
    /// A well-behaved PPP server (no routing).
    Ppp,
    /// A broken one.
    Misbehave(Misbehave),
}

impl std::fmt::Display for FarEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FarEnd::Loopback => f.write_str("loopback"),
            FarEnd::Ppp => f.write_str("ppp"),
            FarEnd::Misbehave(m) => m.fmt(f),
        }
    }
}

fn parse_far_end(s: &str) -> Result<FarEnd, String> {
    match s {
        "loopback" => Ok(FarEnd::Loopback),
        "ppp" => Ok(FarEnd::Ppp),
        other => other
            .parse()
            .map(FarEnd::Misbehave)
            .map_err(|e: String| format!("{e}; or loopback, ppp")),
    }
}

/// The simulated ISP's addresses (data only: nothing is routed).
const SIM_ISP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 1);
const SIM_CUSTOMER: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);
const SIM_DNS: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 53);

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
    match &args.isp {
        FarEnd::Loopback => println!("after CONNECT the call loops data back; Ctrl-C to stop"),
        other => println!("after CONNECT the call is answered by: {other}; Ctrl-C to stop"),
    }
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
                match &args.isp {
                    FarEnd::Loopback => {
                        tokio::spawn(loop_back(call));
                    }
                    FarEnd::Ppp => {
                        tokio::spawn(serve_ppp(call));
                    }
                    FarEnd::Misbehave(m) => {
                        tokio::spawn(crate::sim::isp::misbehave(
                            call.stream,
                            m.clone(),
                            sim_isp_config(),
                        ));
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(sim);
    Ok(())
}

fn sim_isp_config() -> PppConfig {
    let mut c = PppConfig::answer(SIM_ISP, SIM_CUSTOMER, &[SIM_DNS]);
    c.name = "isp".into();
    c
}

/// `--isp ppp`: our PPP engine in answer role, addresses as data only.
async fn serve_ppp(call: SimCall) {
    let mut stream = call.stream;
    let mut session = crate::ppp::Session::new(sim_isp_config(), std::time::Instant::now());
    let (_link, channels) = crate::ppp::driver::channels(4);
    let ended = crate::ppp::driver::run(
        &mut session,
        &mut stream,
        &[],
        channels,
        std::future::pending(),
        &crate::ppp::DriverConfig::default(),
    )
    .await;
    println!("PPP ended: {}", ended.reason);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isp_modes_parse_and_print_back() {
        for mode in [
            "loopback",
            "ppp",
            "ack-no-request",
            "lcp-storm",
            "echo-flood",
            "no-read",
            "assign:192.168.1.1",
        ] {
            assert_eq!(parse_far_end(mode).unwrap().to_string(), mode);
        }
        assert_eq!(
            parse_far_end("bad-address").unwrap(),
            FarEnd::Misbehave(Misbehave::Assign(Ipv4Addr::new(127, 0, 0, 2)))
        );
        let e = parse_far_end("assign:300.1.1.1").unwrap_err();
        assert!(e.contains("assign:A.B.C.D"), "{e}");
        let e = parse_far_end("friendly").unwrap_err();
        assert!(e.contains("echo-flood") && e.contains("loopback"), "{e}");
    }
}
