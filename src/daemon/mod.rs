//! `eqlplus-dialer daemon`: the supervisor in the foreground, for systemd. Signals: SIGTERM and
//! SIGINT hang every line up and remove all kernel state; SIGHUP reloads the configuration.

pub mod instance;
mod metrics;
pub mod notify;
pub mod supervisor;
mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Mutex, Notify};

use crate::control::{DaemonInfo, StartedBy};

pub use supervisor::{SharedSupervisor, Supervisor};

/// How often traffic counters are sampled for rates.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Who started this daemon: `up` says so (`daemon --detached`); systemd gives its services
/// `INVOCATION_ID`; anything else is a daemon run by hand.
pub fn started_by(detached: bool) -> StartedBy {
    if detached {
        StartedBy::Up
    } else if std::env::var_os("INVOCATION_ID").is_some()
        || std::env::var_os("NOTIFY_SOCKET").is_some()
    {
        StartedBy::Systemd
    } else {
        StartedBy::Hand
    }
}

/// Runs the daemon until SIGTERM/SIGINT or a `shutdown` request. Returns the process exit
/// code.
pub async fn run(config_path: &Path, started_by: StartedBy) -> i32 {
    let loaded = match crate::config::load(config_path) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return 1;
        }
    };
    let (mut terminate, mut interrupt, mut hangup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            eprintln!("eqlplus-dialer daemon: cannot install signal handlers");
            return 1;
        }
    };
    // Nothing of the kernel's is touched before this daemon knows it is the only one: a second
    // daemon started by hand must leave the running one's table, routes and DNS alone.
    let instance = match instance::InstanceLock::acquire() {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e}");
            return 1;
        }
    };
    let listener = match control::bind(&loaded.config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e}");
            return 1;
        }
    };
    // Opt-in; a port in use stops the daemon here, before any line is touched.
    let metrics = match metrics::bind(&loaded.config).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e}");
            return 1;
        }
    };
    let supervisor = match Supervisor::start(loaded).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e:#}");
            return 1;
        }
    };
    let registry = supervisor.registry();
    registry.set_daemon(DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_by,
    });
    let supervisor = Arc::new(Mutex::new(supervisor));
    let stop = Arc::new(Notify::new());
    let control = control::serve(listener, supervisor.clone(), registry.clone(), stop.clone());
    let metrics = metrics.map(|m| metrics::serve(m, registry.clone()));
    notify::notify("READY=1");
    tracing::info!("ready");
    if started_by == StartedBy::Up {
        // `up` reads our stderr until now (to show why a start failed); let it go, as
        // daemon(3) does, so that its end cannot break our writes.
        detach_stderr();
    }
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    let watchdog_every = notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    // Nothing in this loop waits for the supervisor: a reload that waits for lines to hang up
    // runs on its own task, so the watchdog keeps being fed.
    let mut reloading: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            () = stop.notified() => {
                tracing::info!("shutdown requested over the control socket");
                break;
            }
            _ = hangup.recv() => {
                if reloading.as_ref().is_some_and(|r| !r.is_finished()) {
                    tracing::info!("SIGHUP: a reload is already under way");
                    continue;
                }
                let supervisor = supervisor.clone();
                reloading = Some(tokio::spawn(async move {
                    notify::notify("RELOADING=1");
                    let answer = supervisor.lock().await.reload().await;
                    tracing::info!("SIGHUP: {answer:?}");
                    notify::notify("READY=1");
                }));
            }
            _ = sample.tick() => registry.sample(),
            _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
        }
    }
    notify::notify("STOPPING=1");
    tracing::info!("stopping: hanging up every line");
    drop(control);
    drop(metrics);
    shutdown(supervisor).await;
    drop(instance);
    0
}

/// Points stderr at /dev/null.
fn detach_stderr() {
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => {
            use std::os::fd::AsRawFd;
            if let Err(e) = nix::unistd::dup2(null.as_raw_fd(), 2) {
                tracing::warn!("cannot detach stderr: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot open /dev/null: {e}"),
    }
}

async fn shutdown(supervisor: SharedSupervisor) {
    supervisor.lock().await.shutdown().await;
}

/// The control socket, answered by the supervisor.
mod control {
    use std::sync::Arc;

    use tokio::sync::Notify;

    use crate::config::Config;
    use crate::control::server::{self, ControlHandler, ControlListener, ControlServer};
    use crate::control::{Request, Response, ServerOptions};

    use super::SharedSupervisor;
    use super::supervisor::LineRegistry;

    /// `reload` goes to the supervisor, `shutdown` to the daemon's main loop; everything else
    /// is answered from the line registry at once, even while a reload waits for lines.
    struct Handler {
        supervisor: SharedSupervisor,
        registry: LineRegistry,
        stop: Arc<Notify>,
    }

    impl ControlHandler for Handler {
        async fn handle(&self, request: Request) -> Response {
            match request {
                Request::Reload => self.supervisor.lock().await.reload().await,
                Request::Shutdown => {
                    // A stored permit: the main loop stops even if it is busy right now.
                    self.stop.notify_one();
                    Response::Ok {
                        message: "stopping: hanging up every line".into(),
                    }
                }
                other => self.registry.handle(other),
            }
        }
    }

    /// Binds the configured socket; fails if another daemon answers on it.
    pub(super) async fn bind(config: &Config) -> std::io::Result<ControlListener> {
        let options = ServerOptions {
            group: config.control.group.clone(),
            ..ServerOptions::default()
        };
        server::bind(&config.control.socket, options).await
    }

    pub(super) fn serve(
        listener: ControlListener,
        supervisor: SharedSupervisor,
        registry: LineRegistry,
        stop: Arc<Notify>,
    ) -> ControlServer {
        listener.serve(Arc::new(Handler {
            supervisor,
            registry,
            stop,
        }))
    }
}
