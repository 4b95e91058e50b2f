//! `eqlplus-dialer daemon`: the supervisor in the foreground, for systemd. Signals: SIGTERM and
//! SIGINT hang every line up and remove all kernel state; SIGHUP reloads the configuration.

pub mod notify;
pub mod supervisor;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

pub use supervisor::{SharedSupervisor, Supervisor};

/// How often traffic counters are sampled for rates.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path) -> i32 {
    let config = match supervisor::load_checked(config_path) {
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
    let supervisor = match Supervisor::start(config).await {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e:#}");
            return 1;
        }
    };
    let control = match control::start(supervisor.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eqlplus-dialer daemon: {e}");
            shutdown(supervisor).await;
            return 1;
        }
    };
    notify::notify("READY=1");
    tracing::info!("ready");
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    let watchdog_every = notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut watchdog = tokio::time::interval(watchdog_every);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                notify::notify("RELOADING=1");
                let answer = supervisor.lock().await.reload().await;
                tracing::info!("SIGHUP: {answer:?}");
                notify::notify("READY=1");
            }
            _ = sample.tick() => supervisor.lock().await.sample(),
            _ = watchdog.tick() => notify::notify("WATCHDOG=1"),
        }
    }
    notify::notify("STOPPING=1");
    tracing::info!("stopping: hanging up every line");
    drop(control);
    shutdown(supervisor).await;
    0
}

async fn shutdown(supervisor: SharedSupervisor) {
    supervisor.lock().await.shutdown().await;
}

/// The control socket, answered by the supervisor.
mod control {
    use std::sync::Arc;

    use crate::control::server::{ControlHandler, ControlServer, serve};
    use crate::control::{Request, Response};

    use super::SharedSupervisor;

    struct Handler(SharedSupervisor);

    impl ControlHandler for Handler {
        async fn handle(&self, request: Request) -> Response {
            self.0.lock().await.handle(request).await
        }
    }

    pub async fn start(supervisor: SharedSupervisor) -> std::io::Result<ControlServer> {
        let (path, group) = supervisor.lock().await.control();
        serve(&path, group.as_deref(), Arc::new(Handler(supervisor))).await
    }
}
