//! The CLI's side of the control socket: connect, send a request, read the answer (or a
//! stream of status reports for `subscribe`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{Envelope, PROTOCOL_VERSION, Request, Response};

/// Longest response line the client reads (a status report of many lines is a few KiB).
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// How long a request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket file, or nobody listening on it.
    #[error("eqlplus-dialer is not running (no control socket at {})", path.display())]
    NotRunning { path: PathBuf },
    /// The socket (or its directory) is not open to this user.
    #[error(
        "permission denied on {}: only root and members of the daemon's control group \
         ([control] group in its configuration) may use it; ask to be added \
         (usermod -aG GROUP USER, then log in again)",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The daemon closed the connection before answering.
    #[error("the daemon closed the connection without answering")]
    Closed,
    /// Not a response this client understands.
    #[error("bad answer from the daemon: {0}")]
    Protocol(String),
    #[error("no answer from the daemon within {}s", .0.as_secs())]
    Timeout(Duration),
}

impl ClientError {
    fn from_io(path: &Path, e: io::Error) -> ClientError {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { path }
            }
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
            _ => match e.raw_os_error() {
                // A path component that is not a directory: no socket there either.
                Some(libc::ENOTDIR) => ClientError::NotRunning { path },
                _ => ClientError::Io { path, source: e },
            },
        }
    }
}

/// One connection to the daemon; requests are answered in order.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| ClientError::from_io(path, e))?;
        let (read, writer) = stream.into_split();
        Ok(Client {
            path: path.to_path_buf(),
            reader: BufReader::new(read),
            writer,
        })
    }

    async fn send(&mut self, request: Request) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(&Envelope {
            version: PROTOCOL_VERSION,
            request,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ClientError::Closed,
            _ => ClientError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }

    /// The next response; `Ok(None)` when the daemon closed the connection.
    async fn receive(&mut self) -> Result<Option<Response>, ClientError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE_BYTES)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionReset => ClientError::Closed,
                _ => ClientError::Io {
                    path: self.path.clone(),
                    source: e,
                },
            })?;
        if n == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            if n as u64 >= MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "response longer than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            // The daemon went away in the middle of a line.
            return Err(ClientError::Closed);
        }
        serde_json::from_slice(&line).map_err(|e| {
            ClientError::Protocol(format!(
                "{e}: {}",
                String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end()
            ))
        })
    }

    /// Sends `request` and waits (at most [`REQUEST_TIMEOUT`]) for its response.
    ///
    /// `Subscribe` is better sent with [`Client::subscribe`]; here it returns the first report.
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let exchange = async {
            match self.send(request).await {
                Ok(()) => self.receive().await?.ok_or(ClientError::Closed),
                // A daemon that refuses a client (busy) may answer and close before the
                // request is written: its answer is still there to read.
                Err(ClientError::Closed) => match self.receive().await {
                    Ok(Some(response)) => Ok(response),
                    _ => Err(ClientError::Closed),
                },
                Err(e) => Err(e),
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?
    }

    /// Asks for a status report now and every `interval` (the daemon raises intervals below
    /// 100 ms to that).
    pub async fn subscribe(mut self, interval: Duration) -> Result<Subscription, ClientError> {
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.send(Request::Subscribe { interval_ms }).await?;
        Ok(Subscription {
            client: self,
            patience: interval
                .max(Duration::from_millis(100))
                .saturating_mul(3)
                .saturating_add(Duration::from_secs(10)),
        })
    }
}

/// Connects, sends one request and returns its response.
pub async fn request(path: &Path, request: Request) -> Result<Response, ClientError> {
    Client::connect(path).await?.request(request).await
}

/// Connects and subscribes to status reports every `interval`.
pub async fn subscribe(path: &Path, interval: Duration) -> Result<Subscription, ClientError> {
    Client::connect(path).await?.subscribe(interval).await
}

/// A stream of responses to `subscribe`: normally `Response::Status`; an `Error` response
/// ends it. Dropping it closes the connection, which ends the subscription in the daemon.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    /// How long to wait for the next report before giving up.
    patience: Duration,
}

impl Subscription {
    /// The next response, or `None` when the daemon closed the connection.
    pub async fn next(&mut self) -> Option<Result<Response, ClientError>> {
        match tokio::time::timeout(self.patience, self.client.receive()).await {
            Ok(result) => result.transpose(),
            Err(_) => Some(Err(ClientError::Timeout(self.patience))),
        }
    }

    /// The same as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<Response, ClientError>> {
        futures::stream::unfold(self, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
    }
}
