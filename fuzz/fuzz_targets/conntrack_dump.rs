//! `net::conntrack::count_open_tcp`: a datagram of a ctnetlink dump (the kernel's, but
//! parsed defensively). Never panics; counts only grow.
#![no_main]

use std::collections::BTreeMap;

use eqlplus_dialer::net::conntrack::count_open_tcp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut counts = BTreeMap::new();
    let _ = count_open_tcp(data, &mut counts);
    let before: u32 = counts.values().sum();
    let _ = count_open_tcp(data, &mut counts);
    assert!(counts.values().sum::<u32>() >= before);
});
