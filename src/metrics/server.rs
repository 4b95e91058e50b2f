//! The endpoint: `GET /metrics` over TCP or a Unix socket. One request per connection; at most
//! [`MAX_SCRAPES`] at once (more are closed unanswered, a scraper retries at its next
//! interval); each connection has [`DEADLINE`] for its request and the whole answer. A scrape
//! reads the lines' shared status under its short lock and never waits for a line or the
//! supervisor; the encoding runs on the blocking pool.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::http::{self, MAX_HEAD, Route, Status};
use super::{Format, Snapshot, render};
use crate::config::MetricsListen;

/// Scrapes answered at once.
pub const MAX_SCRAPES: usize = 4;

/// A connection's time for its request and the whole answer.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Where a scrape's figures come from (called once per scrape, on the runtime: it must not
/// wait).
pub type Source = Arc<dyn Fn() -> Snapshot + Send + Sync>;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A bound endpoint that does not answer yet: the daemon binds it before it starts its lines
/// (a port in use stops it there) and serves it once they run.
pub struct MetricsListener {
    listener: Listener,
    server: MetricsServer,
    /// Where, for the log.
    shown: String,
}

/// The running endpoint. Dropping it stops accepting, ends the scrapes in progress and removes
/// the Unix socket file (if it is still the one bound).
pub struct MetricsServer {
    /// The Unix socket's path, and the device and inode of the file bound there.
    socket: Option<(PathBuf, (u64, u64))>,
    task: Option<JoinHandle<()>>,
}

impl MetricsListener {
    /// Binds `listen`. A Unix socket's directory is created (0755); a stale socket file (nobody
    /// answers) is replaced, a live one or another kind of file is refused. The socket is 0666:
    /// the figures are no secret (no addresses), and a loopback port is open to every local
    /// user alike.
    pub async fn bind(listen: &MetricsListen) -> io::Result<MetricsListener> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("metrics: {listen}: {e}"));
        match listen {
            MetricsListen::Tcp(addr) => {
                let l = TcpListener::bind(addr).await.map_err(context)?;
                let shown = l.local_addr().map_or(listen.to_string(), |a| a.to_string());
                Ok(MetricsListener {
                    listener: Listener::Tcp(l),
                    shown,
                    server: MetricsServer {
                        socket: None,
                        task: None,
                    },
                })
            }
            MetricsListen::Unix(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && !dir.exists()
                {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(dir)
                        .map_err(context)?;
                }
                remove_stale(path).await.map_err(context)?;
                let l = UnixListener::bind(path).map_err(context)?;
                let meta = std::fs::symlink_metadata(path).map_err(context)?;
                let server = MetricsServer {
                    socket: Some((path.clone(), (meta.dev(), meta.ino()))),
                    task: None,
                };
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                    .map_err(context)?;
                Ok(MetricsListener {
                    listener: Listener::Unix(l),
                    server,
                    shown: listen.to_string(),
                })
            }
        }
    }

    /// The TCP address bound (for a port chosen by the system, in tests).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    /// Starts answering scrapes from `source`.
    pub fn serve(self, source: Source) -> MetricsServer {
        let MetricsListener {
            listener,
            mut server,
            shown,
        } = self;
        server.task = Some(tokio::spawn(accept_loop(listener, source)));
        tracing::info!(listen = %shown, "metrics endpoint listening at /metrics");
        server
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some((path, identity)) = &self.socket
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && (meta.dev(), meta.ino()) == *identity
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes a socket file nobody answers on; refuses a live one and any other kind of file.
async fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the file exists and is not a socket; refusing to replace it",
        ));
    }
    match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path)).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) | Err(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "something answers on this socket already",
        )),
    }
}

async fn accept_loop(listener: Listener, source: Source) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    // Owned here: aborting the loop ends every scrape in progress.
    let mut scrapes = JoinSet::new();
    loop {
        while scrapes.try_join_next().is_some() {}
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or memory: let it pass rather than spin.
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_SCRAPES} scrapes in progress; connection closed");
            continue;
        };
        let source = source.clone();
        scrapes.spawn(async move {
            let _slot = slot;
            let answered = match conn {
                Conn::Tcp(s) => tokio::time::timeout(DEADLINE, answer(s, &source)).await,
                Conn::Unix(s) => tokio::time::timeout(DEADLINE, answer(s, &source)).await,
            };
            match answered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: scrape: {e}"),
                Err(_) => tracing::debug!("metrics: scrape not done within {DEADLINE:?}; closed"),
            }
        });
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(UnixStream),
}

/// Reads one request and writes its answer.
pub(super) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    source: &Source,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = http::head_end(&buf) {
            break end;
        }
        if buf.len() >= MAX_HEAD {
            stream
                .write_all(&http::refusal(Status::HeadTooLarge))
                .await?;
            return stream.shutdown().await;
        }
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            // Gone before the request was complete: nobody to answer.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let reply = match http::parse(&buf[..end]) {
        Ok(request) => match request.route {
            Route::Metrics => {
                let format = Format::from_accept(request.accept.as_deref());
                // The figures are read here (a short lock); encoding them is CPU work that
                // grows with the lines (255 lines: ~0.9 MB of text), done off the async
                // threads.
                let snapshot = source();
                let body = tokio::task::spawn_blocking(move || render(&snapshot, format))
                    .await
                    .map_err(io::Error::other)?;
                http::response(
                    Status::Ok,
                    format.content_type(),
                    body.as_bytes(),
                    request.head_only,
                )
            }
            Route::Index => http::response(
                Status::Ok,
                "text/plain; charset=utf-8",
                b"eqlplus-dialer: the metrics are at /metrics\n",
                request.head_only,
            ),
        },
        Err(status) => http::refusal(status),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}
