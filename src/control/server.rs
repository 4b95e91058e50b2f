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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use nix::unistd::{Gid, Group, Uid, User};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::protocol::{Envelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Request, Response};
use super::slots::{Class, EVICTED, SlotLimits, Slots};

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

/// A listening control socket. Dropping it (or [`ControlServer::shutdown`]) stops accepting,
/// ends every client's task and removes the socket file — if it is still the one this server
/// created.
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket file we bound.
    identity: (u64, u64),
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, ends all client connections and removes the socket file.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.remove_socket();
    }

    fn remove_socket(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.remove_socket();
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

/// A bound control socket that does not accept yet: the daemon binds it before it touches any
/// kernel state (a second daemon stops here), and serves it once its supervisor runs.
pub struct ControlListener {
    listener: UnixListener,
    server: ControlServer,
    authority: Arc<Authority>,
    limits: Limits,
    admission: Admission,
}

impl fmt::Debug for ControlListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlListener")
            .field("path", &self.server.path)
            .finish_non_exhaustive()
    }
}

impl ControlListener {
    /// Starts accepting clients on tasks of their own, answered by `handler`.
    pub fn serve<H: ControlHandler>(self, handler: Arc<H>) -> ControlServer {
        let ControlListener {
            listener,
            mut server,
            authority,
            limits,
            admission,
        } = self;
        server.task = Some(tokio::spawn(accept_loop(
            listener, handler, authority, limits, admission,
        )));
        tracing::info!(socket = %server.path.display(), "control socket listening");
        server
    }
}

/// Binds the control socket at `path` (see [`serve_with`] for what happens to the file);
/// connections wait in the backlog until [`ControlListener::serve`].
pub async fn bind(path: &Path, options: ServerOptions) -> io::Result<ControlListener> {
    let group = match &options.group {
        Some(name) => Some(lookup_group(name)?),
        None => None,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| annotate(e, format!("cannot create {}", dir.display())))?;
    }
    remove_stale_socket(path).await?;
    let listener = UnixListener::bind(path)
        .map_err(|e| annotate(e, format!("cannot listen on {}", path.display())))?;
    let meta = std::fs::symlink_metadata(path)?;
    let identity = (meta.dev(), meta.ino());
    // From here on the guard removes the file if setting it up fails.
    let server = ControlServer {
        path: path.to_path_buf(),
        identity,
        task: None,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| annotate(e, format!("cannot set the mode of {}", path.display())))?;
    if let Some((name, gid)) = &group {
        nix::unistd::chown(path, None, Some(*gid)).map_err(|e| {
            annotate(
                e.into(),
                format!("cannot give {} to group {name}", path.display()),
            )
        })?;
    }
    let authority = Arc::new(Authority {
        own_uid: Uid::effective(),
        group,
    });
    let limits = Limits {
        idle_timeout: options.idle_timeout,
        write_timeout: options.write_timeout,
        handler_timeout: options.handler_timeout,
    };
    Ok(ControlListener {
        listener,
        server,
        authority,
        limits,
        admission: Admission {
            slots: SlotLimits {
                max_clients: options.max_clients,
                admin_reserve: options.admin_reserve,
                per_user: options.max_per_user,
                read_only: options.max_read_only,
            }
            .clamped(),
            max_lookups: options.max_lookups.max(1),
            lookup_timeout: options.lookup_timeout,
        },
    })
}

fn annotate(e: io::Error, context: String) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

fn lookup_group(name: &str) -> io::Result<(String, Gid)> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok((name.to_string(), g.gid)),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "unknown group '{name}' ([control] group): create it (groupadd {name}) or remove \
                 the option"
            ),
        )),
        Err(e) => Err(io::Error::other(format!(
            "cannot look up group '{name}' ([control] group): {e}"
        ))),
    }
}

/// Removes a socket file nobody answers on; fails if a daemon answers or the path is not a
/// socket.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(annotate(e, format!("cannot inspect {}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        ));
    }
    match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path)).await {
        // Anything that accepts a connection is alive, even if it is slow to answer.
        Ok(Ok(_)) | Err(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another eqlplus-dialer daemon is running (it answers on {}); stop it first",
                path.display()
            ),
        )),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing stale control socket");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(annotate(
                    e,
                    format!("cannot remove stale socket {}", path.display()),
                )),
                _ => Ok(()),
            }
        }
        Ok(Err(e)) => Err(annotate(
            e,
            format!(
                "cannot check whether a daemon answers on {}",
                path.display()
            ),
        )),
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    idle_timeout: Duration,
    write_timeout: Duration,
    handler_timeout: Duration,
}

/// How clients are admitted (see the module doc, "Client slots").
#[derive(Debug, Clone, Copy)]
struct Admission {
    slots: SlotLimits,
    max_lookups: usize,
    lookup_timeout: Duration,
}

/// A connected peer, classified and waiting for a slot.
struct Arrival {
    stream: UnixStream,
    peer: Peer,
    access: Access,
}

async fn accept_loop<H: ControlHandler>(
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
struct Eviction(Option<oneshot::Receiver<&'static str>>);

impl Eviction {
    /// The reason, once the client is evicted; never returns otherwise. Cancel-safe.
    async fn notice(&mut self) -> &'static str {
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

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Every request.
    Control,
    /// `status` and `subscribe` only.
    ReadOnly,
}

struct Authority {
    own_uid: Uid,
    group: Option<(String, Gid)>,
}

/// Who is on the other end, for logs and messages.
#[derive(Debug, Clone)]
struct Peer {
    uid: u32,
    pid: Option<i32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid})")?;
        }
        Ok(())
    }
}

impl Authority {
    /// The peer's access when it needs no group lookup.
    fn quick_access(&self, uid: u32, gid: u32) -> Option<Access> {
        if uid == 0 || uid == self.own_uid.as_raw() {
            return Some(Access::Control);
        }
        match &self.group {
            None => Some(Access::ReadOnly),
            Some((_, group)) if gid == group.as_raw() => Some(Access::Control),
            Some(_) => None,
        }
    }

    /// Which slots the peer may take.
    fn class(&self, uid: u32, access: Access) -> Class {
        if uid == 0 || uid == self.own_uid.as_raw() {
            Class::Admin
        } else if access == Access::Control {
            Class::Member
        } else {
            Class::ReadOnly
        }
    }

    fn access(&self, uid: u32, gid: u32, pid: Option<i32>) -> Access {
        if uid == 0 || uid == self.own_uid.as_raw() {
            return Access::Control;
        }
        let Some((_, group)) = &self.group else {
            return Access::ReadOnly;
        };
        if gid == group.as_raw() || peer_groups(uid, gid, pid).contains(&group.as_raw()) {
            Access::Control
        } else {
            Access::ReadOnly
        }
    }

    fn denial(&self, peer: &Peer) -> String {
        match &self.group {
            Some((name, _)) => format!(
                "permission denied: {peer} is neither root nor a member of group '{name}'; only \
                 they may up, hangup or reload (ask for: usermod -aG {name} USER, then log in \
                 again)"
            ),
            None => format!(
                "permission denied: {peer} is not root, and no [control] group is configured; \
                 only root may up, hangup or reload"
            ),
        }
    }
}

/// The peer's supplementary groups: from its process (`/proc/PID/status`, exactly what the
/// kernel checks), else from the user database.
fn peer_groups(uid: u32, gid: u32, pid: Option<i32>) -> Vec<u32> {
    if let Some(pid) = pid.filter(|p| *p > 0)
        && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some((euid, groups)) = parse_proc_status(&text)
        // The pid may have been reused since the peer connected: trust it only if it is
        // still the peer's user.
        && euid == uid
    {
        return groups;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

/// The effective uid and the supplementary groups from `/proc/PID/status`.
fn parse_proc_status(text: &str) -> Option<(u32, Vec<u32>)> {
    let mut euid = None;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            euid = rest.split_whitespace().nth(1).and_then(|u| u.parse().ok());
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = Some(
                rest.split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect(),
            );
        }
    }
    Some((euid?, groups?))
}

fn encode(response: &Response) -> Vec<u8> {
    let mut bytes = match serde_json::to_vec(response) {
        Ok(b) => b,
        Err(e) => serde_json::to_vec(&Response::Error {
            message: format!("internal error: cannot encode the response: {e}"),
        })
        .unwrap_or_default(),
    };
    bytes.push(b'\n');
    bytes
}

/// Non-finite numbers would be written as `null`, which no client can read back as a number.
fn sanitize(mut response: Response) -> Response {
    if let Response::Status(report) = &mut response {
        let fix = |x: &mut f64| {
            if !x.is_finite() {
                *x = 0.0;
            }
        };
        fix(&mut report.time);
        for line in &mut report.lines {
            fix(&mut line.since);
            fix(&mut line.rx_rate);
            fix(&mut line.tx_rate);
            fix(&mut line.share);
            if let Some(t) = &mut line.next_attempt {
                fix(t);
            }
        }
    }
    response
}

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
enum Incoming {
    Line(Vec<u8>),
    /// A line longer than the limit; the rest of it is skipped.
    TooLong,
    Eof,
}

/// Reads newline-terminated lines of at most `max` bytes without ever buffering more.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` known to contain no newline.
    scanned: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    max: usize,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            scanned: 0,
            discarding: false,
            max,
            eof: false,
        }
    }

    async fn next(&mut self) -> io::Result<Incoming> {
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                if line.len() > self.max {
                    return Ok(Incoming::TooLong);
                }
                return Ok(Incoming::Line(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                self.buf.clear();
                self.scanned = 0;
                if !self.discarding {
                    self.discarding = true;
                    return Ok(Incoming::TooLong);
                }
            }
            if self.eof {
                if self.buf.is_empty() || self.discarding {
                    self.buf.clear();
                    return Ok(Incoming::Eof);
                }
                // A last request without its newline is still a request.
                self.scanned = 0;
                return Ok(Incoming::Line(std::mem::take(&mut self.buf)));
            }
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// A request line, decoded; `Err` is the error message to answer with. Never panics, whatever
/// the bytes (fuzz target `control_request`).
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("bad request: invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("bad request: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            r#"bad request: expected a JSON object such as {{"version":{PROTOCOL_VERSION},"cmd":"status"}}"#
        ));
    };
    match object.get("version") {
        None => {
            return Err(format!(
                "bad request: missing field `version` (this daemon speaks protocol version \
                 {PROTOCOL_VERSION})"
            ));
        }
        Some(v) if v.as_u64() != Some(u64::from(PROTOCOL_VERSION)) => {
            return Err(format!(
                "unsupported protocol version {v}: this daemon speaks version {PROTOCOL_VERSION} \
                 (is the command from another release?)"
            ));
        }
        Some(_) => {}
    }
    serde_json::from_value::<Envelope>(value)
        .map(|e| e.request)
        .map_err(|e| format!("bad request: {e}"))
}

fn command_name(request: &Request) -> &'static str {
    match request {
        Request::Up { .. } => "up",
        Request::Hangup { .. } => "hangup",
        Request::Status { .. } => "status",
        Request::Reload => "reload",
        Request::Subscribe { .. } => "subscribe",
    }
}

async fn call<H: ControlHandler>(handler: &H, request: Request, limit: Duration) -> Response {
    let answer = AssertUnwindSafe(handler.handle(request)).catch_unwind();
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(response)) => sanitize(response),
        Ok(Err(_)) => {
            tracing::error!("control handler panicked");
            Response::Error {
                message: "internal error: the daemon failed while handling this request".into(),
            }
        }
        Err(_) => {
            tracing::error!("control handler did not answer within {limit:?}");
            Response::Error {
                message: format!(
                    "internal error: the daemon did not answer within {}s",
                    limit.as_secs_f64()
                ),
            }
        }
    }
}

/// Writes one response within the write timeout; `false` means the client is gone or stuck.
async fn send<W: AsyncWrite + Unpin>(writer: &mut W, response: &Response, limit: Duration) -> bool {
    let bytes = encode(response);
    let write = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("control client gone: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("control client not reading for {limit:?}: dropped");
            false
        }
    }
}

/// Tells an evicted client why (briefly: it may not be reading) before it is closed.
async fn evicted<W: AsyncWrite + Unpin>(writer: &mut W, peer: &Peer, reason: &str, limits: Limits) {
    tracing::info!("control: {peer} closed: {reason}");
    let message = reason.to_string();
    send(
        writer,
        &Response::Error { message },
        limits.write_timeout.min(Duration::from_secs(1)),
    )
    .await;
}

async fn serve_client<H: ControlHandler>(
    stream: UnixStream,
    handler: Arc<H>,
    authority: Arc<Authority>,
    limits: Limits,
    peer: Peer,
    access: Access,
    mut eviction: Eviction,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(read, MAX_REQUEST_BYTES);
    loop {
        let next = tokio::select! {
            reason = eviction.notice() => {
                evicted(&mut write, &peer, reason, limits).await;
                return;
            }
            next = tokio::time::timeout(limits.idle_timeout, reader.next()) => next,
        };
        let incoming = match next {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(e)) => {
                tracing::debug!("control client {peer}: read failed: {e}");
                return;
            }
            Err(_) => {
                let message = format!(
                    "timeout: no request within {}s, closing",
                    limits.idle_timeout.as_secs_f64()
                );
                send(
                    &mut write,
                    &Response::Error { message },
                    limits.write_timeout.min(Duration::from_secs(1)),
                )
                .await;
                return;
            }
        };
        let line = match incoming {
            Incoming::Eof => return,
            Incoming::TooLong => {
                let message = format!(
                    "bad request: line longer than {MAX_REQUEST_BYTES} bytes (skipped up to the \
                     next newline)"
                );
                if !send(
                    &mut write,
                    &Response::Error { message },
                    limits.write_timeout,
                )
                .await
                {
                    return;
                }
                continue;
            }
            Incoming::Line(line) => line,
        };
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let request = match decode_request(trimmed) {
            Ok(r) => r,
            Err(message) => {
                tracing::debug!("control client {peer}: {message}");
                if !send(
                    &mut write,
                    &Response::Error { message },
                    limits.write_timeout,
                )
                .await
                {
                    return;
                }
                continue;
            }
        };
        let changes = !matches!(request, Request::Status { .. } | Request::Subscribe { .. });
        if changes && access != Access::Control {
            let message = authority.denial(&peer);
            tracing::warn!(
                "control: {peer} asked {} and was refused",
                command_name(&request)
            );
            send(
                &mut write,
                &Response::Error { message },
                limits.write_timeout,
            )
            .await;
            return;
        }
        if changes {
            tracing::info!("control: {peer} asked {:?}", request);
        } else {
            tracing::debug!("control: {peer} asked {:?}", request);
        }
        if let Request::Subscribe { interval_ms } = request {
            let interval = Duration::from_millis(interval_ms)
                .clamp(MIN_SUBSCRIBE_INTERVAL, MAX_SUBSCRIBE_INTERVAL);
            subscription(
                &mut reader.inner,
                &mut write,
                &*handler,
                interval,
                limits,
                &peer,
                &mut eviction,
            )
            .await;
            return;
        }
        let response = tokio::select! {
            reason = eviction.notice() => {
                evicted(&mut write, &peer, reason, limits).await;
                return;
            }
            response = call(&*handler, request, limits.handler_timeout) => response,
        };
        if !send(&mut write, &response, limits.write_timeout).await {
            return;
        }
    }
}

/// Streams status reports until the client goes away (a write fails or times out, or its
/// read side reports an error) or is evicted. Input during a subscription is read and
/// ignored; a client that only half-closes its side keeps receiving reports.
async fn subscription<R, W, H>(
    reader: &mut R,
    writer: &mut W,
    handler: &H,
    interval: Duration,
    limits: Limits,
    peer: &Peer,
    eviction: &mut Eviction,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: ControlHandler,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reading = true;
    let mut scratch = [0u8; 1024];
    loop {
        tokio::select! {
            reason = eviction.notice() => {
                evicted(writer, peer, reason, limits).await;
                return;
            }
            _ = ticks.tick() => {
                let response = tokio::select! {
                    reason = eviction.notice() => {
                        evicted(writer, peer, reason, limits).await;
                        return;
                    }
                    response =
                        call(handler, Request::Status { line: None }, limits.handler_timeout) => {
                        response
                    }
                };
                let stop = !matches!(response, Response::Status(_));
                if !send(writer, &response, limits.write_timeout).await || stop {
                    return;
                }
            }
            read = reader.read(&mut scratch), if reading => match read {
                Ok(0) => reading = false,
                Ok(_) => {}
                Err(_) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_names_the_problem() {
        assert_eq!(
            decode_request(br#"{"version":1,"cmd":"reload"}"#),
            Ok(Request::Reload)
        );
        let e = decode_request(b"{\"version\":1,").unwrap_err();
        assert!(e.starts_with("bad request: EOF while parsing"), "{e}");
        let e = decode_request(b"{\"version\" 1}").unwrap_err();
        assert_eq!(e, "bad request: expected `:` at line 1 column 12");
        let e = decode_request(br#"{"version":1,"cmd":"explode"}"#).unwrap_err();
        assert!(e.contains("unknown variant `explode`"), "{e}");
        let e = decode_request(br#"{"version":2,"cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("unsupported protocol version 2"), "{e}");
        let e = decode_request(br#"{"version":"1","cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("unsupported protocol version \"1\""), "{e}");
        let e = decode_request(br#"{"cmd":"reload"}"#).unwrap_err();
        assert!(e.starts_with("bad request: missing field `version`"), "{e}");
        let e = decode_request(br#"{"version":1}"#).unwrap_err();
        assert!(e.contains("missing field `cmd`"), "{e}");
        let e = decode_request(b"[1,2]").unwrap_err();
        assert!(e.starts_with("bad request: expected a JSON object"), "{e}");
        let e = decode_request(b"{\"v\xff\"}").unwrap_err();
        assert_eq!(e, "bad request: invalid UTF-8 at byte 3");
        let e = decode_request(br#"{"version":1,"cmd":"hangup"}"#).unwrap_err();
        assert!(e.contains("missing field `lines`"), "{e}");
    }

    #[test]
    fn proc_status_groups() {
        let text = "Name:\tcat\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t100\t100\t100\n\
                    Groups:\t4 24 27 1000 \n";
        assert_eq!(parse_proc_status(text), Some((1001, vec![4, 24, 27, 1000])));
        let none = "Name:\tcat\nUid:\t0\t0\t0\t0\nGroups:\n";
        assert_eq!(parse_proc_status(none), Some((0, vec![])));
        assert_eq!(parse_proc_status("Name:\tcat\n"), None);
    }

    #[test]
    fn root_and_own_uid_may_act_others_only_read() {
        let authority = Authority {
            own_uid: Uid::from_raw(4242),
            group: None,
        };
        assert_eq!(authority.access(0, 0, None), Access::Control);
        assert_eq!(authority.access(4242, 4242, None), Access::Control);
        assert_eq!(authority.access(4243, 4243, None), Access::ReadOnly);
        let with_group = Authority {
            own_uid: Uid::from_raw(4242),
            group: Some(("eqlplus".into(), Gid::from_raw(4300))),
        };
        // Primary group.
        assert_eq!(with_group.access(4243, 4300, None), Access::Control);
        let message = with_group.denial(&Peer {
            uid: 4243,
            pid: Some(7),
        });
        assert!(
            message.starts_with(
                "permission denied: uid 4243 (pid 7) is neither root nor a member of group 'eqlplus'"
            ),
            "{message}"
        );
    }

    async fn lines_of(input: &[u8], max: usize) -> Vec<Incoming> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let item = reader.next().await.unwrap();
            let end = item == Incoming::Eof;
            out.push(item);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn line_reader_bounds_lines() {
        use Incoming::*;
        assert_eq!(
            lines_of(b"ab\ncd\n", 4).await,
            vec![Line(b"ab".to_vec()), Line(b"cd".to_vec()), Eof]
        );
        assert_eq!(
            lines_of(b"abcd\nabcde\nxy", 4).await,
            vec![Line(b"abcd".to_vec()), TooLong, Line(b"xy".to_vec()), Eof]
        );
        let mut long = vec![b'x'; 100_000];
        long.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines_of(&long, 1000).await,
            vec![TooLong, Line(b"ok".to_vec()), Eof]
        );
        assert_eq!(lines_of(&[b'y'; 5000], 1000).await, vec![TooLong, Eof]);
        assert_eq!(lines_of(b"", 10).await, vec![Eof]);
    }

    #[test]
    fn non_finite_numbers_are_not_sent_as_null() {
        let report = super::super::StatusReport {
            time: f64::NAN,
            lines: vec![super::super::LineStatus {
                rx_rate: f64::INFINITY,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = String::from_utf8(encode(&sanitize(Response::Status(report)))).unwrap();
        assert!(text.contains(r#""time":0.0"#), "{text}");
        assert!(text.contains(r#""rx_rate":0.0"#), "{text}");
        let back: Response = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Response::Status(_)));
    }
}
