//! A `ppp::Session` in `Framing::Unframed` (whole frames, as a Linux PPP channel reads and
//! writes them) fed by the fuzzer, in the dialer or the answering role, next to a
//! well-behaved unframed partner of the other role.
//!
//! Input: `config byte, then ops`. Each op byte (high 3 bits: what, low 5 bits: a length or
//! flags) either feeds `Session::handle_frame_input` a whole frame taken from the input,
//! passes frames between the two sessions (dropped or with a byte flipped on request), moves
//! the fake clock, or sends IP / closes. After every op all polls are drained and checked:
//! frames out are `protocol (2 bytes) + information`, never framed. At the end the clock runs
//! on with no input: with keepalive on the session must go Down by itself.
#![no_main]

#[path = "common/session_pair.rs"]
mod session_pair;

use std::net::Ipv4Addr;

use eqlplus_dialer::ppp::{AuthMethods, Config, Credentials, Framing};
use libfuzzer_sys::fuzz_target;
use session_pair::{Pair, chunk};

/// Two configurations that can talk to each other: (session under test, partner, keepalive).
fn configs(selector: u8) -> (Config, Config, bool) {
    let dialer = Config::dialer(Some(Credentials::new("user", "right")));
    let mut answer = Config::answer(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        &[Ipv4Addr::new(10, 0, 0, 53)],
    );
    answer.require_auth = match selector >> 1 & 3 {
        0 => AuthMethods::NONE,
        1 => AuthMethods {
            pap: true,
            chap: false,
        },
        _ => AuthMethods {
            pap: false,
            chap: true,
        },
    };
    let seed = u64::from(selector) << 32 | 0xf4a3;
    session_pair::configs(selector, seed, dialer, answer, |cfg| {
        cfg.framing = Framing::Unframed;
        if selector & 0x40 != 0 {
            cfg.lcp.multilink = Some(Default::default());
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut input)) = data.split_first() else {
        return;
    };
    let mut pair = Pair::new(configs(selector), false);

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let arg = op & 0x1f;
        match op >> 5 {
            // A whole frame from the input.
            0..=2 => pair.us.feed(chunk(arg, &mut input), pair.now),
            op => pair.step(op, arg, &mut input),
        }
    }

    pair.go_quiet();
    pair.us
        .session
        .handle_frame_input(&[0xc0, 0x21, 1, 1, 0, 4], pair.now);
    let _ = pair.us.session.stats();
});
