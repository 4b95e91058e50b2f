//! Round-trip time, jitter and loss of a stream of probes (or LCP echoes), smoothed as TCP
//! smooths its RTT (RFC 6298: SRTT gains 1/8 of each sample, RTTVAR 1/4 of each deviation),
//! with loss over a sliding window of the last [`LOSS_WINDOW`] probes.

use std::time::Duration;

/// How many of the latest probes the loss figure covers.
pub const LOSS_WINDOW: u32 = 20;

/// Smoothed latency of one path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// One bit per probe, newest in bit 0: 1 = lost.
    lost_bits: u32,
    /// Probes in the window (up to LOSS_WINDOW).
    window: u32,
}

impl Latency {
    pub fn new() -> Latency {
        Latency::default()
    }

    /// An answer came back after `rtt`.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        self.push(false);
    }

    /// A probe went unanswered.
    pub fn lost(&mut self) {
        self.push(true);
    }

    fn push(&mut self, lost: bool) {
        let mask = (1u32 << LOSS_WINDOW) - 1;
        self.lost_bits = ((self.lost_bits << 1) | u32::from(lost)) & mask;
        self.window = (self.window + 1).min(LOSS_WINDOW);
    }

    /// The smoothed round trip, once anything answered.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The smoothed deviation of the round trip (jitter).
    pub fn jitter(&self) -> Option<Duration> {
        self.srtt.map(|_| self.rttvar)
    }

    /// The share of the window's probes that were lost, 0.0–1.0 (0 with no probes yet).
    pub fn loss(&self) -> f64 {
        if self.window == 0 {
            return 0.0;
        }
        f64::from(self.lost_bits.count_ones()) / f64::from(self.window)
    }

    /// Probes in the loss window.
    pub fn samples(&self) -> u32 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_sample_sets_the_estimate_and_later_ones_move_it_by_an_eighth() {
        let mut l = Latency::new();
        assert_eq!(l.srtt(), None);
        assert_eq!(l.jitter(), None);
        l.sample(ms(100));
        assert_eq!(l.srtt(), Some(ms(100)));
        assert_eq!(l.jitter(), Some(ms(50)));
        l.sample(ms(180));
        assert_eq!(l.srtt(), Some(ms(110)));
        // (3 × 50 + 80) / 4
        assert_eq!(l.jitter(), Some(Duration::from_micros(57_500)));
    }

    #[test]
    fn loss_covers_the_last_twenty_probes_only() {
        let mut l = Latency::new();
        assert_eq!(l.loss(), 0.0);
        l.lost();
        l.sample(ms(10));
        assert_eq!(l.loss(), 0.5);
        for _ in 0..LOSS_WINDOW {
            l.sample(ms(10));
        }
        assert_eq!(l.loss(), 0.0);
        assert_eq!(l.samples(), LOSS_WINDOW);
        for _ in 0..5 {
            l.lost();
        }
        assert_eq!(l.loss(), 0.25);
    }
}
