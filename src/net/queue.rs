//! The transmit queue between a line's slave device and its PPP session: bounded in bytes,
//! drop-tail, counted. Its depth is what `least-loaded` balances by (eql's "queued bytes").

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Default limit: about 4 s of a 56k modem, enough to ride out bursts without bufferbloat.
pub const DEFAULT_QUEUE_BYTES: usize = 32 * 1024;

/// Counters of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub enqueued_packets: u64,
    pub enqueued_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// A bounded FIFO of packets (sans-IO).
#[derive(Debug)]
pub struct TxQueue {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    limit: usize,
    stats: QueueStats,
}

impl TxQueue {
    pub fn new(limit_bytes: usize) -> TxQueue {
        TxQueue {
            packets: VecDeque::new(),
            bytes: 0,
            limit: limit_bytes,
            stats: QueueStats::default(),
        }
    }

    /// Appends `packet`, or drops it (counted) if it does not fit: drop-tail.
    pub fn push(&mut self, packet: Vec<u8>) -> bool {
        let len = packet.len() as u64;
        if self.bytes + packet.len() > self.limit {
            self.stats.dropped_packets += 1;
            self.stats.dropped_bytes += len;
            return false;
        }
        self.bytes += packet.len();
        self.stats.enqueued_packets += 1;
        self.stats.enqueued_bytes += len;
        self.packets.push_back(packet);
        true
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let p = self.packets.pop_front()?;
        self.bytes -= p.len();
        Some(p)
    }

    /// Bytes waiting.
    pub fn depth(&self) -> usize {
        self.bytes
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }
}

/// A [`TxQueue`] shared between the slave reader (producer) and the line driver (consumer),
/// with its depth readable without locking (for the balancer and status).
#[derive(Debug)]
pub struct SharedTxQueue {
    queue: Mutex<TxQueue>,
    ready: Notify,
    /// Told when a packet arrives at an empty queue: whoever reports the depth need not poll
    /// an idle line.
    busy: Notify,
    depth: AtomicU64,
}

impl SharedTxQueue {
    pub fn new(limit_bytes: usize) -> SharedTxQueue {
        SharedTxQueue {
            queue: Mutex::new(TxQueue::new(limit_bytes)),
            ready: Notify::new(),
            busy: Notify::new(),
            depth: AtomicU64::new(0),
        }
    }

    /// Enqueues (or drops) a packet; false if it was dropped.
    pub fn push(&self, packet: Vec<u8>) -> bool {
        let (accepted, was_empty) = self.with(|q| {
            let was_empty = q.depth() == 0;
            (q.push(packet), was_empty)
        });
        if accepted {
            self.ready.notify_one();
            if was_empty {
                self.busy.notify_one();
            }
        }
        accepted
    }

    /// Waits until a packet arrives at an empty queue (at once if one did since the last
    /// wait).
    pub async fn became_busy(&self) {
        self.busy.notified().await
    }

    /// Takes the next packet, if any, without waiting.
    pub fn try_pop(&self) -> Option<Vec<u8>> {
        self.with(TxQueue::pop)
    }

    /// Waits for the next packet.
    pub async fn pop(&self) -> Vec<u8> {
        loop {
            let notified = self.ready.notified();
            if let Some(p) = self.try_pop() {
                return p;
            }
            notified.await;
        }
    }

    /// Bytes waiting.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> QueueStats {
        self.with(|q| q.stats())
    }

    fn with<T>(&self, f: impl FnOnce(&mut TxQueue) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the queue itself is still consistent.
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut q);
        self.depth.store(q.depth() as u64, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_tail_with_counters() {
        let mut q = TxQueue::new(3000);
        assert!(q.push(vec![0; 1500]));
        assert!(q.push(vec![1; 1500]));
        assert!(!q.push(vec![2; 1]), "full: the newcomer is dropped");
        assert_eq!(q.depth(), 3000);
        assert_eq!(
            q.stats(),
            QueueStats {
                enqueued_packets: 2,
                enqueued_bytes: 3000,
                dropped_packets: 1,
                dropped_bytes: 1
            }
        );
        assert_eq!(q.pop().unwrap()[0], 0, "FIFO");
        assert_eq!(q.depth(), 1500);
        assert!(q.push(vec![3; 100]));
        assert_eq!(q.pop().unwrap()[0], 1);
        assert_eq!(q.pop().unwrap()[0], 3);
        assert!(q.pop().is_none());
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn shared_queue_wakes_the_consumer_and_reports_depth() {
        let q = std::sync::Arc::new(SharedTxQueue::new(DEFAULT_QUEUE_BYTES));
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move { q.pop().await })
        };
        tokio::task::yield_now().await;
        assert!(q.push(vec![7; 10]));
        assert_eq!(consumer.await.unwrap(), vec![7; 10]);
        q.push(vec![0; 100]);
        assert_eq!(q.depth(), 100);
        q.try_pop();
        assert_eq!(q.depth(), 0);
        assert_eq!(q.stats().enqueued_packets, 2);
    }
}
