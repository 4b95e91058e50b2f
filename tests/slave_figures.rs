//! What the daemon reads of a kernel slave whose packets never pass through it (a kernel PPP
//! line's `pppN`): the interface's counters and what waits in (and was dropped by) its
//! queueing discipline, over rtnetlink, from a real kernel. The interface here is a veth
//! behind a slow `tbf`, as a busy serial line would be. Root only.

mod support;

use std::net::{Ipv4Addr, UdpSocket};

use eqlplus_dialer::net::{Netlink, QdiscFigures};
use support::{Netns, require_root, veth};

#[test]
fn counters_and_the_queue_of_a_slow_interface_are_read_over_netlink() {
    if !require_root("counters_and_the_queue_of_a_slow_interface_are_read_over_netlink") {
        return;
    }
    let a = Netns::new("fig-a").unwrap();
    let b = Netns::new("fig-b").unwrap();
    veth(&a, "slow0", &b, "far0").unwrap();
    a.ip(&["addr", "add", "10.77.0.1/24", "dev", "slow0"])
        .unwrap();
    b.ip(&["addr", "add", "10.77.0.2/24", "dev", "far0"])
        .unwrap();
    // 64 kbit/s, room for 20 kB: a burst of 100 kB waits, and part of it is dropped.
    a.exec(&[
        "tc", "qdisc", "add", "dev", "slow0", "root", "tbf", "rate", "64kbit", "burst", "1600",
        "limit", "20000",
    ])
    .unwrap();
    let (before, idle, busy) = a
        .run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let netlink = Netlink::new().unwrap();
                let index = netlink.link_index("slow0").await.unwrap().unwrap();
                let before = netlink.link_counters(index).await.unwrap().unwrap();
                let idle = netlink.queued(index).await.unwrap();
                // The neighbour first (an unresolved one holds packets outside the qdisc).
                let socket = UdpSocket::bind("10.77.0.1:0").unwrap();
                let far = (Ipv4Addr::new(10, 77, 0, 2), 9);
                socket.send_to(&[0u8; 100], far).unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                for _ in 0..100 {
                    // Full: the socket says so or the qdisc drops; either is fine.
                    let _ = socket.send_to(&[7u8; 1000], far);
                }
                let busy = netlink.queued(index).await.unwrap();
                let after = netlink.link_counters(index).await.unwrap().unwrap();
                assert!(
                    after.tx_packets > before.tx_packets && after.tx_bytes > before.tx_bytes,
                    "counters grew: {before:?} → {after:?}"
                );
                // A vanished interface reads as nothing, not as an error.
                assert_eq!(netlink.link_counters(999_999).await.unwrap(), None);
                assert_eq!(
                    netlink.queued(999_999).await.unwrap(),
                    QdiscFigures::default()
                );
                (before, idle, busy)
            })
        })
        .unwrap();
    assert_eq!(
        idle,
        QdiscFigures::default(),
        "nothing waits before: {before:?}"
    );
    assert!(
        busy.backlog_bytes >= 10_000 && busy.backlog_bytes <= 20_000 + 1100,
        "the queue holds what the line has not sent: {busy:?}"
    );
    assert!(
        busy.dropped_packets > 0,
        "over its limit, dropped: {busy:?}"
    );
}
