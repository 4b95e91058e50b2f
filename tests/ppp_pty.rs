//! PPP over a real pty: the simulated modem answers, our chat script dials, our dialer
//! session runs over the `SerialPort` while our answer session plays the ISP on the far
//! end of the call. Addresses are data only: nothing is routed, no TUN exists.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use eqlplus_dialer::chat::{ChatEngine, ChatOptions, Outcome, Script, run_chat};
use eqlplus_dialer::ppp::driver::{self, DriverConfig, Link, Spawned};
use eqlplus_dialer::ppp::{AuthMethods, Config, Credentials, DownReason, Event, Session};
use eqlplus_dialer::serial::{HangupTiming, SerialConfig, SerialPort};
use eqlplus_dialer::sim::isp::{Misbehave, misbehave};
use eqlplus_dialer::sim::{ModemConfig, SimModem, icmp, parse_answers};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::time::timeout;

const ISP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 1);
const CUSTOMER: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);
const DNS1: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 53);
const DNS2: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 54);
const GUARD: Duration = Duration::from_millis(200);
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    None,
    Pap,
    Chap,
}

fn serial_config(lock_dir: &Path) -> SerialConfig {
    SerialConfig {
        lock_dir: Some(lock_dir.to_path_buf()),
        hangup: HangupTiming {
            dtr_drop: Duration::from_millis(500),
            guard: GUARD,
        },
        ..SerialConfig::default()
    }
}

fn isp_config(auth: Auth) -> Config {
    let mut c = Config::answer(ISP, CUSTOMER, &[DNS1, DNS2]);
    c.require_auth = AuthMethods {
        pap: auth == Auth::Pap,
        chap: auth == Auth::Chap,
    };
    c.secrets.insert("alice", "s3cret");
    c
}

/// A call the simulated modem connected (chat done), before PPP.
struct Connected {
    sim: SimModem,
    locks: tempfile::TempDir,
    port: SerialPort,
    call: eqlplus_dialer::sim::SimCall,
    /// What the modem sent after CONNECT: the first PPP bytes.
    leftover: Vec<u8>,
}

/// Dials the simulated modem (CONNECT 57600) with a chat script over a real pty.
async fn connect() -> Connected {
    let locks = tempfile::tempdir().unwrap();
    let (sim, mut calls) = SimModem::spawn(ModemConfig {
        answers: parse_answers("connect:57600").unwrap(),
        guard: GUARD,
        dial_delay: Duration::from_millis(50),
        ..ModemConfig::default()
    })
    .unwrap();
    let port = SerialPort::open(sim.tty(), &serial_config(locks.path())).unwrap();
    let script = Script::parse("'' ATZ OK ATDT123 CONNECT ''", "test").unwrap();
    let mut engine = ChatEngine::new(script, ChatOptions::default(), Instant::now());
    let outcome = timeout(LIMIT, run_chat(&port, &mut engine, &mut |_| {}))
        .await
        .expect("chat in time");
    let Outcome::Success(connected) = outcome else {
        panic!("chat failed: {outcome:?}")
    };
    assert_eq!(connected.speed, Some(57600));
    let call = timeout(LIMIT, calls.recv()).await.unwrap().unwrap();
    Connected {
        sim,
        locks,
        port,
        call,
        leftover: connected.leftover,
    }
}

/// A dialled line with PPP running on both ends.
struct Call {
    _sim: SimModem,
    _locks: tempfile::TempDir,
    dialer: Spawned<SerialPort>,
    isp: Spawned<DuplexStream>,
}

async fn dial(auth: Auth, password: &str) -> Call {
    let Connected {
        sim,
        locks,
        port,
        call,
        leftover,
    } = connect().await;
    assert_eq!(call.number, "123");

    let isp = driver::spawn(
        Session::new(isp_config(auth), Instant::now()),
        call.stream,
        Vec::new(),
        DriverConfig::default(),
    );
    let creds = (auth != Auth::None).then(|| Credentials::new("alice", password));
    let dialer = driver::spawn(
        Session::new(Config::dialer(creds), Instant::now()),
        port,
        leftover,
        DriverConfig::default(),
    );
    Call {
        _sim: sim,
        _locks: locks,
        dialer,
        isp,
    }
}

/// Events up to and including the first Up (or the end, if it never comes up).
async fn until_up(link: &mut Link) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(ev) = timeout(LIMIT, link.events.recv())
        .await
        .expect("event in time")
    {
        let up = matches!(ev, Event::Up { .. });
        seen.push(ev);
        if up {
            break;
        }
    }
    seen
}

/// Every remaining event; the channel closes after the final Down.
async fn until_end(link: &mut Link) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(ev) = timeout(LIMIT, link.events.recv())
        .await
        .expect("event in time")
    {
        seen.push(ev);
    }
    assert!(matches!(seen.last(), Some(Event::Down { .. })), "{seen:?}");
    seen
}

async fn recv_ip(link: &mut Link) -> Vec<u8> {
    timeout(LIMIT, link.incoming.recv())
        .await
        .expect("packet in time")
        .expect("link alive")
}

/// Pings in both directions: each side receives exactly the bytes the other sent.
async fn ping_both_ways(call: &mut Call) {
    for seq in 1..=3u16 {
        // Customer pings the ISP; the ISP answers like a host would.
        let payload: Vec<u8> = (0..56u8).map(|b| b ^ seq as u8).collect();
        let request = icmp::echo_request(CUSTOMER, ISP, 0x4242, seq, &payload);
        call.dialer
            .link
            .outgoing
            .send(request.clone())
            .await
            .unwrap();
        let at_isp = recv_ip(&mut call.isp.link).await;
        assert_eq!(at_isp, request);
        let reply = icmp::reply_to(&at_isp).unwrap();
        call.isp.link.outgoing.send(reply.clone()).await.unwrap();
        let back = recv_ip(&mut call.dialer.link).await;
        assert_eq!(back, reply);
        let echo = icmp::parse(&back).unwrap();
        assert!(echo.reply && echo.src == ISP && echo.dst == CUSTOMER && echo.seq == seq);

        // And the ISP's side pings the customer, with all 256 byte values inside
        // (flags, escapes and control characters through the HDLC framing).
        let payload: Vec<u8> = (0..=255u8).collect();
        let request = icmp::echo_request(DNS1, CUSTOMER, 7, seq, &payload);
        call.isp.link.outgoing.send(request.clone()).await.unwrap();
        assert_eq!(recv_ip(&mut call.dialer.link).await, request);
    }
}

fn expect_up_as_assigned(dialer: &[Event], isp: &[Event]) {
    assert_eq!(
        dialer.last(),
        Some(&Event::Up {
            local: CUSTOMER,
            peer: ISP,
            dns: vec![DNS1, DNS2],
            mru: 1500
        }),
        "{dialer:?}"
    );
    assert!(
        matches!(isp.last(), Some(Event::Up { local, peer, .. }) if *local == ISP && *peer == CUSTOMER),
        "{isp:?}"
    );
}

/// Close from the dialer (LCP Terminate), check both Downs, hang the modem up.
async fn close_and_hang_up(mut call: Call) {
    call.dialer.closer.close();
    let dialer_rest = until_end(&mut call.dialer.link).await;
    let isp_rest = until_end(&mut call.isp.link).await;
    assert!(
        dialer_rest.contains(&Event::NetworkDown {
            reason: "link closing".into()
        }),
        "{dialer_rest:?}"
    );
    assert_eq!(
        down_text(dialer_rest.last()).as_deref(),
        Some("User request")
    );
    assert_eq!(
        down_text(isp_rest.last()).as_deref(),
        Some("peer closed the link: User request")
    );
    let dialer = timeout(LIMIT, call.dialer.task).await.unwrap().unwrap();
    let isp = timeout(LIMIT, call.isp.task).await.unwrap().unwrap();
    assert!(dialer.ended.line_error.is_none() && isp.ended.line_error.is_none());
    let stats = dialer.session.stats();
    assert_eq!((stats.rx_bad_fcs, stats.rx_ip_packets), (0, 6));
    assert_eq!(isp.session.stats().rx_ip_packets, 3);

    // The modem hangs up (+++, ATH0): the ISP's end of the call ends.
    timeout(LIMIT, dialer.line.hangup()).await.unwrap();
    let mut far_end = isp.line;
    let mut rest = Vec::new();
    timeout(LIMIT, far_end.read_to_end(&mut rest))
        .await
        .expect("far end sees the hangup")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pap_dial_up_ping_both_ways_close_and_hang_up() {
    let mut call = dial(Auth::Pap, "s3cret").await;
    let dialer = until_up(&mut call.dialer.link).await;
    let isp = until_up(&mut call.isp.link).await;
    expect_up_as_assigned(&dialer, &isp);
    assert!(
        isp.contains(&Event::Authenticated {
            peer_name: Some("alice".into())
        }),
        "{isp:?}"
    );
    ping_both_ways(&mut call).await;
    close_and_hang_up(call).await;
}

#[tokio::test]
async fn chap_dial_up_ping_both_ways_close_and_hang_up() {
    let mut call = dial(Auth::Chap, "s3cret").await;
    let dialer = until_up(&mut call.dialer.link).await;
    let isp = until_up(&mut call.isp.link).await;
    expect_up_as_assigned(&dialer, &isp);
    assert!(dialer.contains(&Event::Authenticated { peer_name: None }));
    ping_both_ways(&mut call).await;
    close_and_hang_up(call).await;
}

#[tokio::test]
async fn no_auth_dial_up() {
    let mut call = dial(Auth::None, "").await;
    let dialer = until_up(&mut call.dialer.link).await;
    let isp = until_up(&mut call.isp.link).await;
    expect_up_as_assigned(&dialer, &isp);
    ping_both_ways(&mut call).await;
    close_and_hang_up(call).await;
}

async fn wrong_password_fails(auth: Auth, expected: &str) {
    let mut call = dial(auth, "wrong").await;
    let dialer = until_end(&mut call.dialer.link).await;
    let isp = until_end(&mut call.isp.link).await;
    let failed = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::AuthFailed { reason } => Some(reason.clone()),
            _ => None,
        })
    };
    let reason = failed(&dialer).unwrap_or_else(|| panic!("no AuthFailed: {dialer:?}"));
    assert!(reason.contains(expected), "{reason}");
    assert!(failed(&isp).is_some(), "{isp:?}");
    for events in [&dialer, &isp] {
        assert!(!events.iter().any(|e| matches!(e, Event::Up { .. })));
    }
    let dialer = timeout(LIMIT, call.dialer.task).await.unwrap().unwrap();
    assert!(dialer.ended.line_error.is_none());
    timeout(LIMIT, dialer.line.hangup()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chap_wrong_password_reports_auth_failed() {
    wrong_password_fails(Auth::Chap, "CHAP").await;
}

#[tokio::test]
async fn pap_wrong_password_reports_auth_failed() {
    wrong_password_fails(Auth::Pap, "PAP").await;
}

/// The ISP vanishes mid-call (the modem says NO CARRIER into the data stream):
/// the dialer's LCP echo notices within the keepalive bound.
#[tokio::test]
async fn vanished_peer_is_detected_by_lcp_echo() {
    let mut call = dial(Auth::None, "").await;
    until_up(&mut call.dialer.link).await;
    until_up(&mut call.isp.link).await;
    call.isp.task.abort();
    let started = Instant::now();
    let rest = until_end(&mut call.dialer.link).await;
    assert_eq!(
        rest.last(),
        Some(&Event::Down {
            reason: DownReason::EchoTimeout { requests: 3 }
        })
    );
    assert_eq!(
        down_text(rest.last()).as_deref(),
        Some("link dead: no reply to 3 LCP Echo-Requests")
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let dialer = timeout(LIMIT, call.dialer.task).await.unwrap().unwrap();
    timeout(LIMIT, dialer.line.hangup()).await.unwrap();
}

// ----- hostile ISPs from the simulator (sim::isp::Misbehave) -----

/// A dialled line whose far end plays `mode`; the dialer runs `dialer`.
struct HostileCall {
    _sim: SimModem,
    _locks: tempfile::TempDir,
    dialer: Spawned<SerialPort>,
    far_end: tokio::task::JoinHandle<()>,
}

async fn dial_hostile(mode: Misbehave, dialer: Config) -> HostileCall {
    let Connected {
        sim,
        locks,
        port,
        call,
        leftover,
    } = connect().await;
    let far_end = tokio::spawn(misbehave(call.stream, mode, isp_config(Auth::None)));
    let dialer = driver::spawn(
        Session::new(dialer, Instant::now()),
        port,
        leftover,
        DriverConfig::default(),
    );
    HostileCall {
        _sim: sim,
        _locks: locks,
        dialer,
        far_end,
    }
}

/// Runs the hostile call to its end; the dialer's Down reason, the time it took, the session.
async fn hostile_end(mut call: HostileCall) -> (String, Duration, Session, Vec<Event>) {
    let started = Instant::now();
    let mut events = Vec::new();
    while let Some(ev) = timeout(Duration::from_secs(40), call.dialer.link.events.recv())
        .await
        .expect("the dialer ends by itself")
    {
        events.push(ev);
    }
    let took = started.elapsed();
    let Some(Event::Down { reason }) = events.last().cloned() else {
        panic!("no Down: {events:?}")
    };
    let finished = timeout(LIMIT, call.dialer.task).await.unwrap().unwrap();
    timeout(LIMIT, finished.line.hangup()).await.unwrap();
    call.far_end.abort();
    (reason.to_string(), took, finished.session, events)
}

/// The reason of a Down event, as people read it.
fn down_text(event: Option<&Event>) -> Option<String> {
    match event {
        Some(Event::Down { reason }) => Some(reason.to_string()),
        _ => None,
    }
}

/// ITEM 6: an ISP that acknowledges our LCP request but never sends its own; the
/// establishment deadline ends it, naming the phase.
#[tokio::test]
async fn isp_ack_no_request_ends_at_the_ppp_timeout() {
    let mut cfg = Config::dialer(None);
    cfg.establish_timeout = Some(Duration::from_secs(3));
    let call = dial_hostile(Misbehave::AckNoRequest, cfg).await;
    let (reason, took, _, _) = hostile_end(call).await;
    assert_eq!(
        reason,
        "PPP not up after 3 s (stuck in LCP: peer acknowledged our options but never sent its own)"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// ITEM 6: an LCP Configure-Request storm is bounded by the automaton.
#[tokio::test]
async fn isp_lcp_storm_is_bounded() {
    let call = dial_hostile(Misbehave::LcpStorm, Config::dialer(None)).await;
    let (reason, took, session, _) = hostile_end(call).await;
    assert_eq!(
        reason,
        "LCP negotiation failed: peer sent 31 Configure-Requests without agreement"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(session.stats().tx_frames <= 40, "{:?}", session.stats());
}

/// ITEM 4: the ISP floods Echo-Requests and unknown protocols and stops reading: our
/// replies are bounded and the line ends once it took nothing for 3 s.
#[tokio::test]
async fn isp_echo_flood_while_not_reading_ends_the_link() {
    let call = dial_hostile(Misbehave::EchoFlood, Config::dialer(None)).await;
    let (reason, took, session, events) = hostile_end(call).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Up { .. })),
        "{events:?}"
    );
    assert!(
        reason.starts_with("peer stopped reading for 3 s"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        session.stats().tx_control_dropped > 0,
        "{:?}",
        session.stats()
    );
}

/// An ISP that freezes (neither reads nor writes): the keepalive notices.
#[tokio::test]
async fn isp_no_read_is_detected() {
    let call = dial_hostile(Misbehave::NoRead, Config::dialer(None)).await;
    let (reason, took, _, events) = hostile_end(call).await;
    assert!(events.iter().any(|e| matches!(e, Event::Up { .. })));
    assert!(
        reason == "link dead: no reply to 3 LCP Echo-Requests"
            || reason.starts_with("peer stopped reading"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// ITEM 10: an ISP that assigns us a loopback address is refused.
#[tokio::test]
async fn isp_bad_address_is_refused() {
    let call = dial_hostile(
        Misbehave::Assign(Ipv4Addr::new(127, 0, 0, 2)),
        Config::dialer(None),
    )
    .await;
    let (reason, took, _, events) = hostile_end(call).await;
    assert_eq!(reason, "peer assigned us 127.0.0.2 (loopback); refusing");
    assert!(!events.iter().any(|e| matches!(e, Event::Up { .. })));
    assert!(took < Duration::from_secs(10), "{took:?}");
}
