//! A TUN slave in a network namespace: created with tun-rs, configured over rtnetlink, and
//! carrying packets both ways. Root only.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use eqlplus_dialer::net::{Netlink, Slave, TunSlave};
use eqlplus_dialer::sim::icmp::echo_request;
use support::{Netns, require_root};

#[test]
fn tun_slave_is_configured_and_carries_packets() {
    if !require_root("tun_slave_is_configured_and_carries_packets") {
        return;
    }
    let ns = Netns::new("tun").unwrap();
    let local = Ipv4Addr::new(10, 64, 1, 2);
    let peer = Ipv4Addr::new(10, 64, 1, 1);
    let name = ns.name.clone();
    let reply = ns
        .run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let netlink = Netlink::new().unwrap();
                let slave = TunSlave::create(&netlink, "eq-test", local, peer, 1400)
                    .await
                    .expect("create slave");
                let shown =
                    support::sh(&["ip", "-n", &name, "addr", "show", "dev", "eq-test"]).unwrap();
                assert!(
                    shown.contains("inet 10.64.1.2 peer 10.64.1.1/32"),
                    "{shown}"
                );
                assert!(shown.contains("mtu 1400"), "{shown}");
                assert!(shown.contains(",UP"), "{shown}");
                // The far end pings us: the kernel answers through the slave.
                slave
                    .send(&echo_request(peer, local, 77, 1, b"eqlplus"))
                    .await
                    .unwrap();
                // The kernel may also send IPv6 (router solicitations) on a new link: skip it.
                let mut buf = vec![0u8; 2000];
                let reply = tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        let n = slave.recv(&mut buf).await.unwrap();
                        if n >= 28 && buf[0] >> 4 == 4 && buf[9] == 1 {
                            break buf[..n].to_vec();
                        }
                    }
                })
                .await
                .expect("a reply");
                // Dropping the slave removes the device.
                drop(slave);
                let links = support::sh(&["ip", "-n", &name, "link", "show"]).unwrap();
                assert!(!links.contains("eq-test"), "{links}");
                reply
            })
        })
        .unwrap();
    assert_eq!(&reply[12..16], &local.octets(), "from us");
    assert_eq!(&reply[16..20], &peer.octets(), "to the peer");
    assert_eq!(reply[20], 0, "an echo reply");
    assert_eq!(&reply[28..], b"eqlplus");
}
