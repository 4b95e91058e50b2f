//! `net::conntrack::tally`: a datagram of a ctnetlink dump (the kernel's, but parsed
//! defensively). Never panics; counts only grow.
#![no_main]

use std::collections::BTreeMap;

use eqlplus_dialer::net::conntrack::{Timeouts, tally};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut counts = BTreeMap::new();
    let _ = tally(data, Timeouts::default(), &mut counts);
    let sum = |c: &BTreeMap<u32, eqlplus_dialer::net::conntrack::MarkTally>| -> u64 {
        c.values()
            .map(|t| u64::from(t.open_tcp) + u64::from(t.unanswered))
            .sum()
    };
    let before = sum(&counts);
    let _ = tally(data, Timeouts::default(), &mut counts);
    assert!(sum(&counts) >= before);
});
