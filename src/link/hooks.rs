//! ip-up / ip-down hooks with pppd's arguments and environment, so existing scripts work:
//! `ip-up IFNAME DEVICE SPEED IPLOCAL IPREMOTE LINKNAME`, and the environment variables
//! IFNAME, DEVICE, SPEED, IPLOCAL, IPREMOTE, DNS1, DNS2, LINKNAME. They run in the background
//! and are killed after a timeout; their failure is logged, never fatal.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::LineConfig;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    Up,
    Down,
}

/// The configured hooks.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub ip_up: Option<PathBuf>,
    pub ip_down: Option<PathBuf>,
    pub timeout: Duration,
}

impl Hooks {
    /// Starts the hook for `event`, if one is configured.
    pub fn run(
        &self,
        event: HookEvent,
        line: &LineConfig,
        local: Ipv4Addr,
        peer: Ipv4Addr,
        dns: &[Ipv4Addr],
        speed: Option<u32>,
    ) {
        let program = match event {
            HookEvent::Up => self.ip_up.clone(),
            HookEvent::Down => self.ip_down.clone(),
        };
        let Some(program) = program else { return };
        let args = hook_args(line, local, peer, speed);
        let env = hook_env(line, local, peer, dns, speed);
        let timeout = self.timeout;
        tokio::spawn(async move {
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&args)
                .envs(env)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null());
            let result = tokio::time::timeout(timeout, async { cmd.status().await }).await;
            match result {
                Ok(Ok(status)) if status.success() => {
                    tracing::debug!(hook = %program.display(), "hook done")
                }
                Ok(Ok(status)) => {
                    tracing::warn!(hook = %program.display(), "hook failed: {status}")
                }
                Ok(Err(e)) => tracing::warn!(hook = %program.display(), "cannot run hook: {e}"),
                Err(_) => {
                    tracing::warn!(hook = %program.display(), "hook killed after {timeout:?}")
                }
            }
        });
    }
}

/// pppd's positional arguments: interface, tty, speed, local, remote, ipparam (the line name).
pub fn hook_args(
    line: &LineConfig,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    speed: Option<u32>,
) -> Vec<String> {
    vec![
        line.slave.clone(),
        line.device.display().to_string(),
        speed.unwrap_or(line.baud).to_string(),
        local.to_string(),
        peer.to_string(),
        line.name.clone(),
    ]
}

/// pppd's environment for ip-up/ip-down.
pub fn hook_env(
    line: &LineConfig,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    dns: &[Ipv4Addr],
    speed: Option<u32>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("IFNAME".to_string(), line.slave.clone()),
        ("DEVICE".to_string(), line.device.display().to_string()),
        ("SPEED".to_string(), speed.unwrap_or(line.baud).to_string()),
        ("IPLOCAL".to_string(), local.to_string()),
        ("IPREMOTE".to_string(), peer.to_string()),
        ("LINKNAME".to_string(), line.name.clone()),
    ];
    for (i, server) in dns.iter().take(2).enumerate() {
        env.push((format!("DNS{}", i + 1), server.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pppd_arguments_and_environment() {
        let c = crate::config::Config::parse(
            "[[line]]\ndevice = \"/dev/ttyS1\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let line = &c.lines[0];
        let local: Ipv4Addr = "10.64.1.2".parse().unwrap();
        let peer: Ipv4Addr = "10.64.1.1".parse().unwrap();
        assert_eq!(
            hook_args(line, local, peer, Some(57600)),
            [
                "eq-ttyS1",
                "/dev/ttyS1",
                "57600",
                "10.64.1.2",
                "10.64.1.1",
                "ttyS1"
            ]
        );
        let env = hook_env(line, local, peer, &["10.64.0.53".parse().unwrap()], None);
        assert!(env.contains(&("SPEED".into(), "115200".into())));
        assert!(env.contains(&("DNS1".into(), "10.64.0.53".into())));
        assert!(!env.iter().any(|(k, _)| k == "DNS2"));
        assert!(env.contains(&("LINKNAME".into(), "ttyS1".into())));
    }
}
