//! The simulated Hayes modem (`sim::ModemCore`): arbitrary DTE bytes in
//! chunks, interleaved with clock jumps and peer hang-ups.
//!
//! Input: `config byte, then records of (op byte, bytes...)`; the low bits of
//! the op give the chunk length, the high bits what happens after it.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::{DialAnswer, ModemConfig, ModemCore, ModemOutput, parse_answers};
use libfuzzer_sys::fuzz_target;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn drain(modem: &mut ModemCore) {
    while let Some(out) = modem.poll_output() {
        match out {
            ModemOutput::ToDte(b) | ModemOutput::ToPeer(b) => assert!(!b.is_empty()),
            ModemOutput::Connected { .. } => assert!(modem.in_call()),
            ModemOutput::HungUp => {}
        }
    }
}

const ANSWERS: [DialAnswer; 9] = [
    DialAnswer::Connect(Some(57_600)),
    DialAnswer::Connect(None),
    DialAnswer::Busy,
    DialAnswer::NoCarrier,
    DialAnswer::NoDialtone,
    DialAnswer::NoAnswer,
    DialAnswer::Silent,
    DialAnswer::Garbage,
    DialAnswer::Endless,
];

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut rest)) = data.split_first() else {
        return;
    };
    // The `--answers` list parser sees the same bytes as text.
    if let Ok(list) = parse_answers(&String::from_utf8_lossy(rest)) {
        assert!(!list.is_empty());
        let again = list
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_answers(&again), Ok(list), "Display/FromStr roundtrip");
    }
    let answers = vec![
        ANSWERS[usize::from(config & 0xf) % ANSWERS.len()],
        ANSWERS[usize::from(config >> 3 & 0xf) % ANSWERS.len()],
    ];
    let mut modem = ModemCore::new(ModemConfig {
        answers,
        echo: config & 0x40 != 0,
        signal: config,
        ..ModemConfig::default()
    });
    let mut now = epoch();
    while let Some((&op, tail)) = rest.split_first() {
        let len = usize::from(op & 0x1f).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        modem.handle_dte(bytes, now);
        drain(&mut modem);
        match op >> 5 {
            // The clock jumps to the modem's next deadline (dial result, escape).
            0 | 1 => {
                if let Some(t) = modem.poll_timeout() {
                    now = now.max(t);
                    modem.handle_timeout(now);
                }
            }
            // A guard time's worth of silence, or a short gap.
            2 => now += Duration::from_millis(1100),
            3 => now += Duration::from_millis(u64::from(op & 0x1f) * 10),
            4 => modem.handle_peer_closed(),
            5 if op & 1 == 0 => modem.handle_dte_gone(),
            _ => {}
        }
        drain(&mut modem);
        assert!(!(modem.is_online() && !modem.in_call()));
    }
});
