//! Publishing the live lines' DNS servers (pppd's `usepeerdns`), wherever the system looks:
//! - a resolv.conf fragment (always; path from `[daemon] resolv_conf`), handed to
//!   `resolvconf -a eqlplus-dialer` where resolvconf is installed, as pppd's ip-up scripts do;
//! - systemd-resolved, where it runs: each slave becomes a link with its line's servers
//!   (`resolvectl dns`, `default-route`), so queries leave by the line whose ISP answers them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sys::on_path;

/// How long a `resolvectl`/`resolvconf` call may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The DNS servers of the live lines, and where they are published.
pub struct DnsPublisher {
    resolv_conf: PathBuf,
    /// systemd-resolved answered `resolvectl status` at start.
    resolved: bool,
    /// line → (slave device, servers)
    lines: BTreeMap<String, (String, Vec<Ipv4Addr>)>,
    /// Wakes the task that hands the fragment to resolvconf (where installed): one run at a
    /// time, always of the latest fragment, never on the balancer's task.
    resolvconf: Option<tokio::sync::watch::Sender<()>>,
}

impl DnsPublisher {
    /// Looks for systemd-resolved once; writes the (empty) fragment.
    pub async fn new(resolv_conf: PathBuf) -> DnsPublisher {
        let resolved = run_tool("resolvectl", &["--no-pager", "status"]).await;
        if resolved {
            tracing::info!("systemd-resolved runs: each line's DNS goes to its slave link");
        }
        let resolvconf = on_path("resolvconf").then(|| {
            let (tx, mut rx) = tokio::sync::watch::channel(());
            let path = resolv_conf.clone();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let fragment = std::fs::File::open(&path).ok();
                    if !run_tool_with_input("resolvconf", &["-a", "eqlplus-dialer"], fragment).await
                    {
                        tracing::debug!("resolvconf -a eqlplus-dialer failed");
                    }
                }
            });
            tx
        });
        let publisher = DnsPublisher {
            resolv_conf,
            resolved,
            lines: BTreeMap::new(),
            resolvconf,
        };
        publisher.write_resolv_conf();
        publisher
    }

    pub fn line_up(&mut self, line: String, device: String, servers: Vec<Ipv4Addr>) {
        let servers: Vec<Ipv4Addr> = servers
            .into_iter()
            .filter(|s| !s.is_unspecified())
            .collect();
        if self.resolved && !servers.is_empty() {
            let mut dns = vec!["dns".to_string(), device.clone()];
            dns.extend(servers.iter().map(ToString::to_string));
            let route = ["default-route".to_string(), device.clone(), "yes".into()];
            // In the background: the balancer never waits on D-Bus.
            tokio::spawn(async move {
                let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
                let route: Vec<&str> = route.iter().map(String::as_str).collect();
                if !(run_tool("resolvectl", &dns).await && run_tool("resolvectl", &route).await) {
                    tracing::warn!("resolvectl {}: failed", dns.join(" "));
                }
            });
        }
        self.lines.insert(line, (device, servers));
        self.write_resolv_conf();
    }

    pub fn line_down(&mut self, line: &str) {
        if let Some((device, _)) = self.lines.remove(line) {
            self.revert_link(device);
            self.write_resolv_conf();
        }
    }

    /// Every line down: the fragment is written once, not once per line.
    pub fn all_down(&mut self) {
        for (device, _) in std::mem::take(&mut self.lines).into_values() {
            self.revert_link(device);
        }
        self.write_resolv_conf();
    }

    /// The slave usually goes with the line, and resolved with it; a slave that stays must
    /// not keep answering for DNS.
    fn revert_link(&self, device: String) {
        if self.resolved {
            tokio::spawn(async move {
                run_tool("resolvectl", &["revert", &device]).await;
            });
        }
    }

    fn write_resolv_conf(&self) {
        let text = render_resolv_conf(self.lines.values().map(|(_, servers)| servers));
        let path = &self.resolv_conf;
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
        if let Some(resolvconf) = &self.resolvconf {
            resolvconf.send_replace(());
        }
    }
}

/// The fragment: one `nameserver` per distinct server of the live lines, in line order.
fn render_resolv_conf<'a>(lines: impl Iterator<Item = &'a Vec<Ipv4Addr>>) -> String {
    let mut out = String::from("# written by eqlplus-dialer: DNS servers of the live lines\n");
    let mut seen = Vec::new();
    for servers in lines {
        for s in servers {
            if !seen.contains(s) && !s.is_unspecified() {
                seen.push(*s);
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
    }
    out
}

/// Runs a helper program quietly; whether it ran and succeeded within the time limit.
async fn run_tool(program: &str, args: &[&str]) -> bool {
    run_tool_with_input(program, args, None).await
}

/// [`run_tool`], with `input` as the program's standard input.
async fn run_tool_with_input(program: &str, args: &[&str], input: Option<std::fs::File>) -> bool {
    if !on_path(program) {
        return false;
    }
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(input.map_or_else(std::process::Stdio::null, Into::into))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(TOOL_TIMEOUT, child).await, Ok(Ok(s)) if s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lists_distinct_servers() {
        let lines = [
            vec!["10.64.0.53".parse().unwrap(), "10.64.0.53".parse().unwrap()],
            vec!["10.65.0.53".parse().unwrap(), Ipv4Addr::UNSPECIFIED],
        ];
        assert_eq!(
            render_resolv_conf(lines.iter()),
            "# written by eqlplus-dialer: DNS servers of the live lines\nnameserver 10.64.0.53\nnameserver 10.65.0.53\n"
        );
    }
}
