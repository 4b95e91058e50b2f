//! `net::watch::touches_us`: a netlink notification datagram (nftables or rtnetlink), read
//! by the balancer's change watcher. Never panics, whatever the bytes.
#![no_main]

use eqlplus_dialer::net::watch::touches_us;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = touches_us(data, true, 234);
    let _ = touches_us(data, false, 234);
});
