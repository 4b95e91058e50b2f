//! Network namespaces for the simulated world (the demo) and the tests: created with
//! iproute2, deleted on drop, and entered by threads that then own sockets, netlink
//! connections and child processes in them. Only addresses inside these namespaces are used.

use std::fs::File;
use std::io;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists for the life of this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `eqt<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> io::Result<Netns> {
        Netns::named("eqt", role)
    }

    /// Creates `<prefix><pid>-<n>-<role>` with loopback up.
    pub fn named(prefix: &str, role: &str) -> io::Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{n}-{role}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        // From here on, dropping `ns` deletes the namespace again.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS…`; an error if it fails.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all).map(drop)
    }

    /// `ip netns exec NAME ARGS…`; its stdout, or an error if it fails.
    pub fn exec(&self, args: &[&str]) -> io::Result<String> {
        self.checked(args, self.try_exec(args)?)
    }

    /// The stdout of a command run in this namespace, or an error with its stderr.
    fn checked(&self, args: &[&str], out: Output) -> io::Result<String> {
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{:?} in {} failed: {}",
                args,
                self.name,
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip netns exec NAME ARGS…` with `input` on its standard input; its stdout, or an
    /// error if it fails.
    pub fn exec_stdin(&self, args: &[&str], input: &str) -> io::Result<String> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("run ip netns exec: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        self.checked(args, child.wait_with_output()?)
    }

    /// `ip netns exec NAME ARGS…`, whatever its outcome (an error only if it cannot run).
    pub fn try_exec(&self, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("run ip netns exec: {e}")))
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, setting: &str) -> io::Result<()> {
        self.exec(&["sysctl", "-q", "-w", setting]).map(drop)
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets, netlink connections
    /// and child processes created there belong to it. An error if the thread cannot enter
    /// it (then `f` does not run); a panic in `f` goes on in the caller.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        match self.spawn(f)?.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Like [`run`](Self::run), but returns with the thread's handle as soon as the thread is
    /// in the namespace (an error, and `f` not run, if it cannot get there).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<T>> {
        let path = format!("/run/netns/{}", self.name);
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let inside = enter(&path);
            let ok = inside.is_ok();
            let _ = entered_tx.send(inside);
            if !ok {
                // Never run `f` outside the namespace: this thread ends here, and the caller
                // has the error.
                std::panic::resume_unwind(Box::new("not in the namespace"));
            }
            f()
        });
        match entered.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other(format!(
                "the thread entering {} died",
                self.name
            ))),
        }
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) -> io::Result<()> {
    let file =
        File::open(path).map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("enter {path}: {e}")))
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a` (named `a_if`) to `b` (named `b_if`).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])
}

/// Runs a command; its stdout, or an error naming it if it cannot run or fails.
pub fn sh(args: &[&str]) -> io::Result<String> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command to run"))?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run {args:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes namespaces `<prefix><pid>-…` whose creating process is gone (a run that was killed
/// before it could clean up).
pub fn remove_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            tracing::info!(namespace = name, "removing a stale namespace");
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}
