//! The daemon's side of the control socket.
//!
//! The daemon implements [`ControlHandler`] (one async method that turns a [`Request`] into a
//! [`Response`]) and calls [`serve`]; everything about the socket is here: creating its
//! directory, replacing a stale socket file (and refusing to start when another daemon answers
//! on it), its mode and group, authorising each peer from its kernel credentials
//! (`SO_PEERCRED`), reading bounded request lines, answering every one of them (malformed ones
//! with an `error` response that names the problem), streaming `subscribe`, and timeouts so
//! that no client — silent, slow or hostile — can hold the daemon up.
//!
//! # Who may do what
//!
//! The socket file is mode 0660, owned by the daemon's user and by the configured group
//! (`[control] group`), so only root, the daemon's user and members of that group can connect
//! at all. The server checks again on every connection, from the peer's credentials:
//!
//! - root, the daemon's own uid, and members of the group (primary or supplementary groups,
//!   read from `/proc/PID/status` of the peer, else from the user database) may send every
//!   request;
//! - anyone else who can reach the socket (because its mode was loosened by hand) may still
//!   read `status` and `subscribe` — they change nothing — but `up`, `hangup` and `reload` are
//!   answered with `permission denied: …` and the connection is closed.
//!
//! # Robustness
//!
//! Every request line gets exactly one response (a `subscribe` a stream of them); blank lines
//! are ignored. Invalid UTF-8, malformed JSON, unknown commands, a missing or other protocol
//! version and lines longer than [`MAX_REQUEST_BYTES`] are each answered with
//! `{"result":"error","message":"bad request: …"}` (or `unsupported protocol version …`) and
//! the connection stays usable. A client that sends no complete request within
//! [`ServerOptions::idle_timeout`] is told so and dropped; a write that does not complete
//! within [`ServerOptions::write_timeout`] (a client that stopped reading) drops the client.
//! A handler that panics, or does not answer within [`ServerOptions::handler_timeout`], is
//! answered with an internal error.
//!
//! [`MAX_REQUEST_BYTES`]: crate::control::protocol::MAX_REQUEST_BYTES
//!
//! # Client slots
//!
//! Every accepted peer is classified from its credentials before it gets a slot: an
//! *administrator* (root or the daemon's own uid), a *member* of the control group, or
//! *read-only*. Root, the daemon's uid and a peer whose primary gid is the group's are
//! classified at once; anyone else needs a group lookup, which runs on the blocking pool, at
//! most [`ServerOptions::max_lookups`] (16) at once (more peers meanwhile are answered
//! `busy`) and for at most [`ServerOptions::lookup_timeout`] (2 s; slower: read-only). Then,
//! with the defaults:
//!
//! - at most [`ServerOptions::max_clients`] (64) clients at once;
//! - [`ServerOptions::admin_reserve`] (8) of them are kept for administrators: members and
//!   read-only peers together get at most 56;
//! - a uid other than root's and the daemon's holds at most [`ServerOptions::max_per_user`]
//!   (8) connections;
//! - read-only peers hold at most [`ServerOptions::max_read_only`] (16) connections together;
//! - when an administrator or a member finds no slot free for it, the server closes a
//!   read-only client to make room — one of the uid holding the most read-only slots, the
//!   longest-connected of those — after telling it `busy: making room for an administrator;
//!   reconnect later`; a read-only peer never displaces anyone;
//! - whoever is still refused is answered `busy: …` naming the limit it hit (its uid's, the
//!   read-only one, the slots outside the reserve, all of them) and closed.
//!
//! So read-only users can never keep an administrator out, and an administrator is refused
//! only when administrators already hold at least the reserve and every other slot is a
//! member's.
//!
//! # Layout
//!
//! - `socket`: the socket file's life: its directory, stale-socket detection, mode and
//!   group, removal ([`bind`], [`ControlListener`], [`ControlServer`]);
//! - `auth`: who the peer is (`SO_PEERCRED`, its groups) and which requests need which rights;
//! - `accept`: the accept loop: classifying peers, client slots, eviction;
//! - `session`: one client's loop: reading requests, dispatching them, subscriptions,
//!   timeouts;
//! - `wire`: bounded request lines (tokio-util's delimiter codec), decoding requests,
//!   encoding responses.

mod accept;
mod auth;
mod session;
mod socket;
mod wire;

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::protocol::{Request, Response};

pub use socket::{ControlListener, ControlServer, bind};
pub use wire::decode_request;

/// What the daemon implements: one request in, one response out.
///
/// `Up`, `Hangup`, `Status` and `Reload` are passed through as they come. `Subscribe` never
/// reaches the handler: the server turns it into `Status { line: None }` now and at every
/// interval, and writes each answer until the client goes away.
///
/// The future runs on the client's own task, so a slow answer delays only that client; it
/// should still not block the thread (no blocking I/O, no `std::thread::sleep`).
pub trait ControlHandler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Shortest interval a `subscribe` may ask for; shorter ones are raised to it.
pub const MIN_SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(100);

/// Longest interval a `subscribe` may ask for; longer ones are lowered to it.
pub const MAX_SUBSCRIBE_INTERVAL: Duration = Duration::from_secs(3600);

/// Tunables of [`serve_with`]; [`Default`] has the daemon's values.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Members of this group may control the daemon (`[control] group`); it also becomes the
    /// socket file's group.
    pub group: Option<String>,
    /// Clients served at once, all together; more are answered "busy" and closed (at least
    /// 1).
    pub max_clients: usize,
    /// Of `max_clients`, slots only root and the daemon's own uid may take (at most
    /// `max_clients - 1`).
    pub admin_reserve: usize,
    /// Connections any other uid (a group member or a read-only peer) may hold at once (at
    /// least 1).
    pub max_per_user: usize,
    /// Connections read-only peers (neither root, nor the daemon's uid, nor group members)
    /// may hold together; 0 shuts them out.
    pub max_read_only: usize,
    /// Group lookups (a peer that is neither root, nor the daemon's uid, nor in the group by
    /// its primary gid) running at once; a peer arriving while that many run is answered
    /// "busy".
    pub max_lookups: usize,
    /// A group lookup that takes longer than this is given up: the peer is read-only.
    pub lookup_timeout: Duration,
    /// A client that sends no complete request line for this long is dropped.
    pub idle_timeout: Duration,
    /// A response that cannot be written within this long (the client stopped reading) drops
    /// the client.
    pub write_timeout: Duration,
    /// A handler that takes longer than this to answer is abandoned and the client told so.
    pub handler_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            group: None,
            max_clients: 64,
            admin_reserve: 8,
            max_per_user: 8,
            max_read_only: 16,
            max_lookups: 16,
            lookup_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(30),
        }
    }
}

/// Listens on `path` with the default [`ServerOptions`] and the given group.
///
/// Must be called inside a tokio runtime. See [`serve_with`].
pub async fn serve<H: ControlHandler>(
    path: &Path,
    group: Option<&str>,
    handler: Arc<H>,
) -> io::Result<ControlServer> {
    let options = ServerOptions {
        group: group.map(str::to_string),
        ..ServerOptions::default()
    };
    serve_with(path, options, handler).await
}

/// Listens on `path` and serves clients on tasks of their own until the returned
/// [`ControlServer`] is dropped.
///
/// Creates the parent directory (mode 0755) if missing. An existing socket file is replaced
/// when nobody answers on it; when a daemon does answer, this fails with
/// [`io::ErrorKind::AddrInUse`] ("another eqlplus-dialer daemon is running …"). Anything else
/// at `path` (a regular file, a directory) is left alone and reported. The socket becomes
/// mode 0660 with the configured group; an unknown group is an error
/// ([`io::ErrorKind::NotFound`]) before anything is created.
pub async fn serve_with<H: ControlHandler>(
    path: &Path,
    options: ServerOptions,
    handler: Arc<H>,
) -> io::Result<ControlServer> {
    Ok(bind(path, options).await?.serve(handler))
}

/// The per-client timeouts, from [`ServerOptions`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle_timeout: Duration,
    write_timeout: Duration,
    handler_timeout: Duration,
}

impl From<&ServerOptions> for Limits {
    fn from(options: &ServerOptions) -> Limits {
        Limits {
            idle_timeout: options.idle_timeout,
            write_timeout: options.write_timeout,
            handler_timeout: options.handler_timeout,
        }
    }
}
