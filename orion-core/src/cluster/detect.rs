//! What this host offers, when the operator does not say.

use crate::spec::Resources;

/// CPU cores from the scheduler's view of this process, memory from
/// `/proc/meminfo` (MemTotal); disk is not detected (0: set it to let tasks
/// reserve disk).
pub fn host_capacity() -> Resources {
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024);
    Resources {
        cpu,
        memory_mb,
        disk_mb: 0,
    }
}

/// This host's name, for a default node id.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node-1".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn capacity_is_positive() {
        let c = super::host_capacity();
        assert!(c.cpu >= 1.0 && c.memory_mb > 0);
        assert!(!super::host_name().is_empty());
    }
}
