//! The packet pumps between a slave device and a PPP session's IP channels: kernel → transmit
//! queue (drop-tail) → session, and session → kernel. Used by the dialer's lines and by the
//! simulated ISP alike.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{SharedTxQueue, Slave};

/// Where the pumps count the bytes they move.
pub trait TrafficCounter: Send + Sync {
    /// Bytes received on the line and handed to the kernel.
    fn count_rx(&self, bytes: usize);
    /// Bytes taken from the kernel and sent on the line.
    fn count_tx(&self, bytes: usize);
}

/// Counts nothing.
pub struct NoCount;

impl TrafficCounter for NoCount {
    fn count_rx(&self, _: usize) {}
    fn count_tx(&self, _: usize) {}
}

/// The packet pumps between the slave and the PPP session.
pub struct Pumps {
    to_queue: JoinHandle<()>,
    to_line: JoinHandle<()>,
    to_kernel: JoinHandle<mpsc::Receiver<Vec<u8>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Pumps {
    /// Stops the pumps; gives back the PPP receive channel (the session may come up again).
    pub async fn stop(self) -> Option<mpsc::Receiver<Vec<u8>>> {
        let _ = self.stop.send(true);
        self.to_queue.abort();
        self.to_line.abort();
        self.to_kernel.await.ok()
    }
}

pub fn start_pumps<S: Slave + 'static, C: TrafficCounter + 'static>(
    slave: Arc<S>,
    queue: Arc<SharedTxQueue>,
    outgoing: mpsc::Sender<Vec<u8>>,
    mut from_line: mpsc::Receiver<Vec<u8>>,
    shared: Arc<C>,
) -> Pumps {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // Kernel → queue (drop-tail). Only IPv4 goes on the line: IPv6CP is not negotiated.
    let to_queue = {
        let slave = slave.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                match slave.recv(&mut buf).await {
                    Ok(n) if n > 0 && buf[0] >> 4 == 4 => {
                        queue.push(buf[..n].to_vec());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("slave read: {e}");
                        return;
                    }
                }
            }
        })
    };
    // Queue → PPP session.
    let to_line = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let packet = queue.pop().await;
                let len = packet.len();
                if outgoing.send(packet).await.is_err() {
                    return;
                }
                shared.count_tx(len);
            }
        })
    };
    // PPP session → kernel. Hands the channel back when stopped.
    let to_kernel = tokio::spawn(async move {
        loop {
            tokio::select! {
                p = from_line.recv() => match p {
                    Some(packet) => {
                        shared.count_rx(packet.len());
                        if let Err(e) = slave.send(&packet).await {
                            tracing::debug!("slave write: {e}");
                        }
                    }
                    None => return from_line,
                },
                _ = stopped.changed() => return from_line,
            }
        }
    });
    Pumps {
        to_queue,
        to_line,
        to_kernel,
        stop,
    }
}
