//! What machine a benchmark ran on (shared by the benchmarks of this
//! package; Linux `/proc` files, "unknown" elsewhere).

use std::path::Path;

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
