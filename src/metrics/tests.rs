//! The exposition read back by real parsers (the `openmetrics-parser` crate always, Debian's
//! `promtool check metrics` where it is installed), and the endpoint over a duplex stream and
//! real sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openmetrics_parser::{
    MetricNumber, OpenMetricsType, OpenMetricsValue, PrometheusType, PrometheusValue,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::link::redial::FailureKind;
use crate::link::status::{FailureStage, LineShared, LineTally};
use crate::track::Internet;

/// Two lines as a scrape sees them: ttyS1 up and busy, ttyS2 waiting to redial.
pub(super) fn two_lines() -> Snapshot {
    let up = LineShared::default();
    up.count_dial(Duration::from_secs(12));
    up.count_failure(FailureStage::DialChat, FailureKind::Transient);
    let down = LineShared::default();
    down.count_failure(FailureStage::DialChat, FailureKind::Transient);
    down.count_failure(FailureStage::DialChat, FailureKind::Transient);
    down.count_failure(FailureStage::Ppp, FailureKind::Auth);
    down.count_dial(Duration::from_secs(25));
    down.count_failure(FailureStage::Up, FailureKind::Transient);
    Snapshot {
        policy: "least-loaded",
        lines: vec![
            LineSample {
                name: "ttyS1".into(),
                device: "/dev/ttyS1".into(),
                slave: "eq-ttyS1".into(),
                tier: 0,
                state: LineState::Up,
                since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
                admin_up: true,
                connect_speed: Some(57_600),
                rx_bytes: 1_234_567,
                tx_bytes: 234_567,
                rx_packets: 1_500,
                tx_packets: 900,
                dropped_packets: 3,
                dropped_bytes: 4_200,
                queued_bytes: 1_400,
                share: 0.75,
                tally: with_redials(up.tally(), 1),
                lcp_rtt: Some(Duration::from_millis(142)),
                track: Some(TrackSnapshot {
                    internet: Internet::Online,
                    rtt: Some(Duration::from_millis(180)),
                    jitter: Some(Duration::from_millis(12)),
                    loss: 0.05,
                    probe_bytes: 7_200,
                    since: Instant::now(),
                }),
                open_connections: Some(3),
                signal_dbm: None,
                resets: [0, 0, 0],
                bundle: None,
                members: None,
            },
            LineSample {
                name: "ttyS2".into(),
                device: "/dev/ttyS2".into(),
                slave: "eq-ttyS2".into(),
                tier: 1,
                state: LineState::Holdoff,
                since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_100),
                admin_up: true,
                connect_speed: None,
                rx_bytes: 99,
                tx_bytes: 98,
                rx_packets: 2,
                tx_packets: 1,
                dropped_packets: 0,
                dropped_bytes: 0,
                queued_bytes: 0,
                share: 0.25,
                tally: with_redials(down.tally(), 4),
                lcp_rtt: None,
                track: None,
                open_connections: None,
                signal_dbm: Some(-96),
                resets: [1, 0, 0],
                bundle: None,
                members: None,
            },
        ],
    }
}

fn with_redials(mut tally: LineTally, redials: u64) -> LineTally {
    tally.redials = redials;
    tally
}

fn om_number(n: &MetricNumber) -> f64 {
    n.as_f64()
}

/// Every sample of an OpenMetrics exposition as `name{label=value,…} → value`, labels sorted
/// (histograms by their buckets, sum and count).
fn om_samples(text: &str) -> HashMap<String, f64> {
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("the OpenMetrics parser refuses the exposition: {e:?}\n{text}"));
    let mut out = HashMap::new();
    for (name, family) in &exposition.families {
        let label_names = family.get_label_names().to_vec();
        for sample in family.iter_samples() {
            let labels = sample.get_labelset().unwrap();
            let mut pairs: Vec<String> = label_names
                .iter()
                .map(|n| format!("{n}={}", labels.get_label_value(n).unwrap_or("")))
                .collect();
            pairs.sort();
            let key = |suffix: &str, extra: Option<String>| {
                let mut p = pairs.clone();
                p.extend(extra);
                p.sort();
                format!("{name}{suffix}{{{}}}", p.join(","))
            };
            match &sample.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => {
                    out.insert(key("", None), om_number(n));
                }
                OpenMetricsValue::Counter(c) => {
                    out.insert(key("_total", None), om_number(&c.value));
                }
                OpenMetricsValue::Info => {
                    out.insert(key("_info", None), 1.0);
                }
                OpenMetricsValue::Histogram(h) => {
                    out.insert(key("_count", None), h.count.map_or(0.0, |c| c as f64));
                    out.insert(key("_sum", None), h.sum.as_ref().map_or(0.0, om_number));
                    for b in &h.buckets {
                        let le = if b.upper_bound.is_infinite() {
                            "+Inf".to_string()
                        } else {
                            b.upper_bound.to_string()
                        };
                        out.insert(
                            key("_bucket", Some(format!("le={le}"))),
                            om_number(&b.count),
                        );
                    }
                }
                other => panic!("unexpected value {other:?}"),
            }
        }
    }
    out
}

#[test]
fn openmetrics_exposition_parses_and_says_what_the_lines_do() {
    let text = render(&two_lines(), Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&text).unwrap();
    let family = |n: &str| {
        exposition
            .families
            .get(n)
            .unwrap_or_else(|| panic!("no family {n}"))
    };
    assert_eq!(
        family("eqlplus_line_rx_bytes").family_type,
        OpenMetricsType::Counter
    );
    assert_eq!(family("eqlplus_line_rx_bytes").unit, "bytes");
    assert_eq!(
        family("eqlplus_line_dial_duration_seconds").family_type,
        OpenMetricsType::Histogram
    );
    assert_eq!(
        family("eqlplus_line_state").family_type,
        OpenMetricsType::Gauge
    );
    assert_eq!(family("eqlplus_build").family_type, OpenMetricsType::Info);
    // Open connections: only for a line whose connections the balancer follows.
    assert!(
        text.contains("eqlplus_line_open_connections{line=\"ttyS1\"} 3\n"),
        "{text}"
    );
    assert!(!text.contains("eqlplus_line_open_connections{line=\"ttyS2\"}"));
    // A cellular line's signal, and the ladder's resets by step.
    assert!(
        text.contains("eqlplus_line_signal_dbm{line=\"ttyS2\"} -96"),
        "{text}"
    );
    assert!(
        text.contains("eqlplus_line_resets_total{line=\"ttyS2\",step=\"modem\"} 1"),
        "{text}"
    );

    let s = om_samples(&text);
    let get = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("no sample {k} in\n{text}"))
    };
    assert_eq!(get("eqlplus_line_rx_bytes_total{line=ttyS1}"), 1_234_567.0);
    assert_eq!(get("eqlplus_line_tx_bytes_total{line=ttyS1}"), 234_567.0);
    assert_eq!(get("eqlplus_line_rx_packets_total{line=ttyS2}"), 2.0);
    assert_eq!(get("eqlplus_line_dropped_packets_total{line=ttyS1}"), 3.0);
    assert_eq!(get("eqlplus_line_dropped_bytes_total{line=ttyS1}"), 4_200.0);
    assert_eq!(get("eqlplus_line_queue_bytes{line=ttyS1}"), 1_400.0);
    assert_eq!(get("eqlplus_line_share_ratio{line=ttyS1}"), 0.75);
    assert_eq!(get("eqlplus_line_up{line=ttyS1}"), 1.0);
    assert_eq!(get("eqlplus_line_up{line=ttyS2}"), 0.0);
    assert_eq!(get("eqlplus_line_state{line=ttyS1,state=up}"), 1.0);
    assert_eq!(get("eqlplus_line_state{line=ttyS1,state=holdoff}"), 0.0);
    assert_eq!(get("eqlplus_line_state{line=ttyS2,state=holdoff}"), 1.0);
    assert_eq!(
        get("eqlplus_line_connect_speed_bytes_per_second{line=ttyS1}"),
        7_200.0
    );
    assert!(!s.contains_key("eqlplus_line_connect_speed_bytes_per_second{line=ttyS2}"));
    assert_eq!(get("eqlplus_line_redials_total{line=ttyS2}"), 4.0);
    assert_eq!(
        get("eqlplus_line_failures_total{kind=transient,line=ttyS2,stage=dial-chat}"),
        2.0
    );
    assert_eq!(
        get("eqlplus_line_failures_total{kind=auth,line=ttyS2,stage=ppp}"),
        1.0
    );
    assert_eq!(
        get("eqlplus_line_failures_total{kind=transient,line=ttyS2,stage=up}"),
        1.0
    );
    assert_eq!(
        get("eqlplus_line_failures_total{kind=other,line=ttyS1,stage=open}"),
        0.0,
        "every stage and kind is there from the start, so rate() sees the first failure"
    );
    assert_eq!(
        get("eqlplus_line_dial_duration_seconds_count{line=ttyS1}"),
        1.0
    );
    assert_eq!(
        get("eqlplus_line_dial_duration_seconds_sum{line=ttyS2}"),
        25.0
    );
    assert_eq!(
        get("eqlplus_line_dial_duration_seconds_bucket{le=10,line=ttyS1}"),
        0.0
    );
    assert_eq!(
        get("eqlplus_line_dial_duration_seconds_bucket{le=15,line=ttyS1}"),
        1.0
    );
    assert_eq!(
        get("eqlplus_line_dial_duration_seconds_bucket{le=+Inf,line=ttyS2}"),
        1.0
    );
    assert!((get("eqlplus_line_lcp_echo_rtt_seconds{line=ttyS1}") - 0.142).abs() < 1e-9);
    assert!(!s.contains_key("eqlplus_line_lcp_echo_rtt_seconds{line=ttyS2}"));
    assert_eq!(get("eqlplus_line_internet{line=ttyS1,verdict=online}"), 1.0);
    assert_eq!(
        get("eqlplus_line_internet{line=ttyS1,verdict=offline}"),
        0.0
    );
    assert!((get("eqlplus_line_track_rtt_seconds{line=ttyS1}") - 0.18).abs() < 1e-9);
    assert_eq!(get("eqlplus_line_track_loss_ratio{line=ttyS1}"), 0.05);
    assert_eq!(
        get("eqlplus_line_info{device=/dev/ttyS2,line=ttyS2,slave=eq-ttyS2,tier=1}"),
        1.0
    );
    assert_eq!(
        get(&format!(
            "eqlplus_build_info{{version={}}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(get("eqlplus_balancer_info{policy=least-loaded}"), 1.0);
    assert_eq!(get("eqlplus_lines{}"), 2.0);
    assert_eq!(
        get("eqlplus_line_state_changed_timestamp_seconds{line=ttyS2}"),
        1_780_000_100.0
    );
}

#[test]
fn prometheus_text_exposition_parses_too() {
    let text = render(&two_lines(), Format::Prometheus);
    assert!(!text.contains("# EOF"), "{text}");
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("the Prometheus text parser refuses it: {e:?}\n{text}"));
    let rx = &exposition.families["eqlplus_line_rx_bytes_total"];
    assert_eq!(rx.family_type, PrometheusType::Counter);
    let ttys1 = rx
        .get_sample_by_label_values(&["ttyS1".to_string()])
        .unwrap();
    match &ttys1.value {
        PrometheusValue::Counter(c) => assert_eq!(c.value.as_f64(), 1_234_567.0),
        v => panic!("{v:?}"),
    }
    assert_eq!(
        exposition.families["eqlplus_line_dial_duration_seconds"].family_type,
        PrometheusType::Histogram
    );
}

/// Families whose series only exist for some lines are left out when none has them.
#[test]
fn an_idle_daemon_exposes_what_it_has() {
    let mut s = two_lines();
    for l in &mut s.lines {
        l.state = LineState::Down;
        l.lcp_rtt = None;
        l.track = None;
        l.connect_speed = None;
    }
    let text = render(&s, Format::OpenMetrics);
    let samples = om_samples(&text);
    assert!(!text.contains("eqlplus_line_lcp_echo_rtt"), "{text}");
    assert!(!text.contains("eqlplus_line_internet"), "{text}");
    assert_eq!(samples["eqlplus_line_state{line=ttyS1,state=down}"], 1.0);
    let none = render(&Snapshot::default(), Format::OpenMetrics);
    openmetrics_parser::openmetrics::parse_openmetrics(&none).unwrap();
    assert!(none.contains("eqlplus_lines 0\n"), "{none}");
}

#[test]
fn states_are_listed_once_each_in_order() {
    for (i, s) in render::STATES.iter().enumerate() {
        assert_eq!(render::state_index(*s), i, "{s:?}");
    }
}

/// `promtool check metrics` (Debian's prometheus package; scripts/test.sh extracts it and
/// sets EQLPLUS_PROMTOOL) on the Prometheus text format. Skipped where there is none.
#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = promtool() else {
        eprintln!("promtool not found (set EQLPLUS_PROMTOOL or install prometheus): skipped");
        return;
    };
    let (ok, out) = promtool_check(&promtool, &render(&two_lines(), Format::Prometheus));
    assert!(ok, "promtool check metrics: {out}");
}

/// Where promtool is: EQLPLUS_PROMTOOL (which must then work), else on the PATH.
pub(crate) fn promtool() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("EQLPLUS_PROMTOOL") {
        let p = std::path::PathBuf::from(p);
        assert!(
            p.is_file(),
            "EQLPLUS_PROMTOOL={} is not a file",
            p.display()
        );
        return Some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("promtool"))
        .find(|p| p.is_file())
}

/// Runs `promtool check metrics` on `text`: whether it passed, and what it said.
pub(crate) fn promtool_check(promtool: &std::path::Path, text: &str) -> (bool, String) {
    use std::io::Write;
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

fn source() -> server::Source {
    Arc::new(two_lines)
}

async fn ask(request: &[u8]) -> String {
    let (mut client, daemon) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move { server::answer(daemon, &source()).await });
    client.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    serving.await.unwrap().unwrap();
    String::from_utf8(reply).unwrap()
}

#[tokio::test]
async fn answers_in_the_format_asked_for() {
    let om = ask(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n").await;
    let (head, body) = om.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    openmetrics_parser::openmetrics::parse_openmetrics(body).unwrap();

    let text = ask(b"GET /metrics HTTP/1.0\r\nAccept: */*\r\n\r\n").await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    openmetrics_parser::prometheus::parse_prometheus(body).unwrap();

    let head = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {head}");
    assert!(
        ask(b"GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404 ")
    );
    assert!(
        ask(b"DELETE /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405 ")
    );
}

#[tokio::test]
async fn an_endless_request_head_is_cut_short() {
    let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 3 * http::MAX_HEAD));
    let (mut client, daemon) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move { server::answer(daemon, &source()).await });
    // The daemon stops reading at the bound, so only part of this is taken.
    let _ = tokio::time::timeout(Duration::from_millis(200), client.write_all(&request)).await;
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    serving.await.unwrap().unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
}

async fn scrape_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) -> String {
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn serves_on_tcp_and_unix_sockets_and_cleans_up() {
    let tcp = MetricsListener::bind(&crate::config::MetricsListen::Tcp(
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = tcp.serve(source());
    let reply = scrape_over(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert!(
        reply.contains("eqlplus_line_rx_bytes_total{line=\"ttyS1\"} 1234567\n"),
        "{reply}"
    );
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/metrics.sock");
    let listen = crate::config::MetricsListen::Unix(path.clone());
    let server = MetricsListener::bind(&listen)
        .await
        .unwrap()
        .serve(source());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    let reply = scrape_over(tokio::net::UnixStream::connect(&path).await.unwrap()).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    // A second endpoint on the same live socket is refused.
    let e = MetricsListener::bind(&listen).await.err().expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains("metrics: unix:"), "{e}");
    drop(server);
    assert!(!path.exists(), "the socket file goes with the server");
    // A stale socket (nobody answers) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    let server = MetricsListener::bind(&listen)
        .await
        .unwrap()
        .serve(source());
    let reply = scrape_over(tokio::net::UnixStream::connect(&path).await.unwrap()).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    drop(server);
    // Anything else at the path is left alone.
    std::fs::write(&path, "not a socket").unwrap();
    let e = MetricsListener::bind(&listen).await.err().expect("refused");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert!(path.is_file());
}

#[tokio::test]
async fn scrapes_beyond_the_limit_are_closed_and_stuck_ones_time_out() {
    let tcp = MetricsListener::bind(&crate::config::MetricsListen::Tcp(
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let addr = tcp.local_addr().unwrap();
    let _server = tcp.serve(source());
    // Clients that connect and say nothing hold every slot…
    let mut idle = Vec::new();
    for _ in 0..server::MAX_SCRAPES {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …so one more is closed unanswered (a reset, or an end without a byte).
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = extra.read_to_end(&mut reply).await;
    assert!(reply.is_empty(), "closed without an answer");
    // Once they go, scrapes are answered again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = scrape_over(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
}

/// The Grafana dashboard under contrib/ is JSON with a Prometheus data source input, and asks
/// only for series this endpoint exposes.
#[test]
fn the_grafana_dashboard_asks_for_what_is_exposed() {
    let text = include_str!("../../contrib/grafana/eqlplus-dialer.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let exposition = render(&two_lines(), Format::Prometheus);
    let exposed: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut asked = 0;
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("eqlplus_"))
            {
                assert!(
                    exposed.contains(name),
                    "panel {}: {name} is not exposed",
                    panel["title"]
                );
                asked += 1;
            }
        }
    }
    assert!(asked > 10);
}

/// A Multilink bundle is listed as a line (it is one balancer entry) with its members'
/// count; each member line names its bundle.
#[test]
fn a_bundle_and_its_members_are_exposed() {
    let mut snapshot = two_lines();
    snapshot.lines[0].bundle = Some("isp".into());
    let mut bundle = snapshot.lines[0].clone();
    bundle.name = "isp".into();
    bundle.bundle = None;
    bundle.members = Some(vec!["ttyS1".into()]);
    snapshot.lines.push(bundle);
    let text = render(&snapshot, Format::OpenMetrics);
    let s = om_samples(&text);
    assert_eq!(
        s.get("eqlplus_bundle_members{line=isp}"),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(
        s.get("eqlplus_line_bundle_member{bundle=isp,line=ttyS1}"),
        Some(&1.0),
        "{text}"
    );
    assert!(!s.contains_key("eqlplus_line_bundle_member{bundle=isp,line=ttyS2}"));
    assert_eq!(s.get("eqlplus_line_up{line=isp}"), Some(&1.0), "{text}");
}
