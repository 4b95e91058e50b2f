//! `eqlplus-dialer demo`: the whole program on simulated equipment, no hardware needed.
//!
//! Today it dials every simulated line with the shipped Hayes chat script (one line answers
//! BUSY first, as real ones do) and shows each line's outcome. It grows with the project:
//! PPP, slaves and the balancer join as they land.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::chat::{ChatEngine, ChatOptions, Outcome, Script, run_chat};
use crate::serial::{HangupTiming, SerialConfig, SerialPort};
use crate::sim::{DialAnswer, ModemConfig, SimModem};

/// The Hayes script the demo dials with (the same text as chat-scripts/hayes-dialup.chat).
const HAYES_SCRIPT: &str = include_str!("../../chat-scripts/hayes-dialup.chat");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of simulated modem lines.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub lines: u8,
}

pub async fn run(args: DemoArgs) -> i32 {
    let script = match Script::parse(HAYES_SCRIPT, "hayes-dialup.chat") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eqlplus-dialer demo: {e}");
            return 1;
        }
    };
    let locks = std::env::temp_dir().join(format!("eqlplus-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&locks) {
        eprintln!(
            "eqlplus-dialer demo: cannot create {}: {e}",
            locks.display()
        );
        return 1;
    }
    println!("eqlplus-dialer demo: {} simulated modem lines", args.lines);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.lines {
        let script = script.clone();
        let locks = locks.clone();
        tasks.spawn(async move { (index, dial_line(index, script, locks).await) });
    }
    let mut results = tasks.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    let mut up = 0;
    for (index, result) in &results {
        match result {
            Ok(line) => {
                up += 1;
                println!("  line {index}: {line}");
            }
            Err(e) => println!("  line {index}: failed: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&locks);
    println!("{up} of {} lines connected", args.lines);
    if up == results.len() { 0 } else { 1 }
}

/// Dials one simulated line, redialing once after BUSY, and hangs up.
async fn dial_line(index: u8, script: Script, locks: PathBuf) -> Result<String, String> {
    // Line 1 is busy on the first attempt, to show a redial.
    let answers = if index == 1 {
        vec![DialAnswer::Busy, DialAnswer::Connect(Some(33_600))]
    } else {
        vec![DialAnswer::Connect(Some(57_600 - u32::from(index) * 4_800))]
    };
    let guard = Duration::from_millis(200);
    let (sim, _calls) = SimModem::spawn(ModemConfig {
        answers,
        guard,
        ..ModemConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let config = SerialConfig {
        lock_dir: Some(locks),
        hangup: HangupTiming {
            guard,
            ..HangupTiming::default()
        },
        ..SerialConfig::default()
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let port = SerialPort::open(sim.tty(), &config).map_err(|e| e.to_string())?;
        let options = ChatOptions {
            phone: Some(format!("555{index:04}")),
            ..ChatOptions::default()
        };
        let mut engine = ChatEngine::new(script.clone(), options, Instant::now());
        let outcome = run_chat(&port, &mut engine, &mut |_| {}).await;
        port.hangup().await;
        match outcome {
            Outcome::Success(s) => {
                return Ok(format!(
                    "{} on {} after {attempts} attempt(s)",
                    s.connect.unwrap_or_else(|| "connected".into()),
                    sim.tty().display()
                ));
            }
            Outcome::Failure(f) if attempts < 3 => {
                println!("  line {index}: {f}, redialing");
            }
            Outcome::Failure(f) => return Err(f.to_string()),
        }
    }
}
