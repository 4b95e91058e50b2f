//! `eqlplus-dialer simulate modem`: a simulated Hayes modem on a new pty; `simulate modems`:
//! several, whose calls one ISP answers with Multilink PPP.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use std::net::Ipv4Addr;

use crate::ppp::Config as PppConfig;
use crate::sim::cellular::{self, PIN_TRIES, RegTimeline, SIM_PUK, SimCard};
use crate::sim::isp::Misbehave;
use crate::sim::{DialAnswer, ModemConfig, SimCall, SimModem, parse_answers};

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCommand {
    /// A Hayes-style modem on a new pty, to try chat scripts without hardware.
    ///
    /// While it runs, SIGUSR1 wedges it (it answers nothing but AT+CFUN=1,1 until that or a
    /// replug) and SIGUSR2 unplugs it (its pty closes, its --link goes away) or plugs it in
    /// again (on a new pty, the link moved there, powered on afresh).
    Modem(SimModemArgs),
    /// Several modems on new ptys whose calls go to ONE simulated ISP that answers Multilink
    /// PPP (RFC 1990), to try bundles without hardware: the calls of one dialer's bundle share
    /// one IPCP (10.64.1.1 ↔ 10.64.1.2, DNS 10.64.0.53); a call without Multilink gets plain
    /// PPP (modem N: 10.64.1.(100+N)). Addresses are data only: nothing is routed, unless
    /// --routed.
    Modems(SimModemsArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimModemsArgs {
    /// How many modems.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub count: u8,
    /// Also make symlinks PATH1, PATH2, … to the ptys, e.g. /tmp/ttySIM makes /tmp/ttySIM1….
    #[arg(long, value_name = "PATH")]
    pub link: Option<PathBuf>,
    /// Each modem's line rate (its data is paced to it; CONNECT says it), e.g. 56kbit, 1mbit.
    #[arg(long, default_value = "57600", value_parser = crate::cmd::demo::parse_rate)]
    pub rate: u32,
    /// Time from ATD to the answer, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub dial_delay: u64,
    /// Route the customers' packets: a TUN device per link in this network namespace
    /// (the bundle's isp-mp, 10.64.1.1; a plain link's isp-lN), root only; serve something
    /// on 10.64.1.1 and the dialer reaches it through its bundle.
    #[arg(long)]
    pub routed: bool,
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
    /// routed (that PPP server with the caller's packets on a TUN device isp0, 10.64.1.1, in
    /// this namespace: run it in a network namespace of its own, as a far end to reach),
    /// or a broken ISP: ack-no-request (acks our LCP Configure-Request, never sends its
    /// own), lcp-storm (LCP Configure-Requests as fast as the line takes them),
    /// echo-flood (comes up, then floods Echo-Requests and unknown protocols and stops
    /// reading), no-read (comes up, then neither reads nor writes), bad-address (assigns
    /// the caller 127.0.0.2), assign:A.B.C.D (assigns the caller that address).
    #[arg(long, default_value = "loopback", value_parser = parse_far_end, value_name = "MODE")]
    pub isp: FarEnd,
    /// The SIM card (with --cellular): ready; pin:CODE[:TRIES] (AT+CPIN? says SIM PIN after
    /// every power-on until AT+CPIN="CODE"; each wrong PIN costs a try, 3 by default, and the
    /// last one blocks the SIM); puk (blocked: AT+CPIN="12345678","NEWPIN" unlocks it);
    /// absent (AT+CPIN? fails with +CME ERROR: 10 under AT+CMEE=1).
    #[arg(long, default_value = "ready", value_parser = parse_sim, value_name = "SIM", requires = "cellular")]
    pub sim: SimCard,
    /// Network registration over time from the SIM being ready (with --cellular), as
    /// STATE[:DURATION],… where the last state holds: home, roaming, searching, denied,
    /// not-searching, unknown; durations as 500ms, 20s, 2m. E.g. searching:20s,home.
    /// AT+CREG?/+CGREG?/+CEREG? report it; ATD while not registered gets NO CARRIER.
    #[arg(long, default_value = "home", value_parser = parse_registration, value_name = "TIMELINE", requires = "cellular")]
    pub registration: RegTimeline,
    /// The operator AT+COPS? names while registered (with --cellular).
    #[arg(long, default_value = cellular::DEFAULT_OPERATOR, value_name = "NAME", requires = "cellular")]
    pub operator: String,
    /// Signal quality AT+CSQ reports: 0-31 (-113 to -51 dBm), 99 unknown.
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u8).range(0..=99), value_name = "N")]
    pub csq: u8,
    /// LTE RSRP index AT+CESQ reports (with --cellular): 0-97 (about N - 141 dBm), 255
    /// unknown.
    #[arg(long, default_value_t = 45, value_parser = clap::value_parser!(u8).range(0..=255), value_name = "N", requires = "cellular")]
    pub rsrp: u8,
    /// LTE RSRQ index AT+CESQ reports (with --cellular): 0-34 (about N/2 - 20 dB), 255
    /// unknown.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=255), value_name = "N", requires = "cellular")]
    pub rsrq: u8,
    /// The IMEI AT+CGSN reports (15 digits).
    #[arg(long, default_value = cellular::DEFAULT_IMEI, value_parser = parse_imei, value_name = "DIGITS")]
    pub imei: String,
    /// The ICCID AT+CCID and AT+ICCID report (with --cellular; 19 or 20 digits).
    #[arg(long, default_value = cellular::DEFAULT_ICCID, value_parser = parse_iccid, value_name = "DIGITS", requires = "cellular")]
    pub iccid: String,
    /// Wedge once the Nth ATD is over (its result given, its call ended; 0: from the
    /// start): no echo, no answer to anything but AT+CFUN=1,1 (which reboots it), as hung
    /// field modems do.
    #[arg(long, value_name = "N")]
    pub wedge_after: Option<usize>,
    /// How long AT+CFUN=1,1 keeps the modem silent (rebooting) after its OK, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub reboot_time: u64,
    /// Say RDY when a reboot is over, as Quectel modems do.
    #[arg(long)]
    pub rdy: bool,
}

fn parse_sim(s: &str) -> Result<SimCard, String> {
    s.parse()
}

fn parse_registration(s: &str) -> Result<RegTimeline, String> {
    s.parse()
}

fn parse_imei(s: &str) -> Result<String, String> {
    cellular::check_digits("IMEI", s, 15..=15).map(|()| s.to_string())
}

fn parse_iccid(s: &str) -> Result<String, String> {
    cellular::check_digits("ICCID", s, 19..=20).map(|()| s.to_string())
}

/// Who answers a connected call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FarEnd {
    /// Every byte back.
    Loopback,
    /// A well-behaved PPP server (no routing).
    Ppp,
    /// The same, whose caller's packets go through a TUN device `isp0` in the simulator's
    /// network namespace.
    Routed,
    /// A broken one.
    Misbehave(Misbehave),
}

impl std::fmt::Display for FarEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FarEnd::Loopback => f.write_str("loopback"),
            FarEnd::Ppp => f.write_str("ppp"),
            FarEnd::Routed => f.write_str("routed"),
            FarEnd::Misbehave(m) => m.fmt(f),
        }
    }
}

fn parse_far_end(s: &str) -> Result<FarEnd, String> {
    match s {
        "loopback" => Ok(FarEnd::Loopback),
        "ppp" => Ok(FarEnd::Ppp),
        "routed" => Ok(FarEnd::Routed),
        other => other
            .parse()
            .map(FarEnd::Misbehave)
            .map_err(|e: String| format!("{e}; or loopback, ppp, routed")),
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
    let (what, result) = match command {
        SimulateCommand::Modem(args) => ("modem", modem(args).await),
        SimulateCommand::Modems(args) => ("modems", modems(args).await),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("eqlplus-dialer simulate {what}: {e}");
            1
        }
    }
}

/// `simulate modems`: the modems, the Multilink ISP, and a line for each customer link that
/// comes up or goes.
async fn modems(args: SimModemsArgs) -> std::io::Result<()> {
    use crate::sim::isp::{CustomerIp, HangupSwitch, IspLine, MultilinkIspConfig, Routing};
    let mut modems = Vec::new();
    let mut lines = Vec::new();
    // Kept so the lines' hang-up channels stay open (nobody hangs up here).
    let mut switches = Vec::new();
    for i in 1..=usize::from(args.count) {
        let config = ModemConfig {
            answers: vec![DialAnswer::Connect(Some(args.rate))],
            dial_delay: Duration::from_millis(args.dial_delay),
            line_rate: Some(args.rate),
            ..ModemConfig::default()
        };
        let (mut sim, calls) = SimModem::spawn(config)?;
        if let Some(prefix) = &args.link {
            let mut link = prefix.clone().into_os_string();
            link.push(i.to_string());
            let link = PathBuf::from(link);
            sim.link(&link).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot link {}: {e}", link.display()))
            })?;
        }
        match sim.link_path() {
            Some(link) => println!(
                "modem {i} on {} (linked as {})",
                sim.tty().display(),
                link.display()
            ),
            None => println!("modem {i} on {}", sim.tty().display()),
        }
        let (switch, hangup) = HangupSwitch::new();
        lines.push(IspLine {
            calls,
            plain_peer: crate::sim::world::multilink_plain_local(i),
            plain_device: format!("isp-l{i}"),
            hangup,
        });
        modems.push(sim);
        switches.push(switch);
    }
    println!(
        "every call answered by one ISP with Multilink (MRRU 1500), CONNECT {}; Ctrl-C to stop",
        args.rate
    );
    let config = MultilinkIspConfig {
        local: SIM_ISP,
        dns: vec![SIM_DNS],
        users: Vec::new(),
        delay: crate::sim::upstream::Delay::default(),
        bundle_peer: SIM_CUSTOMER,
        bundle_device: crate::sim::world::BUNDLE_DEVICE.into(),
        mrru: 1500,
    };
    let (customers_tx, mut customers) = tokio::sync::mpsc::unbounded_channel();
    let routing = if args.routed {
        Routing::Tun(crate::net::Netlink::new()?)
    } else {
        Routing::Channels(customers_tx)
    };
    let isp = tokio::spawn(crate::sim::isp::serve_multilink_routed(
        config, lines, routing,
    ));
    loop {
        tokio::select! {
            customer = customers.recv() => {
                let Some(CustomerIp { device, peer, mtu, to_customer, mut from_customer }) = customer else {
                    break;
                };
                let what = if device == crate::sim::world::BUNDLE_DEVICE {
                    "a bundle"
                } else {
                    "a plain PPP link"
                };
                println!("{what} is up: customer {peer}, MTU {mtu}");
                tokio::spawn(async move {
                    // Nothing is routed: the customer's packets are counted and dropped.
                    let _keep = to_customer;
                    let mut packets = 0u64;
                    while from_customer.recv().await.is_some() {
                        packets += 1;
                    }
                    println!("{what} to {peer} is down ({packets} packets received)");
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    isp.abort();
    drop(modems);
    Ok(())
}

async fn modem(args: SimModemArgs) -> std::io::Result<()> {
    let config = ModemConfig {
        answers: args.answer.0.clone(),
        dial_delay: Duration::from_millis(args.dial_delay),
        guard: Duration::from_millis(args.guard),
        echo: !args.no_echo,
        cellular: args.cellular,
        model: if args.cellular {
            ModemConfig::cellular().model
        } else {
            ModemConfig::default().model
        },
        signal: args.csq,
        sim: args.sim.clone(),
        registration: args.registration.clone(),
        operator: args.operator.clone(),
        rsrp: args.rsrp,
        rsrq: args.rsrq,
        imei: args.imei.clone(),
        iccid: args.iccid.clone(),
        wedge_after: args.wedge_after,
        reboot_time: Duration::from_millis(args.reboot_time),
        ready_urc: args.rdy,
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
    if args.cellular {
        println!(
            "SIM: {}; registration: {}; operator {}; IMEI {}, ICCID {}",
            describe_sim(&args.sim),
            args.registration,
            args.operator,
            args.imei,
            args.iccid
        );
    }
    if let Some(n) = args.wedge_after {
        println!("wedges after {n} ATDs, until AT+CFUN=1,1 or a replug");
    }
    match &args.isp {
        FarEnd::Loopback => println!("after CONNECT the call loops data back; Ctrl-C to stop"),
        other => println!("after CONNECT the call is answered by: {other}; Ctrl-C to stop"),
    }
    println!(
        "kill -USR1 {pid} wedges it; kill -USR2 {pid} unplugs or replugs it",
        pid = std::process::id()
    );
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut usr2 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())?;
    let mut n = 0u32;
    // `routed`: one ISP answers the calls in turn, its TUN device made at each call's IPCP.
    let (_hangup, hangup) = crate::sim::isp::HangupSwitch::new();
    let routed = (args.isp == FarEnd::Routed).then(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = crate::sim::isp::IspConfig {
            local: SIM_ISP,
            peer: SIM_CUSTOMER,
            dns: vec![SIM_DNS],
            users: Vec::new(),
            device: "isp0".into(),
            delay: Default::default(),
            hangup,
        };
        tokio::spawn(crate::sim::isp::serve_calls(rx, config));
        tx
    });
    loop {
        tokio::select! {
            _ = usr1.recv() => match sim.wedge().await {
                Ok(()) => println!("wedged: only AT+CFUN=1,1 or a replug brings it back"),
                Err(e) => eprintln!("cannot wedge the modem: {e}"),
            },
            _ = usr2.recv() => {
                if sim.is_present() {
                    match sim.vanish().await {
                        Ok(()) => println!("unplugged: {} is gone", sim.tty().display()),
                        Err(e) => eprintln!("cannot unplug the modem: {e}"),
                    }
                } else {
                    match sim.reappear().await {
                        Ok(tty) => println!("plugged in again on {}", tty.display()),
                        Err(e) => eprintln!("cannot plug the modem in again: {e}"),
                    }
                }
            }
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
                    FarEnd::Routed => {
                        if let Some(isp) = &routed {
                            let _ = isp.send(call);
                        }
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

fn describe_sim(sim: &SimCard) -> String {
    match sim {
        SimCard::Ready => "ready".into(),
        SimCard::Pin { pin, tries } => {
            format!("PIN {pin} ({tries} of {PIN_TRIES} tries left, PUK {SIM_PUK})")
        }
        SimCard::Puk => format!("blocked (PUK {SIM_PUK})"),
        SimCard::Absent => "absent".into(),
    }
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
            "routed",
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

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: SimulateCommand,
    }

    fn parse(args: &[&str]) -> Result<SimModemArgs, clap::Error> {
        use clap::Parser;
        let mut all = vec!["simulate", "modem"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| match c.command {
            SimulateCommand::Modem(a) => a,
            other => panic!("not simulate modem: {other:?}"),
        })
    }

    #[test]
    fn cellular_flags_parse_with_defaults_unchanged() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.sim, SimCard::Ready);
        assert_eq!(a.registration, RegTimeline::default());
        assert_eq!((a.csq, a.wedge_after, a.rdy), (21, None, false));
        assert_eq!(a.imei, cellular::DEFAULT_IMEI);
        let a = parse(&[
            "--cellular",
            "--sim",
            "pin:1234",
            "--registration",
            "searching:20s,home",
            "--operator",
            "Test Net",
            "--rsrp",
            "60",
            "--iccid",
            "8931440301234567890",
            "--wedge-after",
            "2",
            "--reboot-time",
            "300",
            "--rdy",
        ])
        .unwrap();
        assert_eq!(a.sim.to_string(), "pin:1234");
        assert_eq!(a.registration.to_string(), "searching:20000ms,home");
        assert_eq!((a.operator.as_str(), a.rsrp), ("Test Net", 60));
        assert_eq!((a.wedge_after, a.reboot_time, a.rdy), (Some(2), 300, true));
        // Cellular-only settings want --cellular; bad values are refused.
        assert!(parse(&["--sim", "absent"]).is_err());
        assert!(parse(&["--cellular", "--sim", "pin:12"]).is_err());
        assert!(parse(&["--imei", "123"]).is_err());
        assert!(parse(&["--csq", "100"]).is_err());
        assert!(parse(&["--cellular", "--registration", "lost"]).is_err());
    }
}
