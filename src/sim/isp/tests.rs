//! The Multilink ISP against our dialer role, over in-memory calls: members of one bundle
//! come up with one IPCP, carry IP both ways, survive a member hung up mid-transfer, and a
//! caller without Multilink still gets plain PPP. No namespaces: the ISP hands its customers'
//! IP over as channels ([`Routing::Channels`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use crate::ppp::bundle::{self, BundleDriverConfig, BundleLink, Update};
use crate::ppp::driver::{self, DriverConfig};
use crate::ppp::{Config, EndpointDiscriminator, Event, MultilinkConfig, Session};

const ISP: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 1);
const CUSTOMER: Ipv4Addr = Ipv4Addr::new(10, 64, 1, 2);
const WAIT: Duration = Duration::from_secs(10);

fn plain_peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, 1, 100 + i as u8)
}

/// The ISP on `n` lines (no authentication): each line's call channel and hang-up switch,
/// and the customers' IP as the ISP hands it over.
struct Isp {
    lines: Vec<(mpsc::UnboundedSender<SimCall>, HangupSwitch)>,
    customers: mpsc::UnboundedReceiver<CustomerIp>,
    _task: JoinHandle<()>,
}

fn isp(n: usize) -> Isp {
    let config = MultilinkIspConfig {
        local: ISP,
        dns: vec![Ipv4Addr::new(198, 51, 100, 53)],
        users: Vec::new(),
        delay: crate::sim::upstream::Delay::default(),
        bundle_peer: CUSTOMER,
        bundle_device: "isp-mp".into(),
        mrru: 1500,
    };
    let (customers_tx, customers) = mpsc::unbounded_channel();
    let mut lines = Vec::new();
    let mut isp_lines = Vec::new();
    for i in 1..=n {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (switch, hangup) = HangupSwitch::new();
        lines.push((calls_tx, switch));
        isp_lines.push(IspLine {
            calls,
            plain_peer: plain_peer(i),
            plain_device: format!("isp-l{i}"),
            hangup,
        });
    }
    let task = tokio::spawn(serve_multilink_routed(
        config,
        isp_lines,
        Routing::Channels(customers_tx),
    ));
    Isp {
        lines,
        customers,
        _task: task,
    }
}

impl Isp {
    /// A call on line `i` (1-based): the caller's end of it.
    fn call(&self, i: usize) -> tokio::io::DuplexStream {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let call = SimCall {
            speed: Some(512_000),
            number: format!("555{i:04}"),
            stream: theirs,
        };
        self.lines[i - 1].0.send(call).expect("the ISP answers");
        ours
    }

    async fn customer(&mut self) -> CustomerIp {
        tokio::time::timeout(WAIT, self.customers.recv())
            .await
            .expect("a customer link came up at the ISP")
            .expect("the ISP runs")
    }
}

/// Our dialer's bundle and its members' tasks.
struct Dialer {
    bundle: BundleLink,
    members: Vec<JoinHandle<()>>,
}

fn dialer_config() -> Config {
    let mut c = Config::dialer(None);
    c.lcp.multilink = Some(MultilinkConfig {
        mrru: 1500,
        short_seq: false,
        endpoint: Some(EndpointDiscriminator::magic(&[0x0a0b_0c0d])),
    });
    c
}

/// Our dialer role on `lines` of `isp`, all in one bundle.
fn dial_bundle(isp: &Isp, lines: std::ops::RangeInclusive<usize>) -> Dialer {
    let config = dialer_config();
    let (bundle, _task) = bundle::spawn(BundleDriverConfig::new(config.ipcp.clone()));
    let members = lines
        .map(|i| member(&format!("ttyS{i}"), config.clone(), isp.call(i), &bundle))
        .collect();
    Dialer { bundle, members }
}

/// A member line: its session on `line`, handed to `bundle` at BundleMember; the task ends
/// with the link.
fn member(
    name: &str,
    config: Config,
    line: tokio::io::DuplexStream,
    bundle: &BundleLink,
) -> JoinHandle<()> {
    let (closer, member) =
        crate::ppp::bundle::test_support::member(name, config, line, bundle.joins.clone(), 64_000);
    tokio::spawn(async move {
        let _closer = closer;
        let _ = member.await;
    })
}

/// An IPv4 packet of `len` bytes whose payload says `n` (its id field too).
fn packet(n: u16, len: usize) -> Vec<u8> {
    let mut p = vec![(n % 251) as u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[4..6].copy_from_slice(&n.to_be_bytes());
    p
}

fn packet_number(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[4], p[5]])
}

async fn recv(rx: &mut mpsc::Receiver<Vec<u8>>, what: &str) -> Vec<u8> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{what}: the channel closed"))
}

/// Sends packets `numbers` of `len` bytes on `tx` and takes them from `rx`, a window of
/// [`WINDOW`] at a time: all arrive, whole and in order. (Unpaced in-memory lines deliver a
/// burst faster than anyone takes it: a bundle's IP channel drops what overflows, as a full
/// queue does.)
async fn transfer(
    tx: &mpsc::Sender<Vec<u8>>,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    numbers: std::ops::Range<u16>,
    len: usize,
) {
    let numbers: Vec<u16> = numbers.collect();
    for window in numbers.chunks(WINDOW) {
        for &k in window {
            tx.send(packet(k, len))
                .await
                .expect("the sender's channel is open");
        }
        for &k in window {
            assert_eq!(recv(rx, "transfer").await, packet(k, len), "packet {k}");
        }
    }
}

/// Packets in flight in [`transfer`].
const WINDOW: usize = 16;

/// The updates so far, waiting for Up first.
async fn wait_up(updates: &mut mpsc::UnboundedReceiver<Update>) -> Update {
    loop {
        let u = tokio::time::timeout(WAIT, updates.recv())
            .await
            .expect("the bundle came up")
            .expect("the bundle task runs");
        if matches!(u, Update::Up { .. }) {
            return u;
        }
    }
}

/// What a bundle's updates said so far.
#[derive(Debug, Default)]
struct Seen {
    ups: usize,
    downs: usize,
    members: usize,
}

/// Follows `updates` until `done` holds of what they said.
async fn follow(
    updates: &mut mpsc::UnboundedReceiver<Update>,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) {
    while !done(seen) {
        let u = tokio::time::timeout(WAIT, updates.recv())
            .await
            .unwrap_or_else(|_| panic!("not within {WAIT:?}; so far {seen:?}"))
            .expect("the bundle task runs");
        match u {
            Update::Up { .. } => seen.ups += 1,
            Update::Down { .. } => seen.downs += 1,
            Update::Members { names, .. } => seen.members = names.len(),
        }
    }
}

#[tokio::test]
async fn members_of_one_bundle_come_up_with_one_ipcp_and_carry_ip_both_ways() {
    for n in [2, 4] {
        let mut isp = isp(n);
        let mut dialer = dial_bundle(&isp, 1..=n);
        let up = wait_up(&mut dialer.bundle.updates).await;
        assert!(
            matches!(&up, Update::Up { local, peer, dns, .. }
                if *local == CUSTOMER && *peer == ISP && dns.len() == 1),
            "{up:?}"
        );
        // Every member joined before or after IPCP: it stays one bundle, one IP link.
        let mut customer = isp.customer().await;
        assert_eq!(
            (customer.device.as_str(), customer.peer),
            ("isp-mp", CUSTOMER)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(isp.customers.try_recv().is_err(), "a second IP link");
        // Large packets, fragmented over the members, come out whole and in order: upload…
        let outgoing = dialer.bundle.outgoing.clone();
        transfer(&outgoing, &mut customer.from_customer, 0..200, 1400).await;
        // … and download.
        let to_customer = customer.to_customer.clone();
        transfer(&to_customer, &mut dialer.bundle.incoming, 0..200, 1500).await;
        while let Ok(u) = dialer.bundle.updates.try_recv() {
            assert!(
                !matches!(u, Update::Up { .. } | Update::Down { .. }),
                "{u:?}"
            );
        }
        drop(dialer.bundle);
        for m in dialer.members {
            m.abort();
        }
    }
}

#[tokio::test]
async fn a_member_hung_up_mid_transfer_leaves_the_bundle_up() {
    let mut isp = isp(3);
    let mut dialer = dial_bundle(&isp, 1..=3);
    let mut seen = Seen::default();
    follow(&mut dialer.bundle.updates, &mut seen, |s| {
        s.ups == 1 && s.members == 3
    })
    .await;
    let mut customer = isp.customer().await;
    // A download of 400 packets; line 2's call is hung up by the ISP after the first 100.
    let to_customer = customer.to_customer.clone();
    let switch = isp.lines[1].1.clone();
    let sender = tokio::spawn(async move {
        for k in 0..400u16 {
            if k == 100 {
                switch.hang_up();
            }
            if to_customer.send(packet(k, 1200)).await.is_err() {
                return;
            }
            if k % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // What was on the line that went may be lost; nothing else is, and the order holds.
    let mut last = None;
    let mut received = 0;
    while last != Some(399) {
        let got = recv(&mut dialer.bundle.incoming, "download").await;
        let k = packet_number(&got);
        assert_eq!(got, packet(k, 1200));
        assert!(last.is_none_or(|l| k > l), "{k} after {last:?}");
        last = Some(k);
        received += 1;
    }
    sender.await.unwrap();
    assert!(received >= 380, "only {received} of 400 packets arrived");
    follow(&mut dialer.bundle.updates, &mut seen, |s| s.members == 2).await;
    // Over the two members left, both ways, without IPCP again.
    let outgoing = dialer.bundle.outgoing.clone();
    transfer(&outgoing, &mut customer.from_customer, 400..450, 1000).await;
    assert_eq!((seen.ups, seen.downs), (1, 0), "IPCP once, never down");
    assert!(isp.customers.try_recv().is_err(), "a second IP link");
    // The line dials again: its call joins the bundle that carries on.
    dialer.members.push(member(
        "ttyS2",
        dialer_config(),
        isp.call(2),
        &dialer.bundle,
    ));
    follow(&mut dialer.bundle.updates, &mut seen, |s| s.members == 3).await;
    let to_customer = customer.to_customer.clone();
    transfer(&to_customer, &mut dialer.bundle.incoming, 450..500, 1500).await;
    follow(&mut dialer.bundle.updates, &mut seen, |_| true).await;
    assert_eq!((seen.ups, seen.downs), (1, 0), "IPCP once, never down");
}

#[tokio::test]
async fn a_caller_without_multilink_gets_plain_ppp_beside_a_bundle() {
    let mut isp = isp(3);
    // Line 1: plain PPP, as every dialer without Multilink does.
    let driver::Spawned {
        link: mut plain,
        closer: _plain_closer,
        task: _plain_task,
    } = driver::spawn(
        Session::new(Config::dialer(None), Instant::now()),
        isp.call(1),
        Vec::new(),
        DriverConfig::default(),
    );
    let local = loop {
        let event = tokio::time::timeout(WAIT, plain.events.recv())
            .await
            .expect("plain PPP came up")
            .expect("the plain link runs");
        assert!(!matches!(event, Event::BundleMember { .. }), "{event:?}");
        if let Event::Up { local, .. } = event {
            break local;
        }
    };
    assert_eq!(local, plain_peer(1));
    let mut plain_ip = isp.customer().await;
    assert_eq!(
        (plain_ip.device.as_str(), plain_ip.peer),
        ("isp-l1", plain_peer(1))
    );
    // Lines 2 and 3: a bundle, beside it.
    let mut dialer = dial_bundle(&isp, 2..=3);
    wait_up(&mut dialer.bundle.updates).await;
    let mut bundle_ip = isp.customer().await;
    assert_eq!(bundle_ip.device, "isp-mp");
    let plain_out = plain.outgoing.clone();
    let bundle_out = dialer.bundle.outgoing.clone();
    let plain_in = plain_ip.to_customer.clone();
    tokio::join!(
        transfer(&plain_out, &mut plain_ip.from_customer, 0..100, 1500),
        transfer(&bundle_out, &mut bundle_ip.from_customer, 1000..1100, 1400),
        transfer(&plain_in, &mut plain.incoming, 2000..2100, 600),
    );
}

#[tokio::test]
async fn a_bundle_whose_members_all_left_comes_up_again_for_the_next_calls() {
    let mut isp = isp(2);
    let mut first = dial_bundle(&isp, 1..=2);
    wait_up(&mut first.bundle.updates).await;
    let mut customer = isp.customer().await;
    // The ISP hangs up both calls: the bundle ends, its IP channel with it.
    for (_, switch) in &isp.lines {
        switch.hang_up();
    }
    let ended = tokio::time::timeout(WAIT, async {
        while customer.from_customer.recv().await.is_some() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the handed-over channel ends with the bundle"
    );
    for m in first.members {
        tokio::time::timeout(WAIT, m).await.unwrap().unwrap();
    }
    // The same dialer (same endpoint discriminator) calls again: a new IPCP, routed again.
    let mut again = dial_bundle(&isp, 1..=2);
    wait_up(&mut again.bundle.updates).await;
    let mut customer = isp.customer().await;
    assert_eq!(customer.device, "isp-mp");
    let outgoing = again.bundle.outgoing.clone();
    transfer(&outgoing, &mut customer.from_customer, 0..50, 1400).await;
}
