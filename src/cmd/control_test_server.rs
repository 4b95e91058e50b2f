//! `eqlplus-dialer control-test-server --socket PATH` (hidden): serves the canned daemon
//! ([`crate::control::canned`]) on a control socket until SIGINT or SIGTERM, so that
//! `status`, `watch`, `up`, `hangup` and `reload` can be tried without modems.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::ctl::exit;
use crate::control::canned::CannedHandler;
use crate::control::server::serve;

#[derive(Debug, clap::Args)]
pub struct ControlTestServerArgs {
    /// Where to listen.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Members of this group may control it.
    #[arg(long)]
    pub group: Option<String>,
}

pub async fn run(args: ControlTestServerArgs) -> i32 {
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("eqlplus-dialer: cannot catch signals: {e}");
            return exit::TROUBLE;
        }
    };
    let server = match serve(
        &args.socket,
        args.group.as_deref(),
        Arc::new(CannedHandler::new()),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eqlplus-dialer: {e}");
            return exit::TROUBLE;
        }
    };
    println!("listening on {}", args.socket.display());
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    exit::OK
}
