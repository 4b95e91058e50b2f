//! Simulated equipment for tests, the demo and trying scripts without hardware: a Hayes-style
//! modem ([`modem::ModemCore`], sans-IO) on the far side of a pty ([`SimModem`]).

pub mod icmp {
    //! The ICMP echo codec lives in [`crate::net::icmp`]; re-exported for the tests and demos.
    pub use crate::net::icmp::*;
}
pub mod dns;
pub mod isp;
pub mod modem;
pub mod netns;
pub mod pty;
pub mod upstream;
pub mod web;
pub mod world;

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
    let mut buf = vec![0u8; 4096];
    let mut peer_buf = vec![0u8; 4096];
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
        4096
    };
    let mut up = Pacer::new(core.line_rate());
    let mut down = Pacer::new(core.line_rate());
    loop {
        while let Some(out) = core.poll_output() {
            match out {
                ModemOutput::ToDte(bytes) => {
                    if let Err(e) = pty.write_all(&bytes).await {
                        tracing::debug!("sim modem: write to DTE: {e}");
                    }
                }
                ModemOutput::ToPeer(bytes) => {
                    up.pace(bytes.len()).await;
                    if peer_wr.is_some() && !silent.load(Ordering::Relaxed) {
                        to_peer.extend_from_slice(&bytes);
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
                    } else {
                        core.handle_peer_closed();
                    }
                }
                ModemOutput::HungUp => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                }
            }
        }
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        let dte_room = to_peer.len() < PEER_BACKLOG;
        tokio::select! {
            written = write_peer(&mut peer_wr, &to_peer), if !to_peer.is_empty() => match written {
                Ok(n) if n > 0 => {
                    to_peer.drain(..n);
                }
                _ => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    core.handle_peer_closed();
                }
            },
            read = pty.read(&mut buf[..chunk]), if dte_room => match read {
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
            read = read_peer(&mut peer, &mut peer_buf[..chunk]) => match read {
                Ok(n) if n > 0 => {
                    down.pace(n).await;
                    if core.is_online()
                        && !silent.load(Ordering::Relaxed)
                        && let Err(e) = pty.write_all(&peer_buf[..n]).await
                    {
                        tracing::debug!("sim modem: write to DTE: {e}");
                    }
                }
                _ => {
                    peer = None;
                    peer_wr = None;
                    to_peer.clear();
                    core.handle_peer_closed();
                }
            },
            _ = crate::sys::sleep_until_opt(deadline) => core.handle_timeout(Instant::now()),
            Some(()) = drop_calls.recv() => {
                peer = None;
                peer_wr = None;
                to_peer.clear();
                core.handle_peer_closed();
            }
        }
        attempts.store(core.dial_attempts(), Ordering::Relaxed);
    }
}

/// Paces data to a line rate: each chunk is delivered once it would have been transmitted.
struct Pacer {
    rate: Option<u32>,
    free_at: tokio::time::Instant,
}

impl Pacer {
    fn new(rate: Option<u32>) -> Pacer {
        Pacer {
            rate,
            free_at: tokio::time::Instant::now(),
        }
    }

    async fn pace(&mut self, bytes: usize) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let start = self.free_at.max(now);
        self.free_at =
            start + std::time::Duration::from_secs_f64(bytes as f64 * 8.0 / f64::from(rate));
        tokio::time::sleep_until(self.free_at).await;
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
