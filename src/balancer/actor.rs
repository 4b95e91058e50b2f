//! The balancer as a task the line drivers talk to: every kernel change happens in one place,
//! one at a time, in the order asked. It also keeps the resolv.conf fragment with the DNS
//! servers of the live lines.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::kernel::{Balancer, BalancerError, Enslave};

/// How often the lines' load (queue depths, open connections) is folded into the policy
/// (least-loaded), at most: a page's objects take a fraction of a second on a modem line.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

enum Request {
    Enslave(Enslave, oneshot::Sender<Result<(), String>>),
    Emancipate(String, oneshot::Sender<()>),
    Load(String, u64),
    Shutdown(oneshot::Sender<Result<(), String>>),
}

/// A cheap handle to the balancer task.
#[derive(Clone)]
pub struct BalancerHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl BalancerHandle {
    /// Runs `balancer` as a task. `resolv_conf`, if given, is kept listing the live lines' DNS.
    pub fn spawn(
        balancer: Balancer,
        resolv_conf: Option<PathBuf>,
    ) -> (BalancerHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(balancer, rx, resolv_conf));
        (BalancerHandle { tx }, task)
    }

    /// Puts a line into the balance; the error says why not.
    pub async fn enslave(&self, spec: Enslave) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Enslave(spec, tx))
            .map_err(|_| "the balancer has stopped".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the balancer has stopped".into()))
    }

    /// Takes a line out of the balance (its connections are dropped).
    pub async fn emancipate(&self, line: &str) {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Request::Emancipate(line.to_string(), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Reports a line's transmit queue depth.
    pub fn set_load(&self, line: &str, queued_bytes: u64) {
        let _ = self.tx.send(Request::Load(line.to_string(), queued_bytes));
    }

    /// Removes all kernel state and stops the task.
    pub async fn shutdown(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Shutdown(tx))
            .map_err(|_| "the balancer has stopped".to_string())?;
        rx.await.unwrap_or(Ok(()))
    }
}

async fn run(
    mut balancer: Balancer,
    mut rx: mpsc::UnboundedReceiver<Request>,
    resolv_conf: Option<PathBuf>,
) {
    let mut dns: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut dirty = false;
    let mut failing = false;
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let request = tokio::select! {
            r = rx.recv() => r,
            _ = tick.tick(), if dirty || balancer.follows_load() => {
                dirty = false;
                let result = if balancer.follows_load() {
                    balancer.sample_load().await
                } else {
                    balancer.refresh().await
                };
                match result {
                    // Said once per streak of failures, not ten times a second.
                    Err(e) if !failing => {
                        tracing::warn!("balancer refresh: {e}");
                        failing = true;
                    }
                    Err(e) => tracing::debug!("balancer refresh: {e}"),
                    Ok(()) => failing = false,
                }
                continue;
            }
        };
        let Some(request) = request else { break };
        match request {
            Request::Enslave(spec, reply) => {
                let line = spec.line.clone();
                let servers = spec.dns.clone();
                let result = balancer.enslave(spec).await.map_err(|e| e.to_string());
                if result.is_ok() {
                    dns.insert(line, servers);
                    write_resolv_conf(resolv_conf.as_ref(), &dns);
                }
                let _ = reply.send(result);
            }
            Request::Emancipate(line, reply) => {
                if let Err(e) = balancer.emancipate(&line).await {
                    tracing::warn!(line = %line, "emancipate: {e}");
                }
                dns.remove(&line);
                write_resolv_conf(resolv_conf.as_ref(), &dns);
                let _ = reply.send(());
            }
            Request::Load(line, bytes) => {
                balancer.set_queued_bytes(&line, bytes);
                dirty = true;
            }
            Request::Shutdown(reply) => {
                dns.clear();
                write_resolv_conf(resolv_conf.as_ref(), &dns);
                let result = balancer
                    .shutdown()
                    .await
                    .map_err(|e: BalancerError| e.to_string());
                let _ = reply.send(result);
                return;
            }
        }
    }
}

/// The fragment: one `nameserver` per distinct server of the live lines, in line order.
fn render_resolv_conf(dns: &BTreeMap<String, Vec<Ipv4Addr>>) -> String {
    let mut out = String::from("# written by eqlplus-dialer: DNS servers of the live lines\n");
    let mut seen = Vec::new();
    for servers in dns.values() {
        for s in servers {
            if !seen.contains(s) && !s.is_unspecified() {
                seen.push(*s);
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
    }
    out
}

fn write_resolv_conf(path: Option<&PathBuf>, dns: &BTreeMap<String, Vec<Ipv4Addr>>) {
    let Some(path) = path else { return };
    let text = render_resolv_conf(dns);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Write a temporary file and rename it: readers never see half a file.
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!("cannot write {}: {e}", path.display());
        return;
    }
    // Hand it to resolvconf where it is installed, as pppd's ip-up scripts do.
    if which("resolvconf") {
        let status = std::process::Command::new("resolvconf")
            .args(["-a", "eqlplus-dialer"])
            .stdin(
                std::fs::File::open(path)
                    .map(Into::into)
                    .unwrap_or(std::process::Stdio::null()),
            )
            .status();
        if let Err(e) = status {
            tracing::debug!("resolvconf: {e}");
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lists_distinct_servers() {
        let mut dns = BTreeMap::new();
        dns.insert(
            "ttyS1".to_string(),
            vec!["10.64.0.53".parse().unwrap(), "10.64.0.53".parse().unwrap()],
        );
        dns.insert(
            "ttyS2".to_string(),
            vec!["10.65.0.53".parse().unwrap(), Ipv4Addr::UNSPECIFIED],
        );
        assert_eq!(
            render_resolv_conf(&dns),
            "# written by eqlplus-dialer: DNS servers of the live lines\nnameserver 10.64.0.53\nnameserver 10.65.0.53\n"
        );
    }
}
