//! `eqlplus-dialer balance`: the kernel balancer over links that are already up (kernel pppd
//! devices, or any point-to-point or Ethernet uplinks), without dialing anything. Also the
//! way to remove a crashed run's kernel state by hand (`--cleanup`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::balancer::actor::BalancerHandle;
use crate::balancer::kernel::remove_kernel_state;
use crate::balancer::{Balancer, BalancerConfig, Enslave, Policy};
use crate::net::{Netlink, RoutingConfig};

#[derive(Debug, clap::Args)]
pub struct BalanceArgs {
    /// least-loaded, round-robin, weighted or sticky.
    #[arg(long, default_value = "least-loaded")]
    pub policy: Policy,
    /// How long the sticky policy keeps a client→destination pair on one line, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub sticky_hold: u64,
    /// A line: NAME:DEVICE:LOCAL:PEER[:WEIGHT[:DNS[+DNS]]], e.g. ttyS1:ppp0:10.64.1.2:10.64.1.1:3
    #[arg(long = "line", value_name = "SPEC")]
    pub lines: Vec<LineSpec>,
    /// Remove the kernel state a crashed run left behind, and exit.
    #[arg(long, conflicts_with = "lines")]
    pub cleanup: bool,
}

/// A `--line` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSpec(pub Enslave);

impl FromStr for LineSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let usage = || format!("'{s}': expected NAME:DEVICE:LOCAL:PEER[:WEIGHT[:DNS[+DNS]]]");
        if !(4..=6).contains(&parts.len()) || parts[0].is_empty() {
            return Err(usage());
        }
        let addr = |p: &str, what: &str| -> Result<Ipv4Addr, String> {
            p.parse()
                .map_err(|_| format!("'{s}': {what} '{p}' is not an IPv4 address"))
        };
        let weight = match parts.get(4) {
            Some(w) if !w.is_empty() => Some(
                w.parse::<u32>()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or_else(|| format!("'{s}': weight '{w}' is not a positive number"))?,
            ),
            _ => None,
        };
        let dns = match parts.get(5) {
            Some(d) if !d.is_empty() => d
                .split('+')
                .map(|a| addr(a, "DNS server"))
                .collect::<Result<_, _>>()?,
            _ => vec![],
        };
        Ok(LineSpec(Enslave {
            line: parts[0].to_string(),
            device: parts[1].to_string(),
            local: addr(parts[2], "local address")?,
            peer: addr(parts[3], "peer address")?,
            weight,
            speed: None,
            dns,
            tier: 0,
            tracked: false,
        }))
    }
}

pub async fn run(args: BalanceArgs) -> i32 {
    match balance(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("eqlplus-dialer balance: {e}");
            1
        }
    }
}

async fn balance(args: BalanceArgs) -> anyhow::Result<()> {
    let routing = RoutingConfig::default();
    if args.cleanup {
        let netlink = Netlink::new()?;
        remove_kernel_state(&netlink, &routing).await?;
        println!("removed eqlplus kernel state");
        return Ok(());
    }
    let policy = match args.policy {
        Policy::Sticky { .. } => Policy::Sticky {
            hold: Duration::from_secs(args.sticky_hold),
        },
        p => p,
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let balancer = Balancer::start(BalancerConfig { policy, routing }).await?;
    // The daemon's balancer task: one owner of the kernel state, sampling load for least-loaded.
    let (balancer, task) = BalancerHandle::spawn(balancer, None);
    let mut names = Vec::new();
    for LineSpec(spec) in args.lines {
        let name = spec.line.clone();
        if let Err(e) = balancer.enslave(spec, None).await {
            eprintln!("eqlplus-dialer balance: line {name}: {e}");
            stop(&balancer, task).await?;
            anyhow::bail!("not all lines could be enslaved");
        }
        names.push(name);
    }
    // stdout may be a pipe its reader closed: that is no reason to fail.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "balancing {} line(s) with {}: {}",
        names.len(),
        policy.name(),
        names.join(", ")
    );
    let _ = stdout.flush();
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    stop(&balancer, task).await?;
    let _ = writeln!(stdout, "stopped; kernel state removed");
    Ok(())
}

async fn stop(balancer: &BalancerHandle, task: tokio::task::JoinHandle<()>) -> anyhow::Result<()> {
    let result = balancer.shutdown().await;
    let _ = task.await;
    result.map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_specs() {
        let LineSpec(e) = "ttyS1:ppp0:10.64.1.2:10.64.1.1:3:10.64.0.53+10.64.0.54"
            .parse()
            .unwrap();
        assert_eq!(e.line, "ttyS1");
        assert_eq!(e.device, "ppp0");
        assert_eq!(e.weight, Some(3));
        assert_eq!(e.dns.len(), 2);
        let LineSpec(e) = "a:eth1:192.0.2.2:192.0.2.1".parse().unwrap();
        assert_eq!((e.weight, e.dns.len()), (None, 0));
        assert!(
            "a:b:c"
                .parse::<LineSpec>()
                .unwrap_err()
                .contains("expected NAME")
        );
        assert!(
            "a:b:1.2.3.4:x"
                .parse::<LineSpec>()
                .unwrap_err()
                .contains("peer address 'x'")
        );
        assert!("a:b:1.2.3.4:1.2.3.5:0".parse::<LineSpec>().is_err());
    }
}
