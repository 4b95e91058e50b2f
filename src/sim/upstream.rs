//! What a simulated ISP does with its customers' traffic beyond its own network: the outages
//! that LCP echoes cannot see (the ISP's PPP server answers, its upstream does not), for
//! upstream tracking's tests and the demo.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::netns::Netns;

/// An ISP's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upstream {
    #[default]
    Working,
    /// Forwarded traffic is dropped silently (PPP and LCP echoes carry on).
    Down,
    /// Only DNS (port 53, UDP and TCP) is dropped.
    DnsDown,
    /// Everything works, but each packet from the customer waits this long at the ISP.
    Slow(Duration),
}

impl FromStr for Upstream {
    type Err = String;
    fn from_str(s: &str) -> Result<Upstream, String> {
        Ok(match s {
            "working" | "up" => Upstream::Working,
            "down" => Upstream::Down,
            "dns-down" => Upstream::DnsDown,
            other => match other.strip_prefix("slow:").and_then(|ms| ms.parse().ok()) {
                Some(ms) => Upstream::Slow(Duration::from_millis(ms)),
                None => {
                    return Err(format!(
                        "unknown upstream '{s}': expected working, down, dns-down or slow:MS"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Working => f.write_str("working"),
            Upstream::Down => f.write_str("down"),
            Upstream::DnsDown => f.write_str("dns-down"),
            Upstream::Slow(d) => write!(f, "slow:{}", d.as_millis()),
        }
    }
}

/// The delay an ISP adds to its customer's packets (see [`Upstream::Slow`]), shared with its
/// PPP answer side.
#[derive(Debug, Clone, Default)]
pub struct Delay(Arc<AtomicU64>);

impl Delay {
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, d: Duration) {
        self.0.store(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Switches the upstream of the ISP in `isp`, whose customer's device there is `device`:
/// an nftables table of its own in the ISP's namespace drops what the mode drops.
pub fn set(isp: &Netns, device: &str, delay: &Delay, mode: Upstream) -> io::Result<()> {
    let drop_rules = match mode {
        Upstream::Down => format!("iifname \"{device}\" drop\n    oifname \"{device}\" drop"),
        Upstream::DnsDown => {
            format!(
                "iifname \"{device}\" udp dport 53 drop\n    iifname \"{device}\" tcp dport 53 drop"
            )
        }
        Upstream::Working | Upstream::Slow(_) => String::new(),
    };
    let script = format!(
        "table ip sim_upstream {{}}\ndelete table ip sim_upstream\ntable ip sim_upstream {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    {drop_rules}\n  }}\n}}\n"
    );
    isp.exec_stdin(&["nft", "-f", "-"], &script)?;
    delay.set(match mode {
        Upstream::Slow(d) => d,
        _ => Duration::ZERO,
    });
    Ok(())
}

/// Most packets held back by a slow upstream; more are dropped, as a real queue would.
const DELAYED_MAX: usize = 1024;

/// Packets from `rx`, each held back by `delay` (read as it arrives) before it is passed on.
pub fn delayed(
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    delay: Delay,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, out) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut held: std::collections::VecDeque<(tokio::time::Instant, Vec<u8>)> =
            std::collections::VecDeque::new();
        let mut closed = false;
        loop {
            let due = held.front().map(|(t, _)| *t);
            if closed && due.is_none() {
                return;
            }
            tokio::select! {
                p = rx.recv(), if !closed && held.len() < DELAYED_MAX => match p {
                    Some(p) => {
                        let d = delay.get();
                        if d.is_zero() && held.is_empty() {
                            if tx.send(p).await.is_err() { return; }
                        } else {
                            held.push_back((tokio::time::Instant::now() + d, p));
                        }
                    }
                    None => closed = true,
                },
                _ = crate::sys::sleep_until_opt(due) => {
                    if let Some((_, p)) = held.pop_front()
                        && tx.send(p).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_and_print_alike() {
        for s in ["working", "down", "dns-down", "slow:250"] {
            assert_eq!(s.parse::<Upstream>().unwrap().to_string(), s);
        }
        assert!("slow:x".parse::<Upstream>().is_err());
        assert!("sideways".parse::<Upstream>().is_err());
    }
}
