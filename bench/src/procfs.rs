//! Readings from /proc: resident memory and CPU time of processes, and
//! pinning the generator to its core.

use anyhow::Context;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Resident memory of `pid` and all its threads, in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// Resident memory of `pid` and its child processes (ejabberd's beam.smp
/// runs under a shell, for example).
pub fn tree_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let mut total = rss_bytes(pid)?;
    for child in children(pid) {
        total += tree_rss_bytes(child).unwrap_or(0);
    }
    Ok(total)
}

/// CPU time (user + system) of `pid` and its children's threads, in seconds.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_cpu(&s))
        .unwrap_or(0.0);
    own + children(pid).into_iter().map(tree_cpu_seconds).sum::<f64>()
}

/// CPU time of this process so far, in seconds.
pub fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_cpu(&s))
        .unwrap_or(0.0)
}

/// utime + stime from a /proc/PID/stat line (fields 14 and 15, counted
/// after the parenthesised command name, which may hold spaces).
fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// Child processes of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Pins this process (its threads started from now on) to `cpu`.
pub fn pin_self(cpu: usize) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-cp",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (package util-linux)")?;
    anyhow::ensure!(
        status.success(),
        "taskset could not pin the generator to core {cpu}"
    );
    Ok(())
}

/// The number of cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_reads_utime_and_stime_after_a_command_name_with_spaces() {
        let line = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(stat_cpu(line), Some(3.0));
    }

    #[test]
    fn own_process_has_memory_and_cpu() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(own_cpu_seconds() >= 0.0);
    }
}
