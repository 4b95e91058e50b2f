//! ip-up / ip-down hooks with pppd's arguments and environment, so existing scripts work:
//! `ip-up IFNAME DEVICE SPEED IPLOCAL IPREMOTE LINKNAME`, and the environment variables
//! IFNAME, DEVICE, SPEED, IPLOCAL, IPREMOTE, DNS1, DNS2, LINKNAME. As in pppd the environment
//! is otherwise clean: only a standard PATH, nothing of the daemon's own.
//!
//! They run in the background, each in a process group of its own; after the timeout the whole
//! group is killed (SIGTERM, a short grace, SIGKILL), so a hook's children do not outlive it.
//! Their failure is logged, never fatal. [`Hooks::run`] hands back the hook's task so the
//! daemon can wait for ip-down hooks before it exits.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::task::JoinHandle;

use crate::config::LineConfig;

/// pppd's PATH for its scripts.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Between SIGTERM and SIGKILL to a timed-out hook's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

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

/// What the hooks are told about an IP link. Taken once when IP comes up, and given unchanged
/// to ip-down (which used to see the configured baud instead of the CONNECT speed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookLink {
    /// The tty the line is on (a by-id link as configured; a USB match's tty).
    pub device: PathBuf,
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// The CONNECT speed, where the modem reported one.
    pub speed: Option<u32>,
}

impl Hooks {
    /// How long a hook may take, kill included: what a caller waiting for it should allow.
    pub fn bound(&self) -> Duration {
        self.timeout + KILL_GRACE + Duration::from_secs(1)
    }

    /// Starts the hook for `event`, if one is configured; the task ends when the hook (or, after
    /// the timeout, its process group) is gone.
    pub fn run(
        &self,
        event: HookEvent,
        line: &LineConfig,
        link: &HookLink,
    ) -> Option<JoinHandle<()>> {
        let program = match event {
            HookEvent::Up => self.ip_up.clone(),
            HookEvent::Down => self.ip_down.clone(),
        }?;
        let args = hook_args(line, link);
        let env = hook_env(line, link);
        let timeout = self.timeout;
        Some(tokio::spawn(run_hook(program, args, env, timeout)))
    }
}

async fn run_hook(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
) {
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args)
        .env_clear()
        .env("PATH", HOOK_PATH)
        .envs(env)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = %program.display(), "cannot run hook: {e}");
            return;
        }
    };
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::debug!(hook = %program.display(), "hook done")
        }
        Ok(Ok(status)) => tracing::warn!(hook = %program.display(), "hook failed: {status}"),
        Ok(Err(e)) => tracing::warn!(hook = %program.display(), "cannot wait for hook: {e}"),
        Err(_) => {
            tracing::warn!(hook = %program.display(), "hook killed after {timeout:?}");
            if let Some(group) = group {
                kill_group(&program, group, &mut child).await;
            }
        }
    }
}

/// SIGTERM to the hook's process group, SIGKILL after [`KILL_GRACE`] to whatever is left of
/// it (the hook itself or children that ignore SIGTERM); the hook is reaped.
async fn kill_group(program: &Path, group: i32, child: &mut tokio::process::Child) {
    let pgid = Pid::from_raw(group);
    if let Err(e) = killpg(pgid, Signal::SIGTERM) {
        tracing::debug!(hook = %program.display(), "SIGTERM to hook group {group}: {e}");
    }
    // Until the whole group is gone (the leader reaped, so a zombie does not count) or the
    // grace is over: the group outlives its leader as long as a child of it lives.
    let deadline = tokio::time::Instant::now() + KILL_GRACE;
    loop {
        let _ = child.try_wait();
        if killpg(pgid, None) == Err(nix::errno::Errno::ESRCH) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match killpg(pgid, Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::debug!(hook = %program.display(), "SIGKILL to hook group {group}: {e}"),
    }
    let _ = child.wait().await;
}

/// pppd's positional arguments: interface, tty, speed, local, remote, ipparam (the line name).
pub fn hook_args(line: &LineConfig, link: &HookLink) -> Vec<String> {
    vec![
        line.slave.clone(),
        link.device.display().to_string(),
        link.speed.unwrap_or(line.baud).to_string(),
        link.local.to_string(),
        link.peer.to_string(),
        line.name.clone(),
    ]
}

/// pppd's environment for ip-up/ip-down.
pub fn hook_env(line: &LineConfig, link: &HookLink) -> Vec<(String, String)> {
    let mut env = vec![
        ("IFNAME".to_string(), line.slave.clone()),
        ("DEVICE".to_string(), link.device.display().to_string()),
        (
            "SPEED".to_string(),
            link.speed.unwrap_or(line.baud).to_string(),
        ),
        ("IPLOCAL".to_string(), link.local.to_string()),
        ("IPREMOTE".to_string(), link.peer.to_string()),
        ("LINKNAME".to_string(), line.name.clone()),
    ];
    for (i, server) in link.dns.iter().take(2).enumerate() {
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
        assert_eq!(
            hook_args(line, &link(Some(57600))),
            [
                "eq-ttyS1",
                "/dev/ttyS1",
                "57600",
                "10.64.1.2",
                "10.64.1.1",
                "ttyS1"
            ]
        );
        let one_dns = HookLink {
            dns: vec!["10.64.0.53".parse().unwrap()],
            ..link(None)
        };
        let env = hook_env(line, &one_dns);
        assert!(env.contains(&("SPEED".into(), "115200".into())));
        assert!(env.contains(&("DEVICE".into(), "/dev/ttyS1".into())));
        assert!(env.contains(&("DNS1".into(), "10.64.0.53".into())));
        assert!(!env.iter().any(|(k, _)| k == "DNS2"));
        assert!(env.contains(&("LINKNAME".into(), "ttyS1".into())));
    }

    fn line() -> LineConfig {
        crate::config::Config::parse(
            "[[line]]\ndevice = \"/dev/ttyS1\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap()
        .lines
        .remove(0)
    }

    fn link(speed: Option<u32>) -> HookLink {
        HookLink {
            device: PathBuf::from("/dev/ttyS1"),
            local: "10.64.1.2".parse().unwrap(),
            peer: "10.64.1.1".parse().unwrap(),
            dns: vec!["10.64.0.53".parse().unwrap(), "10.64.0.54".parse().unwrap()],
            speed,
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Gone, or a zombie nobody has reaped yet (PID 1 in a container may be slow to).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_hooks_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // One grandchild that dies on SIGTERM, one that ignores it (SIGKILL after the grace).
        let hook = script(
            dir.path(),
            "ip-up",
            &format!(
                "sleep 60 &\necho $! > {p}.1\n(trap '' TERM; exec sleep 61) &\necho $! > {p}.2\nwait",
                p = pids.display()
            ),
        );
        let hooks = Hooks {
            ip_up: Some(hook),
            ip_down: None,
            timeout: Duration::from_millis(300),
        };
        let task = hooks.run(HookEvent::Up, &line(), &link(None)).unwrap();
        tokio::time::timeout(hooks.bound(), task)
            .await
            .expect("the hook's task ends within its bound")
            .unwrap();
        for n in [1, 2] {
            let pid: i32 = std::fs::read_to_string(format!("{}.{n}", pids.display()))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let started = std::time::Instant::now();
            while !gone(pid) && started.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !gone(pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                panic!("grandchild {n} (pid {pid}) survived the hook's timeout");
            }
        }
    }

    #[tokio::test]
    async fn hooks_get_a_clean_pppd_environment_and_are_awaitable() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.out");
        let hook = script(
            dir.path(),
            "ip-up",
            &format!("sleep 0.2\nenv > {}", out.display()),
        );
        let hooks = Hooks {
            ip_up: Some(hook),
            ip_down: None,
            timeout: Duration::from_secs(10),
        };
        let task = hooks
            .run(HookEvent::Up, &line(), &link(Some(57600)))
            .unwrap();
        // Awaiting the task waits for the hook itself.
        task.await.unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        let vars: Vec<&str> = env.lines().collect();
        // No variable of the daemon's own reaches the hook: this process's (cargo gives a test
        // run several, CARGO_PKG_NAME among them) are read, not one set, since setting one
        // races the other tests' threads reading the environment. PATH is the hook's own, and
        // its shell may set the others itself.
        for (key, value) in std::env::vars() {
            if ["PATH", "PWD", "OLDPWD", "SHLVL", "_"].contains(&key.as_str()) {
                continue;
            }
            let leaked = format!("{key}={value}");
            assert!(!vars.contains(&leaked.as_str()), "{key} leaked: {env}");
        }
        assert!(!vars.iter().any(|v| v.starts_with("HOME=")), "{env}");
        assert!(
            vars.contains(&format!("PATH={HOOK_PATH}").as_str()),
            "{env}"
        );
        for expected in [
            "IFNAME=eq-ttyS1",
            "DEVICE=/dev/ttyS1",
            "SPEED=57600",
            "IPLOCAL=10.64.1.2",
            "IPREMOTE=10.64.1.1",
            "DNS1=10.64.0.53",
            "DNS2=10.64.0.54",
            "LINKNAME=ttyS1",
        ] {
            assert!(vars.contains(&expected), "{expected} missing: {env}");
        }
        assert!(hooks.run(HookEvent::Down, &line(), &link(None)).is_none());
    }

    #[tokio::test]
    async fn ip_down_gets_the_connect_speed_not_the_baud() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("down.out");
        let hook = script(
            dir.path(),
            "ip-down",
            &format!("echo \"$3 $SPEED\" > {}", out.display()),
        );
        let hooks = Hooks {
            ip_up: None,
            ip_down: Some(hook),
            timeout: Duration::from_secs(10),
        };
        let line = line();
        assert_eq!(line.baud, 115_200);
        hooks
            .run(HookEvent::Down, &line, &link(Some(31200)))
            .unwrap()
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "31200 31200\n");
    }
}
