use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::track::Target;

fn config(targets: usize) -> TrackConfig {
    TrackConfig {
        targets: (0..targets)
            .map(|i| Target::Icmp(Ipv4Addr::new(192, 0, 2, i as u8 + 1)))
            .collect(),
        ..TrackConfig::default()
    }
}

/// Runs a tracker against targets that answer (in `rtt`) while `alive(target, now)`;
/// answers arrive after the rtt, dead targets time out after the config's timeout.
struct Harness {
    t: Tracker,
    now: Instant,
    start: Instant,
    in_flight: Vec<(Instant, ProbeId, Result<Duration, String>)>,
    rtt: Duration,
    log: Vec<(Duration, TrackEvent)>,
    sent: usize,
    /// The line's received bytes per second (a busy line receives).
    rx_per_sec: u64,
}

impl Harness {
    fn new(config: TrackConfig) -> Harness {
        let now = Instant::now();
        Harness {
            t: Tracker::new(config, now),
            now,
            start: now,
            in_flight: Vec::new(),
            rtt: Duration::from_millis(40),
            log: Vec::new(),
            sent: 0,
            rx_per_sec: 0,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Advances to `until` (from the start), step by step.
    fn run(&mut self, until: Duration, alive: &dyn Fn(usize, Duration) -> bool) {
        let end = self.start + until;
        loop {
            while let Some(p) = self.t.poll_probe() {
                self.sent += 1;
                let timeout = p.timeout;
                if alive(p.target, self.elapsed()) && self.rtt <= timeout {
                    self.in_flight
                        .push((self.now + self.rtt, p.id, Ok(self.rtt)));
                } else {
                    self.in_flight
                        .push((self.now + timeout, p.id, Err("timed out".into())));
                }
            }
            while let Some(e) = self.t.poll_event() {
                self.log.push((self.elapsed(), e));
            }
            let next_answer = self.in_flight.iter().map(|a| a.0).min();
            let next = [next_answer, self.t.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|&n| n <= end) else {
                self.now = end;
                return;
            };
            self.now = next.max(self.now);
            let (due, rest): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|a| a.0 <= self.now);
            self.in_flight = rest;
            let received = (self.elapsed().as_secs_f64() * self.rx_per_sec as f64) as u64;
            self.t.traffic(received);
            for (_, id, outcome) in due {
                self.t.probe_result(id, outcome, self.now);
            }
            self.t.handle_timeout(self.now);
        }
    }

    fn changes(&self) -> Vec<(Duration, Internet)> {
        self.log
            .iter()
            .filter_map(|(at, e)| match e {
                TrackEvent::Changed(i) => Some((*at, i.clone())),
                TrackEvent::Redial => None,
            })
            .collect()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn a_healthy_line_goes_online_at_once_and_then_probes_one_target_per_interval() {
    let mut h = Harness::new(config(3));
    h.run(secs(0.5), &|_, _| true);
    assert_eq!(h.changes(), vec![(secs(0.04), Internet::Online)]);
    assert_eq!(h.sent, 3, "the first round asks every target");
    h.run(secs(100.5), &|_, _| true);
    // One probe at 10, 20, ..., 100 s.
    assert_eq!(h.sent, 3 + 10);
    assert_eq!(h.changes().len(), 1);
    assert_eq!(h.t.latency().srtt(), Some(Duration::from_millis(40)));
}

#[test]
fn an_upstream_outage_is_found_within_one_interval_and_two_timeouts() {
    let mut h = Harness::new(config(3));
    // Everything dies at 12 s, just after the probe at 10 s.
    h.run(secs(40.0), &|_, at| at < secs(12.0));
    let changes = h.changes();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let (at, verdict) = &changes[1];
    assert!(matches!(verdict, Internet::Offline { .. }), "{verdict:?}");
    // The probe at 20 s times out at 21 s, the round of all three at 22 s.
    assert_eq!(*at, secs(22.0));
    if let Internet::Offline { reason } = verdict {
        assert!(reason.contains("ping 192.0.2.1: timed out"), "{reason}");
    }
}

#[test]
fn one_dead_target_of_three_changes_nothing() {
    let mut h = Harness::new(config(3));
    h.run(secs(600.0), &|t, _| t != 0);
    assert_eq!(h.changes(), vec![(secs(0.04), Internet::Online)]);
    assert!(h.t.internet().carries_traffic());
}

#[test]
fn two_dead_of_three_with_a_quorum_of_two_is_an_outage() {
    let mut c = config(3);
    c.quorum = 2;
    let mut h = Harness::new(c);
    h.run(secs(30.0), &|t, _| t == 2);
    assert!(matches!(h.t.internet(), Internet::Offline { .. }));
}

#[test]
fn passive_suspicion_decides_within_one_timeout() {
    let mut h = Harness::new(config(3));
    h.run(secs(12.0), &|_, at| at < secs(11.0));
    assert_eq!(h.t.internet(), &Internet::Online);
    h.t.suspect(h.now);
    h.run(secs(14.0), &|_, at| at < secs(11.0));
    let changes = h.changes();
    let (at, verdict) = changes.last().unwrap();
    assert!(matches!(verdict, Internet::Offline { .. }));
    assert_eq!(
        *at,
        secs(13.0),
        "suspected at 12 s, all targets silent for 1 s"
    );
}

#[test]
fn suspicion_on_a_healthy_line_costs_one_round_and_no_change() {
    let mut h = Harness::new(config(3));
    h.run(secs(5.0), &|_, _| true);
    let before = h.sent;
    h.t.suspect(h.now);
    h.run(secs(6.0), &|_, _| true);
    assert_eq!(h.sent, before + 3);
    assert_eq!(h.changes().len(), 1);
    // Back to one probe per interval.
    h.run(secs(30.0), &|_, _| true);
    assert_eq!(h.sent, before + 3 + 2);
}

#[test]
fn the_line_comes_back_after_up_successes_in_a_row() {
    let mut h = Harness::new(config(3));
    h.run(secs(60.0), &|_, at| !(secs(12.0)..secs(40.0)).contains(&at));
    let changes = h.changes();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(changes[2].1, Internet::Online);
    // Rounds every second while offline: those sent at 40, 41, 42 s answer; online at 42.04.
    assert_eq!(changes[2].0, secs(42.04));
}

#[test]
fn a_long_outage_asks_for_a_redial_once() {
    let mut c = config(2);
    c.redial_after = Some(Duration::from_secs(60));
    let mut h = Harness::new(c);
    h.run(secs(300.0), &|_, at| at < secs(5.0));
    let redials: Vec<_> = h
        .log
        .iter()
        .filter(|(_, e)| *e == TrackEvent::Redial)
        .collect();
    assert_eq!(redials.len(), 1);
    let offline_at = h.changes()[1].0;
    assert_eq!(redials[0].0, offline_at + secs(60.0));
}

#[test]
fn a_slow_line_is_degraded_and_recovers() {
    let mut c = config(1);
    c.max_latency = Some(Duration::from_millis(300));
    let mut h = Harness::new(c);
    h.rtt = Duration::from_millis(600);
    h.run(secs(1.0), &|_, _| true);
    assert!(matches!(h.t.internet(), Internet::Degraded { .. }));
    assert!(!h.t.internet().carries_traffic());
    h.rtt = Duration::from_millis(50);
    h.run(secs(200.0), &|_, _| true);
    assert_eq!(h.t.internet(), &Internet::Online);
}

#[test]
fn probe_bytes_at_defaults_stay_small() {
    // One probe per 10 s while online: 360 an hour.
    let mut h = Harness::new(config(3));
    h.run(secs(3600.0), &|_, _| true);
    assert!(h.sent <= 3 + 360, "{}", h.sent);
}

#[test]
fn tracking_off_does_nothing() {
    let mut c = config(0);
    c.targets.clear();
    let mut t = Tracker::new(c, Instant::now());
    assert_eq!(t.poll_timeout(), None);
    t.handle_timeout(Instant::now());
    t.suspect(Instant::now());
    assert_eq!(t.poll_probe(), None);
    assert_eq!(t.internet(), &Internet::Unknown);
}

#[test]
fn unreported_probes_count_as_lost() {
    let mut t = Tracker::new(config(1), Instant::now());
    let now = Instant::now();
    t.handle_timeout(now);
    assert!(t.poll_probe().is_some());
    let later = now + Duration::from_secs(10);
    t.handle_timeout(later);
    t.handle_timeout(later + Duration::from_secs(5));
    assert_eq!(t.probes().1, 2);
    // A late answer to a decided round is ignored.
    t.probe_result(1, Ok(Duration::from_millis(5)), later);
    assert!(matches!(t.internet(), Internet::Offline { .. }));
}

#[test]
fn repeated_suspicion_on_a_healthy_line_is_rate_limited() {
    let mut h = Harness::new(config(3));
    h.run(secs(5.0), &|_, _| true);
    let before = h.sent;
    for k in 0..20 {
        h.t.suspect(h.now);
        h.run(secs(5.0 + 0.5 * f64::from(k + 1)), &|_, _| true);
    }
    // Ten seconds of suspicion every 0.5 s: a round at 5 and 10 s, plus the probe at 10 s.
    assert!(h.sent <= before + 3 + 3 + 1, "{} probes", h.sent - before);
}

#[test]
fn a_busy_line_whose_probes_queue_behind_its_downloads_stays_online() {
    let mut h = Harness::new(config(3));
    h.run(Duration::from_secs(5), &|_, _| true);
    assert!(matches!(h.changes()[..], [(_, Internet::Online)]));
    // A page load fills the ISP's queue: answers take 3 s, and the line receives meanwhile.
    h.rtt = Duration::from_secs(3);
    h.rx_per_sec = 30_000;
    h.run(Duration::from_secs(60), &|_, _| true);
    assert!(
        matches!(h.changes()[..], [(_, Internet::Online)]),
        "never out: {:?}",
        h.changes()
    );
    // Idle again: answers are quick, the timeout back to the configured one.
    h.rtt = Duration::from_millis(40);
    h.rx_per_sec = 0;
    h.run(Duration::from_secs(90), &|_, _| true);
    assert_eq!(h.t.probe_timeout(), h.t.config().timeout);
}

#[test]
fn an_outage_under_load_is_still_found_once_the_probes_had_time() {
    let mut h = Harness::new(config(3));
    h.rx_per_sec = 30_000;
    h.run(Duration::from_secs(5), &|_, _| true);
    // What the probes ask dies (say, DNS) while other traffic still comes in.
    h.run(Duration::from_secs(60), &|_, at| {
        at < Duration::from_secs(5)
    });
    let out = h
        .changes()
        .into_iter()
        .find(|(_, i)| matches!(i, Internet::Offline { .. }))
        .expect("found under load");
    // 1 + 2 + 4 + 8 s of growing patience, then rounds of 8 s count.
    assert!(
        out.0 > Duration::from_secs(15) && out.0 < Duration::from_secs(45),
        "{out:?}"
    );
}

#[test]
fn an_idle_line_is_judged_as_before() {
    let mut h = Harness::new(config(3));
    h.run(Duration::from_secs(5), &|_, _| true);
    h.run(Duration::from_secs(30), &|_, at| {
        at < Duration::from_secs(5)
    });
    let out = h
        .changes()
        .into_iter()
        .find(|(_, i)| matches!(i, Internet::Offline { .. }))
        .expect("out");
    assert!(out.0 < Duration::from_secs(20), "{out:?}");
}
