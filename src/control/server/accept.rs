//! The accept loop: each peer classified from its credentials (a group lookup on the blocking
//! pool where needed, bounded in number and time), then given a client slot — displacing a
//! read-only client for an administrator or member if need be — or refused `busy`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use super::auth::{Access, Authority, Peer};
use super::session::serve_client;
use super::wire::encode;
use super::{ControlHandler, Limits, ServerOptions};
use crate::control::protocol::Response;
use crate::control::slots::{Class, EVICTED, SlotLimits, Slots};

/// How clients are admitted (see the module doc, "Client slots").
#[derive(Debug, Clone, Copy)]
pub(super) struct Admission {
    slots: SlotLimits,
    max_lookups: usize,
    lookup_timeout: Duration,
}

impl From<&ServerOptions> for Admission {
    fn from(options: &ServerOptions) -> Admission {
        Admission {
            slots: SlotLimits {
                max_clients: options.max_clients,
                admin_reserve: options.admin_reserve,
                per_user: options.max_per_user,
                read_only: options.max_read_only,
            }
            .clamped(),
            max_lookups: options.max_lookups.max(1),
            lookup_timeout: options.lookup_timeout,
        }
    }
}

/// A connected peer, classified and waiting for a slot.
struct Arrival {
    stream: UnixStream,
    peer: Peer,
    access: Access,
}

/// Accepts clients until aborted; aborting it ends every client's task.
pub(super) async fn accept_loop<H: ControlHandler>(
    listener: UnixListener,
    handler: Arc<H>,
    authority: Arc<Authority>,
    limits: Limits,
    admission: Admission,
) {
    let lookups = Arc::new(Semaphore::new(admission.max_lookups));
    let mut slots: Slots<u64> = Slots::new(admission.slots);
    let mut next_key: u64 = 0;
    // Per admitted client: how to tell it to make room, and which task serves it.
    let mut evictors: HashMap<u64, oneshot::Sender<&'static str>> = HashMap::new();
    let mut task_keys: HashMap<tokio::task::Id, u64> = HashMap::new();
    // Peers whose group membership is being looked up (bounded by `lookups`).
    let mut classifying: JoinSet<Arrival> = JoinSet::new();
    // Dropping the sets (when this task is aborted) aborts every client task.
    let mut clients = JoinSet::new();
    loop {
        let arrival = tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("control socket: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let cred = match stream.peer_cred() {
                    Ok(cred) => cred,
                    Err(e) => {
                        tracing::warn!("control socket: no peer credentials: {e}");
                        continue;
                    }
                };
                let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
                let peer = Peer { uid, pid };
                if let Some(access) = authority.quick_access(uid, gid) {
                    Arrival { stream, peer, access }
                } else {
                    let Ok(permit) = lookups.clone().try_acquire_owned() else {
                        let message = format!(
                            "busy: {} connections are waiting for their group lookup; try again",
                            admission.max_lookups
                        );
                        tracing::warn!("control: {peer} refused: {message}");
                        refuse(&stream, message);
                        continue;
                    };
                    let authority = authority.clone();
                    let limit = admission.lookup_timeout;
                    classifying.spawn(async move {
                        // The permit goes with the blocking call: a lookup that outlives its
                        // deadline still counts until it returns.
                        let lookup = tokio::task::spawn_blocking(move || {
                            let _permit = permit;
                            authority.access(uid, gid, pid)
                        });
                        let access = match tokio::time::timeout(limit, lookup).await {
                            Ok(Ok(access)) => access,
                            Ok(Err(e)) => {
                                tracing::warn!("control: group lookup for {peer} failed: {e}");
                                Access::ReadOnly
                            }
                            Err(_) => {
                                tracing::warn!(
                                    "control: group lookup for {peer} took over {limit:?}; \
                                     treated as read-only"
                                );
                                Access::ReadOnly
                            }
                        };
                        Arrival { stream, peer, access }
                    });
                    continue;
                }
            }
            Some(done) = classifying.join_next(), if !classifying.is_empty() => {
                match done {
                    Ok(arrival) => arrival,
                    Err(_) => continue,
                }
            }
            Some(done) = clients.join_next_with_id(), if !clients.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                if let Some(key) = task_keys.remove(&id) {
                    slots.remove(key);
                    evictors.remove(&key);
                }
                continue;
            }
        };
        let Arrival {
            stream,
            peer,
            access,
        } = arrival;
        let class = authority.class(peer.uid, access);
        let key = next_key;
        next_key += 1;
        match slots.admit(key, peer.uid, class) {
            Err(refusal) => {
                let message = refusal.to_string();
                // A read-only crowd is not worth a warning per connection.
                if class == Class::ReadOnly {
                    tracing::debug!("control: {peer} refused: {message}");
                } else {
                    tracing::warn!("control: {peer} refused: {message}");
                }
                refuse(&stream, message);
            }
            Ok(victim) => {
                if let Some(victim) = victim
                    && let Some(evict) = evictors.remove(&victim)
                {
                    tracing::info!(
                        "control: closing a read-only client to make room for {peer} \
                         ({} clients)",
                        slots.len()
                    );
                    let _ = evict.send(EVICTED);
                }
                let (evict, evicted) = oneshot::channel();
                let handler = handler.clone();
                let authority = authority.clone();
                let task = clients.spawn(serve_client(
                    stream,
                    handler,
                    authority,
                    limits,
                    peer,
                    access,
                    Eviction(Some(evicted)),
                ));
                task_keys.insert(task.id(), key);
                evictors.insert(key, evict);
            }
        }
    }
}

/// Answers a client that gets no slot and closes it.
fn refuse(stream: &UnixStream, message: String) {
    let busy = encode(&Response::Error { message });
    // The new socket's buffer is empty: this never blocks.
    let _ = stream.try_write(&busy);
}

/// A client's notice that its slot was given to someone who may act.
pub(super) struct Eviction(Option<oneshot::Receiver<&'static str>>);

impl Eviction {
    /// The reason, once the client is evicted; never returns otherwise. Cancel-safe.
    pub(super) async fn notice(&mut self) -> &'static str {
        if let Some(rx) = &mut self.0 {
            let got = rx.await;
            // A finished receiver must not be polled again.
            self.0 = None;
            // Err: the accept loop forgot us; it ends, and us with it.
            if let Ok(reason) = got {
                return reason;
            }
        }
        std::future::pending().await
    }
}
