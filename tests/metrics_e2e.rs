//! The metrics endpoint of a real daemon over simulated lines (see tests/support/daemon.rs):
//! scraped while both lines are up, after a `hangup`, across a far-end drop and redial and
//! across a reload that restarts a line. Every scrape is read by a real parser (the
//! `openmetrics-parser` crate; `promtool check metrics` too where it is installed), and no
//! counter ever goes down. Root only: the daemon runs in the world's router namespace, and
//! the scrapes are made from there (127.0.0.1:9460 of that namespace).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use eqlplus_dialer::sim::DialAnswer;
use openmetrics_parser::{OpenMetricsType, OpenMetricsValue};
use support::daemon::{Extra, World, all, sigterm, wait_exit};
use support::require_root;

const LISTEN: &str = "127.0.0.1:9460";
const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One scrape from inside the router namespace: the status line, the headers and the body.
fn scrape(world: &World, accept: &str) -> (String, String) {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {LISTEN}\r\nAccept: {accept}\r\n\r\n");
    let reply = world
        .sim
        .router
        .run(move || {
            let mut s = std::net::TcpStream::connect(LISTEN)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request.as_bytes())?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            std::io::Result::Ok(reply)
        })
        .unwrap()
        .expect("the endpoint answers");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// A scrape's samples by series (`name{label=value,…}`), and which families are counters or
/// histograms; the exposition must parse.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
    /// Series that may only go up.
    monotonic: Vec<String>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.text))
    }
}

fn take(world: &World) -> Scrape {
    let (head, text) = scrape(world, OPENMETRICS);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("the OpenMetrics parser refuses the scrape: {e:?}\n{text}"));
    let mut samples = BTreeMap::new();
    let mut monotonic = Vec::new();
    for (name, family) in &exposition.families {
        let names = family.get_label_names().to_vec();
        let counted = matches!(
            family.family_type,
            OpenMetricsType::Counter | OpenMetricsType::Histogram
        );
        for sample in family.iter_samples() {
            let labels = sample.get_labelset().unwrap();
            let key = |suffix: &str, extra: Option<String>| {
                let mut pairs: Vec<String> = names
                    .iter()
                    .map(|n| format!("{n}={}", labels.get_label_value(n).unwrap_or("")))
                    .chain(extra)
                    .collect();
                pairs.sort();
                format!("{name}{suffix}{{{}}}", pairs.join(","))
            };
            let mut put = |k: String, v: f64| {
                if counted {
                    monotonic.push(k.clone());
                }
                samples.insert(k, v);
            };
            match &sample.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => {
                    put(key("", None), n.as_f64())
                }
                OpenMetricsValue::Counter(c) => put(key("_total", None), c.value.as_f64()),
                OpenMetricsValue::Info => put(key("_info", None), 1.0),
                OpenMetricsValue::Histogram(h) => {
                    put(key("_count", None), h.count.map_or(0.0, |c| c as f64));
                    put(
                        key("_sum", None),
                        h.sum.as_ref().map_or(0.0, |s| s.as_f64()),
                    );
                    for b in &h.buckets {
                        let le = if b.upper_bound.is_infinite() {
                            "+Inf".to_string()
                        } else {
                            b.upper_bound.to_string()
                        };
                        put(key("_bucket", Some(format!("le={le}"))), b.count.as_f64());
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // The Prometheus text format (what curl and promtool get) parses too.
    let (head, plain) = scrape(world, "*/*");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    openmetrics_parser::prometheus::parse_prometheus(&plain).unwrap_or_else(|e| {
        panic!("the Prometheus text parser refuses the scrape: {e:?}\n{plain}")
    });
    if let Some(promtool) = promtool() {
        let (ok, said) = promtool_check(&promtool, &plain);
        assert!(ok, "promtool check metrics: {said}\n{plain}");
    }
    Scrape {
        text,
        samples,
        monotonic,
    }
}

/// Every counter and histogram series of `before` is in `after`, and not lower.
fn only_up(before: &Scrape, after: &Scrape, when: &str) {
    for series in &before.monotonic {
        let (was, is) = (before.get(series), after.get(series));
        assert!(is >= was, "{when}: {series} went down from {was} to {is}");
    }
}

fn promtool() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("EQLPLUS_PROMTOOL") {
        return Some(p.into());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("promtool"))
        .find(|p| p.is_file())
}

fn promtool_check(promtool: &std::path::Path, text: &str) -> (bool, String) {
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn metrics_follow_the_lines_and_counters_only_go_up() {
    if !require_root("metrics_follow_the_lines_and_counters_only_go_up") {
        return;
    }
    match promtool() {
        Some(p) => eprintln!("promtool: {}", p.display()),
        None => eprintln!("promtool not found: the scrapes are read by openmetrics-parser only"),
    }
    // Line 2 is busy at its first dial, then connects.
    let world = World::new(
        &[
            vec![DialAnswer::Connect(Some(57_600))],
            vec![DialAnswer::Busy, DialAnswer::Connect(Some(33_600))],
        ],
        &[("alice", "s3cret")],
    );
    let alice = [Some("alice"), Some("alice")];
    let extra = Extra {
        top: format!("[metrics]\nlisten = \"{LISTEN}\"\n"),
        lines: Vec::new(),
    };
    world.write_config_with(&["5551001", "5551002"], &alice, "alice * s3cret\n", &extra);
    let mut daemon = world.start_daemon();
    world.wait_for("both lines up", Duration::from_secs(30), |s| {
        all(s, "up", 2)
    });
    // Traffic both ways on both lines, and time for an LCP echo round trip (every 0.3 s).
    assert_eq!(world.connect(40), 40);
    std::thread::sleep(Duration::from_millis(1500));

    let up = take(&world);
    eprintln!(
        "---- scrape with both lines up (OpenMetrics) ----\n{}",
        up.text
    );
    eprintln!(
        "---- the same in the Prometheus text format ----\n{}",
        scrape(&world, "*/*").1
    );
    if let Some(p) = promtool() {
        let (ok, said) = promtool_check(&p, &scrape(&world, "*/*").1);
        eprintln!(
            "---- promtool check metrics: exit {} ----\n{said}",
            if ok { "0 (success)" } else { "non-zero" }
        );
    }
    for line in ["ttyS1", "ttyS2"] {
        let l = format!("line={line}");
        assert_eq!(up.get(&format!("eqlplus_line_up{{{l}}}")), 1.0);
        assert_eq!(up.get(&format!("eqlplus_line_state{{{l},state=up}}")), 1.0);
        assert_eq!(
            up.get(&format!("eqlplus_line_state{{{l},state=holdoff}}")),
            0.0
        );
        assert_eq!(up.get(&format!("eqlplus_line_admin_up{{{l}}}")), 1.0);
        for counter in ["rx_bytes", "tx_bytes", "rx_packets", "tx_packets"] {
            assert!(
                up.get(&format!("eqlplus_line_{counter}_total{{{l}}}")) > 0.0,
                "{line} {counter}\n{}",
                up.text
            );
        }
        assert_eq!(
            up.get(&format!("eqlplus_line_dial_duration_seconds_count{{{l}}}")),
            1.0
        );
        assert!(up.get(&format!("eqlplus_line_lcp_echo_rtt_seconds{{{l}}}")) > 0.0);
        assert!(
            up.samples
                .contains_key(&format!("eqlplus_line_internet{{{l},verdict=online}}")),
            "tracked by default\n{}",
            up.text
        );
    }
    assert_eq!(
        up.get("eqlplus_line_connect_speed_bytes_per_second{line=ttyS1}"),
        7_200.0
    );
    assert_eq!(
        up.get("eqlplus_line_connect_speed_bytes_per_second{line=ttyS2}"),
        4_200.0
    );
    assert_eq!(up.get("eqlplus_line_redials_total{line=ttyS1}"), 0.0);
    assert_eq!(up.get("eqlplus_line_redials_total{line=ttyS2}"), 1.0);
    assert_eq!(
        up.get("eqlplus_line_failures_total{kind=transient,line=ttyS2,stage=dial-chat}"),
        1.0,
        "the BUSY"
    );
    assert_eq!(up.get("eqlplus_lines{}"), 2.0);
    assert_eq!(up.get("eqlplus_balancer_info{policy=round-robin}"), 1.0);

    // hangup: line 1 down and held down; its counters stay.
    let out = world.cli(&["hangup", "ttyS1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    world.wait_for("line 1 down", Duration::from_secs(10), |s| {
        s[0] == "down" && s[1] == "up"
    });
    let down = take(&world);
    eprintln!("---- scrape after `hangup ttyS1` ----\n{}", down.text);
    assert_eq!(down.get("eqlplus_line_up{line=ttyS1}"), 0.0);
    assert_eq!(down.get("eqlplus_line_state{line=ttyS1,state=down}"), 1.0);
    assert_eq!(down.get("eqlplus_line_admin_up{line=ttyS1}"), 0.0);
    assert!(
        !down
            .samples
            .contains_key("eqlplus_line_lcp_echo_rtt_seconds{line=ttyS1}")
    );
    assert!(
        !down
            .samples
            .contains_key("eqlplus_line_connect_speed_bytes_per_second{line=ttyS1}")
    );
    assert_eq!(down.get("eqlplus_line_up{line=ttyS2}"), 1.0);
    only_up(&up, &down, "after the hangup");
    // A hangup asked for is not a failure.
    let failures = |s: &Scrape, line: &str| -> f64 {
        s.samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("eqlplus_line_failures_total{") && k.contains(&format!("line={line}"))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(failures(&down, "ttyS1"), failures(&up, "ttyS1"));

    // up again; then the far end drops line 2: it redials, counted, counters carry on.
    assert!(world.cli(&["up", "ttyS1"]).status.success());
    world.wait_for("line 1 back", Duration::from_secs(15), |s| all(s, "up", 2));
    let back = take(&world);
    only_up(&down, &back, "after up");
    assert_eq!(
        back.get("eqlplus_line_dial_duration_seconds_count{line=ttyS1}"),
        2.0
    );
    world.sim.lines[1].modem.drop_call();
    world.wait_for("line 2 leaves", Duration::from_secs(5), |s| s[1] != "up");
    world.wait_for("line 2 redialed", Duration::from_secs(20), |s| {
        all(s, "up", 2)
    });
    assert_eq!(world.connect(20), 20);
    let redialed = take(&world);
    only_up(&back, &redialed, "across the redial");
    assert!(redialed.get("eqlplus_line_redials_total{line=ttyS2}") >= 2.0);
    assert!(
        failures(&redialed, "ttyS2") > failures(&back, "ttyS2"),
        "the dropped call is a failure\n{}",
        redialed.text
    );
    assert!(
        redialed.get("eqlplus_line_rx_bytes_total{line=ttyS2}")
            >= back.get("eqlplus_line_rx_bytes_total{line=ttyS2}"),
    );

    // A reload that restarts line 2 (new phone number) keeps its counters.
    world.write_config_with(&["5551001", "5559999"], &alice, "alice * s3cret\n", &extra);
    let out = world.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("restarted ttyS2"));
    world.wait_for(
        "line 2 back after the reload",
        Duration::from_secs(20),
        |s| all(s, "up", 2),
    );
    let reloaded = take(&world);
    only_up(&redialed, &reloaded, "across the reload's restart");
    assert_eq!(
        reloaded.get("eqlplus_line_dial_duration_seconds_count{line=ttyS2}"),
        redialed.get("eqlplus_line_dial_duration_seconds_count{line=ttyS2}") + 1.0
    );

    // Only /metrics is there.
    let other = world
        .sim
        .router
        .run(|| {
            let mut s = std::net::TcpStream::connect(LISTEN)?;
            s.write_all(b"GET /status HTTP/1.0\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            std::io::Result::Ok(reply)
        })
        .unwrap()
        .unwrap();
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");

    // Stopping the daemon closes the endpoint.
    sigterm(&daemon);
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let refused = world
        .sim
        .router
        .run(|| std::net::TcpStream::connect(LISTEN).is_err())
        .unwrap();
    assert!(refused, "nothing listens once the daemon is gone");
}

/// A port already taken stops the daemon at start, before it dials, saying where.
#[test]
fn a_taken_port_stops_the_daemon_at_start() {
    if !require_root("a_taken_port_stops_the_daemon_at_start") {
        return;
    }
    let world = World::new(&[vec![DialAnswer::Connect(Some(57_600))]], &[]);
    let extra = Extra {
        top: format!("[metrics]\nlisten = \"{LISTEN}\"\n"),
        lines: Vec::new(),
    };
    world.write_config_with(&["5551001"], &[None], "", &extra);
    let (taken_tx, taken) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let holder = world
        .sim
        .router
        .spawn(move || {
            let l = std::net::TcpListener::bind(LISTEN).unwrap();
            taken_tx.send(()).unwrap();
            let _ = release.recv_timeout(Duration::from_secs(60));
            drop(l);
        })
        .unwrap();
    taken.recv().unwrap();
    let mut daemon = world.start_daemon();
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(world.path("daemon.log")).unwrap();
    assert!(
        log.contains("metrics: 127.0.0.1:9460:") && log.contains("in use"),
        "{log}"
    );
    assert_eq!(
        world.sim.lines[0].modem.dial_attempts(),
        0,
        "nothing dialled"
    );
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}
