//! Dial a modem, bring PPP up in user space and ping through it.
//!
//! ```sh
//! cargo run --example ppp_dial -- /tmp/eqlrig-isp/ttyS0 [--user alice --password s3cret]
//! ```
//!
//! Opens the tty, runs `'' ATZ OK ATDT5551234 CONNECT ''`, runs a dialer PPP
//! session over the port, prints the Up event, sends hand-built ICMP echo
//! requests to the peer and to each `--ping` address, prints the replies, then
//! closes (LCP Terminate) and hangs up. Nothing touches this machine's network:
//! no TUN device, address or route; packets exist only inside the session.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use eqlplus_dialer::chat::{ChatEngine, ChatOptions, Outcome, Script, run_chat};
use eqlplus_dialer::ppp::driver::{self, DriverConfig};
use eqlplus_dialer::ppp::{Config, Credentials, Event, Session};
use eqlplus_dialer::serial::{SerialConfig, SerialPort};
use eqlplus_dialer::sim::icmp;
use tokio::time::timeout;

#[derive(Parser)]
struct Args {
    /// The modem's tty.
    tty: PathBuf,
    /// PAP/CHAP user name.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// PAP/CHAP password.
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// More hosts to ping besides the peer.
    #[arg(long, default_value = "198.51.100.10")]
    ping: Vec<Ipv4Addr>,
    /// Echo requests per host.
    #[arg(long, default_value_t = 3)]
    count: u16,
    /// ICMP payload bytes (1472 makes 1500-byte IP packets).
    #[arg(long, default_value_t = 56)]
    size: usize,
    /// Stay up this many seconds after the pings (printing events) before closing.
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let serial = SerialConfig {
        lock_dir: None, // a demo: TIOCEXCL is enough
        ..SerialConfig::default()
    };
    let port = SerialPort::open(&args.tty, &serial)?;

    let script = Script::parse("'' ATZ OK ATDT5551234 CONNECT ''", "ppp_dial")?;
    let mut chat = ChatEngine::new(script, ChatOptions::default(), Instant::now());
    let outcome = run_chat(&port, &mut chat, &mut |a| println!("chat: {a:?}")).await;
    let Outcome::Success(connected) = outcome else {
        port.hangup().await;
        bail!("dialing failed: {outcome:?}");
    };
    println!("chat: connected ({:?})", connected.connect);

    let mut config = Config::dialer(
        args.user
            .zip(args.password)
            .map(|(u, p)| Credentials::new(u, p.as_str())),
    );
    config.seed = os_seed()?;
    let session = Session::new(config, Instant::now());
    let mut ppp = driver::spawn(session, port, connected.leftover, DriverConfig::default());

    let up = timeout(Duration::from_secs(30), async {
        while let Some(ev) = ppp.link.events.recv().await {
            match ev {
                Event::Up { .. } => return Some(ev),
                Event::AuthFailed { reason } => println!("ppp: authentication failed: {reason}"),
                Event::Down { reason } => {
                    println!("ppp: down: {reason}");
                    return None;
                }
                _ => {}
            }
        }
        None
    })
    .await
    .unwrap_or(None);

    let was_up = up.is_some();
    if let Some(Event::Up {
        local,
        peer,
        dns,
        mru,
    }) = up
    {
        println!("ppp: up: local {local} peer {peer} dns {dns:?} mru {mru}");
        // pppd lets IP into its kernel unit only once it has handled the last
        // IPCP Ack itself: a packet sent the instant we are up can be dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let targets: Vec<Ipv4Addr> = std::iter::once(peer)
            .chain(args.ping.iter().copied())
            .collect();
        for (i, &dst) in targets.iter().enumerate() {
            for seq in 1..=args.count {
                let payload: Vec<u8> = (0..args.size).map(|i| i as u8).collect();
                let id = 0x4500 + i as u16;
                let sent = Instant::now();
                ppp.link
                    .outgoing
                    .send(icmp::echo_request(local, dst, id, seq, &payload))
                    .await?;
                let reply = timeout(Duration::from_secs(3), async {
                    while let Some(pkt) = ppp.link.incoming.recv().await {
                        match icmp::parse(&pkt) {
                            Some(e) if e.reply && e.id == id && e.seq == seq => return Some(e),
                            _ => println!("ppp: other packet, {} bytes", pkt.len()),
                        }
                    }
                    None
                })
                .await;
                match reply {
                    Ok(Some(e)) => println!(
                        "{} bytes from {}: icmp_seq={} ttl={} time={:.1} ms",
                        e.payload.len() + 8,
                        e.src,
                        e.seq,
                        e.ttl,
                        sent.elapsed().as_secs_f64() * 1000.0
                    ),
                    _ => println!("no reply from {dst} for icmp_seq={seq}"),
                }
            }
        }
    }

    // Hold the link: the peer may close it or go silent meanwhile.
    let hold = tokio::time::sleep(Duration::from_secs(args.hold));
    tokio::pin!(hold);
    loop {
        tokio::select! {
            () = &mut hold => break,
            ev = ppp.link.events.recv() => match ev {
                Some(Event::Down { reason }) => {
                    println!("ppp: down: {reason}");
                    break;
                }
                Some(ev) => println!("ppp: {ev:?}"),
                None => break,
            },
        }
    }
    ppp.closer.close();
    while let Some(ev) = ppp.link.events.recv().await {
        if let Event::Down { reason } = ev {
            println!("ppp: down: {reason}");
        }
    }
    let done = ppp.task.await.context("PPP driver task")?;
    let stats = done.session.stats();
    println!(
        "ppp: {} frames in ({} bad FCS), {} frames out; {} IP packets in, {} out",
        stats.rx_frames,
        stats.rx_bad_fcs,
        stats.tx_frames,
        stats.rx_ip_packets,
        stats.tx_ip_packets
    );
    done.line.hangup().await;
    println!("hung up");
    if !was_up {
        std::process::exit(1);
    }
    Ok(())
}

/// Magic numbers and CHAP challenges from the OS RNG.
fn os_seed() -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
