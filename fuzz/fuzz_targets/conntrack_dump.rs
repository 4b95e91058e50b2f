//! `net::conntrack::entry::read`: a datagram of a ctnetlink dump or of conntrack events (the
//! kernel's, but parsed defensively), then the balancer's table of connections fed with it.
//! Never panics; the table stays bounded.
#![no_main]

use std::time::Instant;

use eqlplus_dialer::balancer::flows::{Flows, MAX_FLOWS};
use eqlplus_dialer::net::conntrack::{Change, Entry, Timeouts, entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut changes = Vec::new();
    let _ = entry::read(data, &mut changes);
    let now = Instant::now();
    let mut flows = Flows::new(0xe100, 0xffff_ff00, Timeouts::default());
    flows.apply(&changes, now);
    let dumped: Vec<Entry> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(e) => Some(e.clone()),
            Change::Destroy(_) => None,
        })
        .collect();
    flows.resync(&dumped, now);
    let _ = flows.tally(now);
    let _ = flows.next_change(now);
    assert!(flows.len() <= MAX_FLOWS);
});
