//! Which line gets the next new connection: the balancing policies as pure functions.
//!
//! The kernel does the per-connection choice (nftables `numgen inc mod N map @pick`): it walks a
//! table of N slots, one line per slot, round and round. A policy is therefore a way of filling
//! that slot table from the live lines, their weights, speeds and queue depths. The table is
//! recomputed when lines come and go and, for `least-loaded`, as their queues change.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// Most slots in the pick table: fine enough for weight ratios, small enough to swap quickly.
pub const MAX_SLOTS: usize = 64;

/// A queue this deep, in time at the line's speed, counts as full for `least-loaded`.
const FULL_QUEUE: Duration = Duration::from_millis(500);

/// How new connections are spread over the live lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Each line in turn: eqlplus classic.
    RoundRobin,
    /// In proportion to each line's weight (from config, or its CONNECT speed).
    Weighted,
    /// eql's rule: where a new connection gets the most bandwidth (speed shared by the line's
    /// open connections, less its transmit queue). The default: it measured best
    /// (`bench/balance.sh`).
    #[default]
    LeastLoaded,
    /// Weighted, but a client's connections to one destination stay on one line for `hold`.
    Sticky { hold: Duration },
}

impl Policy {
    /// The name used in configuration files and status reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Weighted => "weighted",
            Policy::LeastLoaded => "least-loaded",
            Policy::Sticky { .. } => "sticky",
        }
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" => Ok(Policy::RoundRobin),
            "weighted" => Ok(Policy::Weighted),
            "least-loaded" => Ok(Policy::LeastLoaded),
            "sticky" => Ok(Policy::Sticky {
                hold: Duration::from_secs(600),
            }),
            other => Err(format!(
                "unknown policy '{other}' (expected round-robin, weighted, least-loaded or sticky)"
            )),
        }
    }
}

/// What the policy knows of one enslaved line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLoad {
    /// Firewall mark of the line's connections (stable while the line is up).
    pub mark: u32,
    /// Configured weight, if any.
    pub weight: Option<u32>,
    /// CONNECT speed in bit/s, if known.
    pub speed: Option<u32>,
    /// Bytes waiting in the line's transmit queue.
    pub queued_bytes: u64,
    /// The line's open TCP connections (conntrack), which share its speed.
    pub open_connections: u32,
    /// Failover tier: lines of a higher tier carry traffic only while no line of a lower one
    /// has the Internet (0 = primary; `backup = true` is 1).
    pub tier: u32,
    /// Whether upstream tracking says the Internet is reachable through the line (or does not
    /// know yet, or the line is not tracked).
    pub internet: bool,
}

impl LineLoad {
    /// The weight used for `weighted`: configured, else the CONNECT speed in bit/s (modem
    /// speeds share large factors, so 57600:28800 stays exactly 2:1), else 1.
    pub fn effective_weight(&self) -> u32 {
        match (self.weight, self.speed) {
            (Some(w), _) => w,
            (None, Some(speed)) => speed.max(1),
            (None, None) => 1,
        }
    }

    /// Seconds the queue needs to drain at the line's speed (56 kbit/s assumed if unknown).
    fn queue_delay(&self) -> Duration {
        let speed = u64::from(self.speed.unwrap_or(56_000).max(1));
        Duration::from_micros(self.queued_bytes.saturating_mul(8_000_000) / speed)
    }
}

/// The lines that carry new connections: those with the Internet, of the lowest tier that has
/// any. If no line has the Internet, the lowest tier's lines all do: tracking may be wrong
/// (its targets blocked), and steering nowhere would make the outage ours.
pub fn in_balance(lines: &[LineLoad]) -> Vec<LineLoad> {
    let with_internet = lines.iter().filter(|l| l.internet);
    let tier = match with_internet.clone().map(|l| l.tier).min() {
        Some(t) => t,
        None => match lines.iter().map(|l| l.tier).min() {
            Some(t) => {
                return lines.iter().filter(|l| l.tier == t).cloned().collect();
            }
            None => return Vec::new(),
        },
    };
    with_internet.filter(|l| l.tier == tier).cloned().collect()
}

/// Fills the pick table: one mark per slot, in the order the kernel walks them, from the lines
/// [`in_balance`]. Empty when there are no lines (the kernel then has nothing to choose from).
pub fn pick_table(policy: Policy, lines: &[LineLoad]) -> Vec<u32> {
    let lines = &in_balance(lines)[..];
    if lines.is_empty() {
        return Vec::new();
    }
    let weights: Vec<u64> = match policy {
        Policy::RoundRobin => vec![1; lines.len()],
        Policy::Weighted | Policy::Sticky { .. } => lines
            .iter()
            .map(|l| u64::from(l.effective_weight().max(1)))
            .collect(),
        Policy::LeastLoaded => least_loaded_weights(lines),
    };
    let counts = apportion(&weights, MAX_SLOTS);
    let marks: Vec<u32> = lines.iter().map(|l| l.mark).collect();
    interleave(&marks, &counts)
}

/// eql's rule: the line where a new connection would get the most bandwidth — its speed
/// shared with the connections already open there, scaled down by how long its transmit queue
/// takes to drain (a full queue counts as no bandwidth unless every queue is full). The open
/// connections are the signal for downloads, whose queue builds at the ISP's end where the
/// router cannot see it; the transmit queue is eql's own signal for uploads.
///
/// The kernel walks the table from wherever its counter stands, so the table cannot say
/// "this line first, then that one": it holds the best line alone, or the lines within 10 %
/// of the best in proportion to their bandwidth (equal lines alternate). A softer spread
/// (every line in proportion) measured worse: it keeps sending a share of new connections to
/// a line already busier than another (`bench/balance.sh`).
fn least_loaded_weights(lines: &[LineLoad]) -> Vec<u64> {
    let all_full = lines.iter().all(|l| l.queue_delay() >= FULL_QUEUE);
    let bandwidth: Vec<u64> = lines
        .iter()
        .map(|l| {
            let delay = l.queue_delay();
            if delay >= FULL_QUEUE && !all_full {
                return 0;
            }
            let speed = u64::from(l.speed.unwrap_or(56_000).max(1));
            // speed / (1 + open) / (1 + delay / 50 ms), in integer arithmetic.
            let delay_ms = delay.as_millis() as u64;
            let sharers = 1 + u64::from(l.open_connections);
            (speed * 50 / (50 + delay_ms) / sharers).max(1)
        })
        .collect();
    let best = bandwidth.iter().copied().max().unwrap_or(0);
    bandwidth
        .into_iter()
        .map(|b| if b * 10 >= best * 9 { b } else { 0 })
        .collect()
}

/// Splits `total` slots in proportion to `weights` (largest remainder), every positive weight
/// getting at least one slot; the exact ratio is kept when the reduced weights fit.
fn apportion(weights: &[u64], total: usize) -> Vec<usize> {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return vec![0; weights.len()];
    }
    let reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let sum: u64 = reduced.iter().sum();
    if sum <= total as u64 {
        return reduced.iter().map(|&w| w as usize).collect();
    }
    let positive = reduced.iter().filter(|&&w| w > 0).count();
    let spare = total.saturating_sub(positive) as u64;
    let mut counts: Vec<usize> = Vec::with_capacity(reduced.len());
    let mut remainders: Vec<(u64, usize)> = Vec::new();
    let mut used = 0;
    for (i, &w) in reduced.iter().enumerate() {
        if w == 0 {
            counts.push(0);
            continue;
        }
        let share = w * spare;
        let whole = (share / sum) as usize;
        counts.push(1 + whole);
        used += 1 + whole;
        remainders.push((share % sum, i));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(total.saturating_sub(used)) {
        counts[i] += 1;
    }
    counts
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Orders the slots by smooth weighted round-robin (as nginx does), so consecutive new
/// connections alternate between lines instead of filling one line's run first.
fn interleave(marks: &[u32], counts: &[usize]) -> Vec<u32> {
    let total: usize = counts.iter().sum();
    let mut current: Vec<i64> = vec![0; counts.len()];
    let mut table = Vec::with_capacity(total);
    for _ in 0..total {
        let mut best = None;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            current[i] += c as i64;
            if best.is_none_or(|b: usize| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        current[b] -= total as i64;
        table.push(marks[b]);
    }
    table
}

/// DNS pinning: each line's peer DNS servers are reached only through that line (ISPs refuse
/// queries from other networks). A server two lines share goes to the first of them.
pub fn dns_pins(lines: &[(u32, Vec<Ipv4Addr>)]) -> Vec<(Ipv4Addr, u32)> {
    let mut pins: Vec<(Ipv4Addr, u32)> = Vec::new();
    for (mark, servers) in lines {
        for &s in servers {
            if !s.is_unspecified() && !pins.iter().any(|(a, _)| *a == s) {
                pins.push((s, *mark));
            }
        }
    }
    pins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(mark: u32, weight: Option<u32>, speed: Option<u32>, queued: u64) -> LineLoad {
        LineLoad {
            mark,
            weight,
            speed,
            queued_bytes: queued,
            open_connections: 0,
            tier: 0,
            internet: true,
        }
    }

    fn share(table: &[u32], mark: u32) -> usize {
        table.iter().filter(|&&m| m == mark).count()
    }

    #[test]
    fn round_robin_is_one_slot_each_in_order() {
        let lines = [
            line(1, None, None, 0),
            line(2, Some(9), None, 0),
            line(3, None, None, 0),
        ];
        assert_eq!(pick_table(Policy::RoundRobin, &lines), vec![1, 2, 3]);
        assert!(pick_table(Policy::RoundRobin, &[]).is_empty());
    }

    #[test]
    fn weighted_keeps_exact_ratios_interleaved() {
        let lines = [line(1, Some(3), None, 0), line(2, Some(1), None, 0)];
        let t = pick_table(Policy::Weighted, &lines);
        assert_eq!(t, vec![1, 1, 2, 1]);
        let lines = [line(1, Some(6), None, 0), line(2, Some(4), None, 0)];
        let t = pick_table(Policy::Weighted, &lines);
        assert_eq!((share(&t, 1), share(&t, 2)), (3, 2));
        assert_eq!(t, vec![1, 2, 1, 2, 1], "interleaved, not 1,1,1,2,2");
    }

    #[test]
    fn weights_default_to_connect_speed() {
        let lines = [
            line(1, None, Some(57_600), 0),
            line(2, None, Some(28_800), 0),
        ];
        let t = pick_table(Policy::Weighted, &lines);
        assert_eq!((share(&t, 1), share(&t, 2)), (2, 1));
        assert_eq!(line(1, None, None, 0).effective_weight(), 1);
        assert_eq!(line(1, None, Some(300), 0).effective_weight(), 300);
        assert_eq!(line(1, None, Some(0), 0).effective_weight(), 1);
    }

    #[test]
    fn large_odd_weights_are_apportioned_within_the_table() {
        let lines = [
            line(1, Some(1000), None, 0),
            line(2, Some(999), None, 0),
            line(3, Some(1), None, 0),
        ];
        let t = pick_table(Policy::Weighted, &lines);
        assert_eq!(t.len(), MAX_SLOTS);
        assert!(share(&t, 3) >= 1, "every live line keeps a slot");
        assert!(share(&t, 1).abs_diff(share(&t, 2)) <= 1);
    }

    #[test]
    fn least_loaded_avoids_a_full_queue() {
        // 64 KiB queued at 56 kbit/s is 9 s of backlog: full.
        let lines = [
            line(1, None, Some(56_000), 65_536),
            line(2, None, Some(56_000), 0),
        ];
        assert_eq!(pick_table(Policy::LeastLoaded, &lines), vec![2]);
        // Both full: spread anyway rather than refuse.
        let lines = [
            line(1, None, Some(56_000), 65_536),
            line(2, None, Some(56_000), 65_536),
        ];
        assert_eq!(pick_table(Policy::LeastLoaded, &lines).len(), 2);
        // 100 ms of backlog: the idle line is the least loaded.
        let lines = [
            line(1, None, Some(56_000), 700),
            line(2, None, Some(56_000), 0),
        ];
        assert_eq!(pick_table(Policy::LeastLoaded, &lines), vec![2]);
        // A few bytes in a queue are noise: both lines stay in the table.
        let lines = [
            line(1, None, Some(56_000), 20),
            line(2, None, Some(56_000), 0),
        ];
        let t = pick_table(Policy::LeastLoaded, &lines);
        assert!(share(&t, 1) >= 1 && share(&t, 2) >= 1, "{t:?}");
    }

    #[test]
    fn least_loaded_steers_towards_lines_with_fewer_open_connections() {
        let busy = LineLoad {
            open_connections: 3,
            ..line(1, None, Some(56_000), 0)
        };
        let idle = line(2, None, Some(56_000), 0);
        // A new connection gets 1/4 of line 1 or all of line 2.
        let t = pick_table(Policy::LeastLoaded, &[busy.clone(), idle.clone()]);
        assert_eq!(t, vec![2]);
        // 3 against 4 open connections: still the less busy line alone.
        let three = LineLoad {
            open_connections: 3,
            ..idle.clone()
        };
        let four = LineLoad {
            open_connections: 4,
            ..line(3, None, Some(56_000), 0)
        };
        assert_eq!(pick_table(Policy::LeastLoaded, &[three, four]), vec![2]);
        // A faster line carries more connections before it looks as loaded: both alternate.
        let fast = LineLoad {
            open_connections: 1,
            ..line(3, None, Some(112_000), 0)
        };
        let t = pick_table(Policy::LeastLoaded, &[fast, idle]);
        assert_eq!((share(&t, 3), share(&t, 2)), (1, 1), "{t:?}");
    }

    #[test]
    fn dns_pins_first_line_wins() {
        let a: Ipv4Addr = "10.64.0.53".parse().unwrap();
        let b: Ipv4Addr = "10.65.0.53".parse().unwrap();
        let pins = dns_pins(&[(1, vec![a, Ipv4Addr::UNSPECIFIED]), (2, vec![a, b])]);
        assert_eq!(pins, vec![(a, 1), (b, 2)]);
    }

    #[test]
    fn policy_names() {
        assert_eq!("round-robin".parse::<Policy>(), Ok(Policy::RoundRobin));
        assert!(matches!(
            "sticky".parse::<Policy>(),
            Ok(Policy::Sticky { .. })
        ));
        assert!(
            "fastest"
                .parse::<Policy>()
                .unwrap_err()
                .contains("unknown policy")
        );
    }

    proptest::proptest! {
        #[test]
        fn tables_are_bounded_and_cover_every_weighted_line(
            weights in proptest::collection::vec(0u32..100_000, 1..12),
            queued in proptest::collection::vec(0u64..1_000_000, 12),
        ) {
            let lines: Vec<LineLoad> = weights.iter().enumerate()
                .map(|(i, &w)| line(i as u32 + 1, Some(w), Some(w.max(1)), queued[i]))
                .collect();
            for policy in [Policy::RoundRobin, Policy::Weighted, Policy::LeastLoaded] {
                let t = pick_table(policy, &lines);
                proptest::prop_assert!(!t.is_empty() && t.len() <= MAX_SLOTS);
                if policy == Policy::Weighted {
                    for l in &lines {
                        proptest::prop_assert!(t.contains(&l.mark));
                    }
                }
            }
        }
    }

    #[test]
    fn lines_without_the_internet_and_backups_carry_nothing_while_a_primary_has_it() {
        let primary = line(1, None, Some(56_000), 0);
        let dead = LineLoad {
            internet: false,
            ..line(2, None, Some(56_000), 0)
        };
        let backup = LineLoad {
            tier: 1,
            ..line(3, None, Some(56_000), 0)
        };
        let all = [primary.clone(), dead.clone(), backup.clone()];
        for policy in [Policy::RoundRobin, Policy::Weighted, Policy::LeastLoaded] {
            assert_eq!(pick_table(policy, &all), vec![1], "{policy:?}");
        }
        // The last primary loses the Internet: the backup takes over.
        let gone = LineLoad {
            internet: false,
            ..primary
        };
        let t = pick_table(
            Policy::RoundRobin,
            &[gone.clone(), dead.clone(), backup.clone()],
        );
        assert_eq!(t, vec![3]);
        // Nothing has the Internet (tracking may be wrong): the primaries carry on.
        let lost = LineLoad {
            internet: false,
            ..backup
        };
        let t = pick_table(Policy::RoundRobin, &[gone, dead, lost]);
        assert_eq!(t, vec![1, 2]);
    }
}
