//! What this host offers, when the operator does not say.

use std::path::{Path, PathBuf};

use crate::spec::Resources;

/// CPU cores from the scheduler's view of this process (which honours a cgroup CPU
/// quota and affinity); memory from `/proc/meminfo` (MemTotal), or the process's
/// cgroup memory limit when lower (a node run in a container with `--memory`);
/// disk is not detected here (0): `orion-node` fills it from the data directory's
/// file system, an embedder sets it to let tasks reserve disk.
pub fn host_capacity() -> Resources {
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let total = read(Path::new("/proc/meminfo")).and_then(|t| meminfo_total(&t));
    let limit = read(Path::new("/proc/self/cgroup")).and_then(|groups| {
        cgroup_limit_files(Path::new("/sys/fs/cgroup"), &groups)
            .iter()
            .filter_map(|f| read(f).and_then(|t| cgroup_limit(&t)))
            .min()
    });
    let bytes = match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (t, l) => t.or(l).unwrap_or(1 << 30),
    };
    Resources {
        cpu,
        memory_mb: bytes / (1024 * 1024),
        disk_mb: 0,
    }
}

/// MemTotal of `/proc/meminfo`, in bytes.
fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A cgroup memory limit file's value in bytes; none for `max` (v2) or the
/// page-rounded `i64::MAX` that v1 reports when no limit is set.
fn cgroup_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// Where this process's memory limit may be: the limit files of its own cgroup and
/// of every group above it (v2 `memory.max`, v1 `memory.limit_in_bytes`), since a
/// limit on a parent (a systemd slice) binds too; the lowest found applies. A
/// container with its own cgroup namespace sees its group as the root.
fn cgroup_limit_files(root: &Path, proc_cgroup: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut group = Some(Path::new(path.trim_start_matches('/')));
        while let Some(g) = group {
            files.push(base.join(g).join(file));
            group = g.parent();
        }
    }
    files
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
    use super::*;

    #[test]
    fn capacity_is_positive() {
        let c = host_capacity();
        assert!(c.cpu >= 1.0 && c.memory_mb > 0);
        assert!(!host_name().is_empty());
    }

    #[test]
    fn memory_is_the_lower_of_the_host_and_the_cgroup_limit() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(cgroup_limit("max\n"), None, "v2: no limit");
        assert_eq!(cgroup_limit("9223372036854771712\n"), None, "v1: no limit");

        let root = Path::new("/sys/fs/cgroup");
        let v2 = cgroup_limit_files(root, "0::/system.slice/orion.service\n");
        assert_eq!(
            v2,
            [
                root.join("system.slice/orion.service/memory.max"),
                root.join("system.slice/memory.max"),
                root.join("memory.max")
            ]
        );
        let v1 = cgroup_limit_files(root, "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n");
        assert_eq!(
            v1,
            [
                root.join("memory/docker/abc/memory.limit_in_bytes"),
                root.join("memory/docker/memory.limit_in_bytes"),
                root.join("memory/memory.limit_in_bytes"),
            ]
        );
        assert_eq!(
            cgroup_limit_files(root, "0::/\n"),
            [root.join("memory.max")]
        );
    }

    #[test]
    fn the_lowest_limit_of_the_group_and_its_parents_applies() {
        // The limit files read from a cgroup tree of our own: the parent slice
        // limits harder than the node's own group.
        let dir = tempfile::tempdir().unwrap();
        let slice = dir.path().join("memory/slice");
        let group = slice.join("orion");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        std::fs::write(slice.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        std::fs::write(
            dir.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let limit = cgroup_limit_files(dir.path(), "4:memory:/slice/orion\n")
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .filter_map(|t| cgroup_limit(&t))
            .min();
        assert_eq!(limit, Some(512 << 20));
    }
}
