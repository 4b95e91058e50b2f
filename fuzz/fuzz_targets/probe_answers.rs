//! Upstream tracking's parsers of what comes back from the Internet, and of targets as
//! written: `net::icmp::echo_answer` (raw ICMP, router errors quoting our request),
//! `net::probe::answer_rcode` (DNS), `net::probe::http_status_code`, the simulated resolver
//! (`sim::dns::answer`), and `track::Target` from text. Never panics; a target that parses
//! prints back to text that parses to the same target.
#![no_main]

use eqlplus_dialer::net::icmp::echo_answer;
use eqlplus_dialer::net::probe::{answer_rcode, http_status_code};
use eqlplus_dialer::sim::dns::answer;
use eqlplus_dialer::track::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = echo_answer(data);
    let id = data
        .first_chunk::<2>()
        .map_or(0, |b| u16::from_be_bytes(*b));
    let _ = answer_rcode(data, id);
    let _ = http_status_code(data);
    if let Some(reply) = answer(data, std::net::Ipv4Addr::new(192, 0, 2, 1)) {
        // An answer to that query: its id, marked as a response.
        assert!(!matches!(
            answer_rcode(&reply, id),
            Err(eqlplus_dialer::net::probe::DnsError::NotAnAnswer)
        ));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(target) = text.parse::<Target>()
    {
        let again: Target = target.to_string().parse().expect("printed targets parse");
        assert_eq!(again, target);
    }
});
