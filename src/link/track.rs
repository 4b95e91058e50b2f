//! The per-line tracking task: runs a [`Tracker`] while the line is up, sends its probes out of
//! the line (`net::probe`), hands its verdicts to the line's driver and keeps a snapshot of
//! what it knows for `status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::net::probe::{self, Via};
use crate::track::{Internet, TrackConfig, TrackEvent, Tracker};

/// What the tracker knows, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSnapshot {
    pub internet: Internet,
    /// Smoothed probe round trip, its jitter, and the share of recent probes lost.
    pub rtt: Option<Duration>,
    pub jitter: Option<Duration>,
    pub loss: f64,
    /// Bytes the probes cost on the wire since the line came up, and since when.
    pub probe_bytes: u64,
    pub since: Instant,
}

impl TrackSnapshot {
    /// Probe traffic extrapolated to a day, from what it cost so far (at least one minute's
    /// worth is assumed, so the first probes do not read as a flood).
    pub fn probe_bytes_per_day(&self, now: Instant) -> u64 {
        let secs = now
            .saturating_duration_since(self.since)
            .as_secs_f64()
            .max(60.0);
        (self.probe_bytes as f64 * 86_400.0 / secs) as u64
    }
}

/// A running tracking task; dropping it stops the task.
pub struct TrackTask {
    /// Verdicts, in order.
    pub events: mpsc::Receiver<TrackEvent>,
    /// The latest snapshot.
    pub snapshot: watch::Receiver<TrackSnapshot>,
    task: JoinHandle<()>,
}

impl Drop for TrackTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The line's received IP bytes so far.
pub type Received = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Starts tracking the line that `via` names. `suspect` is notified when the line's own
/// connections go unanswered (the balancer's passive evidence); `received` tells how busy the
/// line is.
pub fn spawn(config: TrackConfig, via: Via, suspect: Arc<Notify>, received: Received) -> TrackTask {
    let now = Instant::now();
    let tracker = Tracker::new(config, now);
    let (events_tx, events) = mpsc::channel(8);
    let (snapshot_tx, snapshot) = watch::channel(snapshot_of(&tracker, 0, now));
    let task = tokio::spawn(
        run(tracker, via, suspect, received, events_tx, snapshot_tx, now)
            .instrument(tracing::Span::current()),
    );
    TrackTask {
        events,
        snapshot,
        task,
    }
}

fn snapshot_of(t: &Tracker, probe_bytes: u64, since: Instant) -> TrackSnapshot {
    TrackSnapshot {
        internet: t.internet().clone(),
        rtt: t.latency().srtt(),
        jitter: t.latency().jitter(),
        loss: t.latency().loss(),
        probe_bytes,
        since,
    }
}

async fn run(
    mut tracker: Tracker,
    via: Via,
    suspect: Arc<Notify>,
    received: Received,
    events: mpsc::Sender<TrackEvent>,
    snapshot: watch::Sender<TrackSnapshot>,
    since: Instant,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut probe_bytes = 0u64;
    loop {
        while let Some(request) = tracker.poll_probe() {
            let Some(target) = tracker.config().targets.get(request.target).cloned() else {
                continue;
            };
            let via = via.clone();
            in_flight.push(async move {
                let seq = request.id as u16;
                (
                    request.id,
                    probe::probe(&target, &via, seq, request.timeout).await,
                )
            });
        }
        while let Some(event) = tracker.poll_event() {
            match &event {
                TrackEvent::Changed(Internet::Offline { reason }) => {
                    tracing::warn!("no Internet through this line: {reason}")
                }
                TrackEvent::Changed(Internet::Degraded { reason }) => {
                    tracing::warn!("line degraded: {reason}")
                }
                TrackEvent::Changed(i) => tracing::info!("Internet through this line: {i:?}"),
                TrackEvent::Redial => {
                    tracing::warn!("without the Internet for too long: redialling")
                }
            }
            // The driver reads every verdict; a full channel means it is gone.
            if events.send(event).await.is_err() {
                return;
            }
        }
        snapshot.send_replace(snapshot_of(&tracker, probe_bytes, since));
        let wake = tracker.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            Some((id, probed)) = in_flight.next(), if !in_flight.is_empty() => {
                probe_bytes += probed.bytes;
                if let Err(e) = &probed.result {
                    tracing::debug!(probe = id, "probe failed: {e}");
                }
                tracker.traffic(received());
                tracker.probe_result(id, probed.result.map_err(|e| e.to_string()), Instant::now());
            }
            _ = crate::sys::sleep_until_opt(wake) => {
                tracker.traffic(received());
                tracker.handle_timeout(Instant::now());
            }
            _ = suspect.notified() => {
                tracing::debug!("this line's connections go unanswered: probing now");
                tracker.traffic(received());
                tracker.suspect(Instant::now());
            }
        }
    }
}
