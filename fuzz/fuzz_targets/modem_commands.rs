//! The simulated Hayes modem (`sim::ModemCore`): arbitrary DTE bytes in
//! chunks, interleaved with clock jumps, peer hang-ups, wedges and power cycles;
//! with its high config bit, a cellular modem with a PIN, a registration timeline
//! and a configured wedge. Also the `--answer`, `--sim` and `--registration`
//! parsers, which must print back what they parse.
//!
//! Input: `config byte, then records of (op byte, bytes...)`; the low bits of
//! the op give the chunk length, the high bits what happens after it.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use eqlplus_dialer::sim::{
    DialAnswer, ModemConfig, ModemCore, ModemOutput, RegTimeline, SimCard, parse_answers,
};
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
    let text = String::from_utf8_lossy(rest);
    if let Ok(sim) = text.parse::<SimCard>() {
        assert_eq!(
            sim.to_string().parse::<SimCard>(),
            Ok(sim),
            "--sim roundtrip"
        );
    }
    if let Ok(timeline) = text.parse::<RegTimeline>() {
        assert_eq!(
            timeline.to_string().parse::<RegTimeline>(),
            Ok(timeline),
            "--registration roundtrip"
        );
    }
    let cellular = config & 0x80 != 0;
    let answers = vec![
        ANSWERS[usize::from(config & 0xf) % ANSWERS.len()],
        ANSWERS[usize::from(config >> 3 & 0xf) % ANSWERS.len()],
    ];
    let mut modem = ModemCore::new(ModemConfig {
        answers,
        echo: config & 0x40 != 0,
        signal: config,
        cellular,
        sim: if cellular {
            SimCard::Pin {
                pin: "1234".into(),
                tries: 3,
            }
        } else {
            SimCard::Ready
        },
        registration: if cellular {
            "searching:1s,home:5s,denied:2s,roaming".parse().unwrap()
        } else {
            RegTimeline::default()
        },
        wedge_after: cellular.then_some(usize::from(config & 3)),
        reboot_time: Duration::from_millis(500),
        ready_urc: cellular,
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
            // A port reset: unplugged and plugged in again.
            5 => {
                modem.power_off();
                drain(&mut modem);
                assert!(modem.poll_timeout().is_none() && !modem.in_call());
                modem.power_on(now);
            }
            6 => modem.wedge(),
            _ => {}
        }
        drain(&mut modem);
        assert!(!modem.is_online() || modem.in_call());
        let stats = modem.stats();
        assert!(stats.pin_tries_left <= 3);
        assert!(!stats.wedged || !modem.in_call());
    }
});
