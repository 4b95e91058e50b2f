//! What a process costs, from `/proc` (for the benchmarks and the soak test): its CPU time
//! and that of the children it waited for, and its resident memory.

use std::io;

/// CPU seconds (user + system) of a process, all its threads included, and of the children
/// it waited for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    pub own: f64,
    pub children: f64,
}

/// `/proc/PID/stat`'s utime + stime and cutime + cstime, in seconds.
pub fn cpu_times(pid: u32) -> io::Result<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    // utime, stime, cutime, cstime are fields 14–17 of stat(5): 12–15 after the name.
    let field = |i: usize| fields.get(i).copied().unwrap_or(0.0) / tick;
    Ok(CpuTimes {
        own: field(11) + field(12),
        children: field(13) + field(14),
    })
}

/// The process's resident memory (`VmRSS` of `/proc/PID/status`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(cpu_times(pid).unwrap().own > 0.0);
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_times(u32::MAX).is_err());
    }
}
