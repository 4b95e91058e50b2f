//! Simulated equipment for tests, the demo and trying scripts without hardware: a Hayes-style
//! modem ([`modem::ModemCore`], sans-IO) on the far side of a pty ([`SimModem`]), which can
//! also be a cellular one (SIM, registration, signal: [`cellular`]) that wedges, reboots, and
//! vanishes and reappears on another pty as a replugged USB modem does.

pub mod icmp {
    //! The ICMP echo codec lives in [`crate::net::icmp`]; re-exported for the tests and demos.
    pub use crate::net::icmp::*;
}
pub mod cellular;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use cellular::{CmeError, RegPhase, RegStat, RegTimeline, SimCard, SimState};
pub use modem::{DialAnswer, ModemConfig, ModemCore, ModemOutput, ModemStats, parse_answers};
pub use pty::{MasterRead, PtyMaster};

/// Buffer of the in-memory link between the modem and the remote peer.
const CALL_BUFFER: usize = 64 * 1024;
/// DTE bytes the modem holds for a remote end that is not taking them, at most.
const PEER_BACKLOG: usize = 4096;
/// Bytes moved per read when unpaced: the far end's bursts reach the DTE in few writes.
const UNPACED_CHUNK: usize = 16 * 1024;
/// Control requests waiting for the modem's task, at most.
const CONTROL_QUEUE: usize = 16;
/// How long a control request waits for the modem's task to carry it out.
const CONTROL_DEADLINE: Duration = Duration::from_secs(5);

/// What the owner of a [`SimModem`] asks its task to do.
#[derive(Debug)]
enum Control {
    DropCall,
    Wedge(oneshot::Sender<()>),
    /// Close the pty (the port is gone) and power the modem off.
    Vanish(oneshot::Sender<()>),
    /// Power on afresh on this new pty.
    Reappear(PtyMaster, oneshot::Sender<()>),
    Signal {
        rssi: u8,
        rsrp: u8,
        rsrq: u8,
    },
}

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
    /// Whether the modem's port exists (not [vanished](Self::vanish)).
    present: bool,
    task: JoinHandle<()>,
    control: mpsc::Sender<Control>,
    stats: Arc<Mutex<ModemStats>>,
    silent: Arc<AtomicBool>,
}

impl SimModem {
    /// Starts a modem on a new pty. Each connected call is delivered on the returned channel;
    /// if the receiver is dropped, calls are refused with `NO CARRIER`.
    pub fn spawn(config: ModemConfig) -> io::Result<(SimModem, mpsc::UnboundedReceiver<SimCall>)> {
        let pty = PtyMaster::open()?;
        let tty = pty.slave_path().to_path_buf();
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let mut core = ModemCore::new(config);
        // Power-on is now: the registration timeline runs from here, not from the first
        // command (a dialer may open the port much later).
        core.power_on(Instant::now());
        let stats = Arc::new(Mutex::new(core.stats()));
        let silent = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(
            pty,
            core,
            calls_tx,
            control_rx,
            stats.clone(),
            silent.clone(),
        ));
        Ok((
            SimModem {
                tty,
                link: None,
                present: true,
                task,
                control: control_tx,
                stats,
                silent,
            },
            calls_rx,
        ))
    }

    /// Adds a symlink (e.g. `/tmp/ttySIM0` or a `/dev/serial/by-id/usb-…` look-alike) to the
    /// pty, replacing an old link of that name. It follows the modem to each new pty (see
    /// [`reappear`](Self::reappear)); while the modem is [vanished](Self::vanish) it is only
    /// remembered.
    pub fn link(&mut self, path: &Path) -> io::Result<()> {
        if self.present {
            make_link(&self.tty, path)?;
        }
        self.link = Some(path.to_path_buf());
        Ok(())
    }

    /// The device a dialer opens (while vanished: the one it had).
    pub fn tty(&self) -> &Path {
        &self.tty
    }

    /// Whether the modem's port exists (it has not vanished, or has reappeared).
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// Drops the call in progress, as if the remote end hung up: the far end's stream ends and
    /// the DTE sees `NO CARRIER` (a pty has no DCD line to drop).
    pub fn drop_call(&self) {
        if self.control.try_send(Control::DropCall).is_err() {
            tracing::warn!("sim modem: control queue full or modem stopped: call not dropped");
        }
    }

    /// Silences the call in progress (and later ones) while `on`: the line stays connected,
    /// but no byte gets through in either direction — a far end that died without hanging up,
    /// which only LCP echoes reveal.
    pub fn set_silent(&self, on: bool) {
        self.silent.store(on, Ordering::Relaxed);
    }

    /// Wedges the modem now (a call in progress ends without `NO CARRIER`): it answers
    /// nothing, not even an echo, until `AT+CFUN=1,1` or a [vanish](Self::vanish) and
    /// [reappear](Self::reappear). Returns once the modem is wedged.
    pub async fn wedge(&self) -> io::Result<()> {
        self.request(Control::Wedge).await
    }

    /// Sets the signal `AT+CSQ` reports (`rssi` 0-31, 99 unknown) and `AT+CESQ`'s LTE
    /// indexes (`rsrp` 0-97, `rsrq` 0-34, 255 unknown).
    pub fn set_signal(&self, rssi: u8, rsrp: u8, rsrq: u8) {
        if self
            .control
            .try_send(Control::Signal { rssi, rsrp, rsrq })
            .is_err()
        {
            tracing::warn!("sim modem: control queue full or modem stopped: signal not set");
        }
    }

    /// Unplugs the modem: its pty is closed (a dialer that has it open reads end-of-file or
    /// EIO, as from a removed USB tty), its symlink removed, and the modem is off (a call in
    /// progress ends). Returns once all that is done. Nothing to do if already vanished.
    pub async fn vanish(&mut self) -> io::Result<()> {
        if !self.present {
            return Ok(());
        }
        self.request(Control::Vanish).await?;
        self.present = false;
        if let Some(link) = &self.link {
            remove_link(link)?;
        }
        Ok(())
    }

    /// Plugs the modem in again: on a new pty whose path differs from the last one (as a
    /// replugged USB modem may come back as another ttyUSBn), its symlink moved there, and
    /// powered on afresh (SIM PIN needed again, registration starting over, wedge cured).
    /// Returns the new tty. Nothing to do if present.
    pub async fn reappear(&mut self) -> io::Result<PathBuf> {
        if self.present {
            return Ok(self.tty.clone());
        }
        let mut pty = PtyMaster::open()?;
        if pty.slave_path() == self.tty {
            // The old number was free again: take the next one while holding this one.
            let other = PtyMaster::open()?;
            pty = other;
        }
        let tty = pty.slave_path().to_path_buf();
        self.request(|ack| Control::Reappear(pty, ack)).await?;
        self.tty = tty;
        self.present = true;
        if let Some(link) = &self.link {
            make_link(&self.tty, link)?;
        }
        Ok(self.tty.clone())
    }

    /// Counters and states, as the modem last published them (after each event it handled).
    pub fn stats(&self) -> ModemStats {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many `ATD`s the modem has answered.
    pub fn dial_attempts(&self) -> usize {
        self.stats().dial_attempts
    }

    /// How many `AT+CPIN=…` commands the modem has received.
    pub fn cpin_commands(&self) -> usize {
        self.stats().cpin_commands
    }

    /// PIN attempts the SIM has left (0: blocked).
    pub fn pin_tries_left(&self) -> u8 {
        self.stats().pin_tries_left
    }

    /// Reboots by `AT+CFUN=1,1`.
    pub fn resets(&self) -> usize {
        self.stats().resets
    }

    /// Whether the modem is wedged.
    pub fn is_wedged(&self) -> bool {
        self.stats().wedged
    }

    /// The symlink, if one was made.
    pub fn link_path(&self) -> Option<&Path> {
        self.link.as_deref()
    }

    /// Sends a request to the task and waits (bounded) until it was carried out.
    async fn request(&self, make: impl FnOnce(oneshot::Sender<()>) -> Control) -> io::Result<()> {
        let stopped = || io::Error::other("the simulated modem has stopped");
        let (ack, done) = oneshot::channel();
        tokio::time::timeout(CONTROL_DEADLINE, async {
            self.control.send(make(ack)).await.map_err(|_| stopped())?;
            done.await.map_err(|_| stopped())
        })
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the simulated modem did not answer",
            )
        })?
    }
}

impl Drop for SimModem {
    fn drop(&mut self) {
        self.task.abort();
        if self.present
            && let Some(link) = &self.link
        {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Points `path` at `tty`, replacing a symlink already there (never another kind of file).
fn make_link(tty: &Path, path: &Path) -> io::Result<()> {
    remove_link(path)?;
    std::os::unix::fs::symlink(tty, path)
}

fn remove_link(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// The driver: pty bytes and peer bytes into the core, its outputs out again.
async fn run(
    pty: PtyMaster,
    mut core: ModemCore,
    calls: mpsc::UnboundedSender<SimCall>,
    mut control: mpsc::Receiver<Control>,
    stats: Arc<Mutex<ModemStats>>,
    silent: Arc<AtomicBool>,
) {
    // `None` while the modem has vanished.
    let mut pty = Some(pty);
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
                    if let Some(pty) = &pty
                        && let Err(e) = pty.write_all(&bytes).await
                    {
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
            deliver_down(pty.as_ref(), &core, &silent, &peer_buf, &mut down_held).await;
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
            read = read_pty(&mut pty, &mut buf[..chunk.min(PEER_BACKLOG - backlog)]), if dte_room => match read {
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
                deliver_down(pty.as_ref(), &core, &silent, &peer_buf, &mut down_held).await;
            }
            _ = crate::sys::sleep_until_opt(deadline) => core.handle_timeout(Instant::now()),
            Some(request) = control.recv() => match request {
                Control::DropCall => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    up_held.clear();
                    down_held = None;
                    core.handle_peer_closed();
                }
                Control::Signal { rssi, rsrp, rsrq } => core.set_signal(rssi, rsrp, rsrq),
                Control::Wedge(ack) => {
                    core.wedge();
                    publish(&core, &stats);
                    let _ = ack.send(());
                }
                Control::Vanish(ack) => {
                    // Closing the master is what a dialer holding the slave notices.
                    pty = None;
                    core.power_off();
                    publish(&core, &stats);
                    let _ = ack.send(());
                }
                Control::Reappear(new, ack) => {
                    pty = Some(new);
                    core.power_on(Instant::now());
                    publish(&core, &stats);
                    let _ = ack.send(());
                }
            },
        }
        publish(&core, &stats);
    }
}

fn publish(core: &ModemCore, stats: &Mutex<ModemStats>) {
    *stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = core.stats();
}

/// Reads the DTE's bytes; never ready while the modem has no pty.
async fn read_pty(pty: &mut Option<PtyMaster>, buf: &mut [u8]) -> io::Result<MasterRead> {
    match pty {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
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
    pty: Option<&PtyMaster>,
    core: &ModemCore,
    silent: &AtomicBool,
    peer_buf: &[u8],
    down_held: &mut Option<(tokio::time::Instant, usize)>,
) {
    if let Some((_, n)) = down_held.take()
        && core.is_online()
        && !silent.load(Ordering::Relaxed)
        && let Some(pty) = pty
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
