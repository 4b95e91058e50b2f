//! The socket file's life: its directory, a stale socket replaced and a live one refused, its
//! mode and group, and its removal — only while it is still the file this server bound.

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::accept::{Admission, accept_loop};
use super::auth::Authority;
use super::{ControlHandler, Limits, ServerOptions};

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

/// Binds the control socket at `path` (see [`super::serve_with`] for what happens to the file);
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
    Ok(ControlListener {
        listener,
        server,
        authority: Arc::new(Authority::new(Uid::effective(), group)),
        limits: Limits::from(&options),
        admission: Admission::from(&options),
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
