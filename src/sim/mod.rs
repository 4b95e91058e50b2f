//! Simulated equipment for tests, the demo and trying scripts without hardware: a Hayes-style
//! modem ([`modem::ModemCore`], sans-IO) on the far side of a pty ([`SimModem`]).

pub mod icmp {
    //! The ICMP echo codec lives in [`crate::net::icmp`]; re-exported for the tests and demos.
    pub use crate::net::icmp::*;
}
pub mod dialer;
pub mod dns;
pub mod isp;
pub mod modem;
pub mod netns;
pub mod procstat;
pub mod pty;
pub mod udp_bulk;
pub mod upstream;
pub mod web;
pub mod world;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use modem::{DialAnswer, ModemConfig, ModemCore, ModemOutput, parse_answers};
pub use pty::{MasterRead, PtyMaster};

/// Buffer of the in-memory link between the modem and the remote peer.
const CALL_BUFFER: usize = 64 * 1024;
/// DTE bytes the modem holds for a remote end that is not taking them, at most.
const PEER_BACKLOG: usize = 4096;
/// Bytes moved per read when unpaced: the far end's bursts reach the DTE in few writes.
const UNPACED_CHUNK: usize = 16 * 1024;

/// A connected call: the remote end's side of the line. Dropping `stream` hangs up (the
/// modem says `NO CARRIER`); the stream ends when the modem hangs up.
#[derive(Debug)]
pub struct SimCall {
    pub speed: Option<u32>,
    pub number: String,
    pub stream: DuplexStream,
}

/// A running simulated modem on a pty. Dropping it stops the modem and removes its link.
#[derive(Debug)]
pub struct SimModem {
    tty: PathBuf,
    link: Option<PathBuf>,
    task: JoinHandle<()>,
    drop_call: mpsc::UnboundedSender<()>,
    attempts: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
}

impl SimModem {
    /// Starts a modem on a new pty. Each connected call is delivered on the returned channel;
    /// if the receiver is dropped, calls are refused with `NO CARRIER`.
    pub fn spawn(config: ModemConfig) -> io::Result<(SimModem, mpsc::UnboundedReceiver<SimCall>)> {
        let pty = PtyMaster::open()?;
        let tty = pty.slave_path().to_path_buf();
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (drop_tx, drop_rx) = mpsc::unbounded_channel();
        let attempts = Arc::new(AtomicUsize::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(
            pty,
            ModemCore::new(config),
            calls_tx,
            drop_rx,
            attempts.clone(),
            silent.clone(),
        ));
        Ok((
            SimModem {
                tty,
                link: None,
                task,
                drop_call: drop_tx,
                attempts,
                silent,
            },
            calls_rx,
        ))
    }

    /// Adds a symlink (e.g. `/tmp/ttySIM0`) to the pty, replacing an old link of that name.
    pub fn link(&mut self, path: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(path)?;
        }
        std::os::unix::fs::symlink(&self.tty, path)?;
        self.link = Some(path.to_path_buf());
        Ok(())
    }

    /// The device a dialer opens.
    pub fn tty(&self) -> &Path {
        &self.tty
    }

    /// Drops the call in progress, as if the remote end hung up: the far end's stream ends and
    /// the DTE sees `NO CARRIER` (a pty has no DCD line to drop).
    pub fn drop_call(&self) {
        let _ = self.drop_call.send(());
    }

    /// Silences the call in progress (and later ones) while `on`: the line stays connected,
    /// but no byte gets through in either direction — a far end that died without hanging up,
    /// which only LCP echoes reveal.
    pub fn set_silent(&self, on: bool) {
        self.silent.store(on, Ordering::Relaxed);
    }

    /// How many `ATD`s the modem has answered.
    pub fn dial_attempts(&self) -> usize {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The symlink, if one was made.
    pub fn link_path(&self) -> Option<&Path> {
        self.link.as_deref()
    }
}

impl Drop for SimModem {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// The driver: pty bytes and peer bytes into the core, its outputs out again.
async fn run(
    mut pty: PtyMaster,
    mut core: ModemCore,
    calls: mpsc::UnboundedSender<SimCall>,
    mut drop_calls: mpsc::UnboundedReceiver<()>,
    attempts: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; UNPACED_CHUNK];
    let mut peer_buf = vec![0u8; UNPACED_CHUNK];
    let mut peer: Option<ReadHalf<DuplexStream>> = None;
    let mut peer_wr: Option<WriteHalf<DuplexStream>> = None;
    // Bytes from the DTE not yet taken by the remote end. While it is full the modem
    // stops reading the DTE (as hardware flow control would), but it keeps delivering
    // what the remote end sends: a remote end that stops reading stalls only one
    // direction.
    let mut to_peer: Vec<u8> = Vec::new();
    // Small chunks when paced, so one direction never holds the other up for long.
    let chunk = if core.line_rate().is_some() {
        256
    } else {
        UNPACED_CHUNK
    };
    let mut up = Pacer::new(core.line_rate());
    let mut down = Pacer::new(core.line_rate());
    // Paced chunks wait here until their time, each direction on its own: the loop never
    // sleeps in one direction while the other has bytes to move (an ACK never waits behind a
    // download chunk).
    let mut up_held: VecDeque<(tokio::time::Instant, Vec<u8>)> = VecDeque::new();
    let mut down_held: Option<(tokio::time::Instant, usize)> = None;
    loop {
        while let Some(out) = core.poll_output() {
            match out {
                ModemOutput::ToDte(bytes) => {
                    if let Err(e) = pty.write_all(&bytes).await {
                        tracing::debug!("sim modem: write to DTE: {e}");
                    }
                }
                ModemOutput::ToPeer(bytes) => {
                    if peer_wr.is_some() && !silent.load(Ordering::Relaxed) {
                        up_held.push_back((up.schedule(bytes.len()), bytes));
                    }
                }
                ModemOutput::Connected { speed, number } => {
                    let (ours, theirs) = tokio::io::duplex(CALL_BUFFER);
                    let call = SimCall {
                        speed,
                        number,
                        stream: theirs,
                    };
                    if calls.send(call).is_ok() {
                        let (rd, wr) = tokio::io::split(ours);
                        peer = Some(rd);
                        peer_wr = Some(wr);
                        to_peer.clear();
                        up_held.clear();
                        down_held = None;
                    } else {
                        core.handle_peer_closed();
                    }
                }
                ModemOutput::HungUp => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    up_held.clear();
                    down_held = None;
                }
            }
        }
        // Chunks whose time has come go to the far end.
        let now = tokio::time::Instant::now();
        while up_held.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, bytes)) = up_held.pop_front() {
                to_peer.extend_from_slice(&bytes);
            }
        }
        // A chunk already due goes to the DTE now: through the timer it would wait for the
        // next millisecond tick, which held an unpaced line to 4 KiB a millisecond.
        if down_held.is_some_and(|(at, _)| at <= now) {
            deliver_down(&mut pty, &core, &silent, &peer_buf, &mut down_held).await;
        }
        let up_due = up_held.front().map(|(at, _)| *at);
        let down_due = down_held.map(|(at, _)| at);
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        let held: usize = up_held.iter().map(|(_, b)| b.len()).sum();
        let backlog = to_peer.len() + held;
        let dte_room = backlog < PEER_BACKLOG;
        tokio::select! {
            written = write_peer(&mut peer_wr, &to_peer), if !to_peer.is_empty() => match written {
                Ok(n) if n > 0 => {
                    to_peer.drain(..n);
                }
                _ => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    up_held.clear();
                    down_held = None;
                    core.handle_peer_closed();
                }
            },
            _ = crate::sys::sleep_until_opt(up_due) => {}
            // No more than there is room for: the DTE backlog's bound holds exactly.
            read = pty.read(&mut buf[..chunk.min(PEER_BACKLOG - backlog)]), if dte_room => match read {
                Ok(MasterRead::Data(n)) => core.handle_dte(&buf[..n], Instant::now()),
                Ok(MasterRead::Closed) => {
                    tracing::debug!("sim modem: the DTE closed the port");
                    core.handle_dte_gone();
                }
                Err(e) => {
                    tracing::warn!("sim modem: pty failed: {e}");
                    return;
                }
            },
            read = read_peer(&mut peer, &mut peer_buf[..chunk]), if down_held.is_none() => match read {
                Ok(n) if n > 0 => down_held = Some((down.schedule(n), n)),
                _ => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    up_held.clear();
                    core.handle_peer_closed();
                }
            },
            _ = crate::sys::sleep_until_opt(down_due) => {
                deliver_down(&mut pty, &core, &silent, &peer_buf, &mut down_held).await;
            }
            _ = crate::sys::sleep_until_opt(deadline) => core.handle_timeout(Instant::now()),
            Some(()) = drop_calls.recv() => {
                peer = None;
                peer_wr = None;
                to_peer.clear();
                up_held.clear();
                down_held = None;
                core.handle_peer_closed();
            }
        }
        attempts.store(core.dial_attempts(), Ordering::Relaxed);
    }
}

/// Paces data to a line rate on an absolute schedule: each chunk is due once it would have
/// been transmitted after the one before, so the timer's overshoot on one chunk is made up on
/// the next instead of lost (a restart from "now" after every sleep lost ~1 ms a chunk: 39 %
/// of a 1 Mbit/s line). The schedule restarts only after the line was idle. Bytes count 8
/// bits: a modem's error-correcting link (V.42 LAPM) carries the DTE's bytes without their
/// start and stop bits.
struct Pacer {
    rate: Option<u32>,
    free_at: tokio::time::Instant,
}

/// A line idle this long starts a new schedule (no credit saved up for a burst).
const PACER_IDLE: std::time::Duration = std::time::Duration::from_millis(20);

impl Pacer {
    fn new(rate: Option<u32>) -> Pacer {
        Pacer {
            rate,
            free_at: tokio::time::Instant::now(),
        }
    }

    /// When a chunk of `bytes` handed over now is through (now, unpaced).
    fn schedule(&mut self, bytes: usize) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return now;
        };
        let start = if now.saturating_duration_since(self.free_at) > PACER_IDLE {
            now
        } else {
            self.free_at
        };
        self.free_at =
            start + std::time::Duration::from_secs_f64(bytes as f64 * 8.0 / f64::from(rate));
        self.free_at
    }
}

/// The far end's chunk held in `peer_buf`, due now, to the DTE (while online and not silent).
async fn deliver_down(
    pty: &mut PtyMaster,
    core: &ModemCore,
    silent: &AtomicBool,
    peer_buf: &[u8],
    down_held: &mut Option<(tokio::time::Instant, usize)>,
) {
    if let Some((_, n)) = down_held.take()
        && core.is_online()
        && !silent.load(Ordering::Relaxed)
        && let Err(e) = pty.write_all(&peer_buf[..n]).await
    {
        tracing::debug!("sim modem: write to DTE: {e}");
    }
}

async fn write_peer(peer: &mut Option<WriteHalf<DuplexStream>>, buf: &[u8]) -> io::Result<usize> {
    match peer {
        Some(p) => p.write(buf).await,
        None => std::future::pending().await,
    }
}

async fn read_peer(peer: &mut Option<ReadHalf<DuplexStream>>, buf: &mut [u8]) -> io::Result<usize> {
    match peer {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_keeps_an_absolute_schedule_and_restarts_after_idle() {
        let t0 = tokio::time::Instant::now();
        let mut p = Pacer::new(Some(1_000_000));
        // 250 bytes at 1 Mbit/s: 2 ms each, back to back from the first.
        for k in 1..=10u32 {
            assert_eq!(p.schedule(250), t0 + Duration::from_millis(2) * k);
        }
        // Woken 1 ms late for each chunk: still due on the schedule, not 1 ms later each.
        tokio::time::advance(Duration::from_millis(21)).await;
        assert_eq!(p.schedule(250), t0 + Duration::from_millis(22));
        // Idle for a while: a new schedule from now, no burst saved up.
        tokio::time::advance(Duration::from_millis(100)).await;
        let now = tokio::time::Instant::now();
        assert_eq!(p.schedule(250), now + Duration::from_millis(2));
        assert_eq!(Pacer::new(None).schedule(1 << 20), now, "unpaced");
    }
}
