//! What machine a benchmark ran on, and the CPU time of a process (shared
//! by the benchmarks of this package; Linux `/proc` files, "unknown"
//! elsewhere).
// Each benchmark includes this file and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// CPUs, CPU model, memory, kernel, and the filesystem and path of `dir`
/// (shown with the label `dir_label`).
pub fn machine_info(dir: &Path, dir_label: &str) -> Vec<(String, String)> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: u64 = s
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".into());
    vec![
        ("CPUs (nproc)".into(), cpus.to_string()),
        ("CPU model".into(), cpu),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("filesystem".into(), filesystem_of(dir)),
        (dir_label.into(), dir.display().to_string()),
    ]
}

/// The mount holding `dir`, from `/proc/self/mounts` (longest matching mount point).
fn filesystem_of(dir: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let (dev, mnt, fstype) = (f[0], f[1].replace("\\040", " "), f[2]);
        if dir.starts_with(&mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() > *l) {
            best = Some((mnt.len(), format!("{fstype} on {dev} (mounted at {mnt})")));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, s)| s)
}

/// User + system CPU time of a process, in seconds (0 if it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_cpu_ticks(&s).unwrap_or(0) as f64 / clock_ticks() as f64
}

/// This process's CPU time so far (user + system, every thread, live or
/// ended), seconds; `None` without `/proc`.
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(stat_cpu_ticks(&stat)? as f64 / clock_ticks() as f64)
}

/// utime + stime (fields 14 and 15 of proc_pid_stat(5)), in clock ticks,
/// from the text of a `/proc/<pid>/stat` file.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, in parentheses, may hold spaces and parentheses; the
    // fields after its last ")" are fixed: state is field 3, so utime and
    // stime are at indices 11 and 12 of the rest.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    *T.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}
