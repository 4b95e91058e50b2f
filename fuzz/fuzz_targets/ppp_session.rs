//! A whole PPP session (`ppp::Session`) fed by the fuzzer, in the dialer or the
//! answering role, next to a well-behaved partner session of the other role.
//!
//! Input: `config byte, then ops`. Each op byte (high 3 bits: what, low 5
//! bits: a length or flags) either feeds raw line bytes to the session under
//! test, feeds it a correctly framed frame whose content comes from the input
//! (so the fuzzer gets past the FCS), passes frames between the two sessions
//! (dropped or corrupted on request), moves the fake clock to the next
//! deadline or by a step, or sends IP / closes. After every op all polls are
//! drained and checked. At the end the clock runs on with no input: a session
//! with keepalive on must go Down by itself.
#![no_main]

#[path = "common/session_pair.rs"]
mod session_pair;

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use eqlplus_dialer::ppp::hdlc::{ACCM_ALL, Encoder, FLAG};
use eqlplus_dialer::ppp::{AuthMethods, Config, Credentials};
use libfuzzer_sys::fuzz_target;
use session_pair::{Pair, chunk};

/// `PPP_FUZZ_TRACE=1` prints the events of the session under test (to check
/// how deep an input gets, e.g. with `-runs=1 INPUT`).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PPP_FUZZ_TRACE").is_some())
}

/// Two configurations that can talk to each other: (session under test, partner, keepalive).
fn configs(selector: u8) -> (Config, Config, bool) {
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let peer = Ipv4Addr::new(10, 0, 0, 2);
    let dns = [Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 1, 53)];
    let password = if selector & 0x08 == 0 {
        "right"
    } else {
        "wrong"
    };
    let dialer = Config::dialer(Some(Credentials::new("user", password)));
    let mut answer = Config::answer(local, peer, &dns);
    answer.require_auth = match selector >> 1 & 3 {
        0 => AuthMethods::NONE,
        1 => AuthMethods {
            pap: true,
            chap: false,
        },
        2 => AuthMethods {
            pap: false,
            chap: true,
        },
        _ => AuthMethods {
            pap: true,
            chap: true,
        },
    };
    if selector & 0x10 != 0 {
        answer.chap_rechallenge = Some(Duration::from_secs(2));
    }
    let seed = u64::from(selector) << 32 | 0x5eed;
    session_pair::configs(selector, seed, dialer, answer, |cfg| {
        if selector & 0x40 != 0 {
            cfg.lcp.accm = ACCM_ALL;
            cfg.lcp.pfc = false;
            cfg.lcp.acfc = false;
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut input)) = data.split_first() else {
        return;
    };
    let mut pair = Pair::new(configs(selector), trace());
    let fuzz_encoder = Encoder::new(ACCM_ALL);
    let mut wire = Vec::new();

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let arg = op & 0x1f;
        match op >> 5 {
            // Raw line bytes.
            0 | 1 => pair.us.feed(chunk(arg, &mut input), pair.now),
            // A frame with a good FCS around bytes from the input (header included).
            2 => {
                wire.clear();
                fuzz_encoder.encode(&[], chunk(arg, &mut input), &mut wire);
                pair.us.feed(&wire, pair.now);
            }
            op => pair.step(op, arg, &mut input),
        }
    }

    pair.go_quiet();
    pair.us
        .session
        .handle_input(&[FLAG, 0xff, 0x03, 0xc0, 0x21, FLAG], pair.now);
    let _ = pair.us.session.stats();
});
