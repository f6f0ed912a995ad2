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
    capacity_from(cpu, Path::new("/proc"), Path::new("/sys/fs/cgroup"))
}

/// [`host_capacity`] with `cpu` cores, reading `<proc>/meminfo`, `<proc>/self/cgroup`
/// and the limit files under the cgroup file system at `cgroup_root`.
fn capacity_from(cpu: f64, proc: &Path, cgroup_root: &Path) -> Resources {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let total = read(&proc.join("meminfo")).and_then(|t| meminfo_total(&t));
    let limit = read(&proc.join("self/cgroup")).and_then(|groups| {
        cgroup_limit_files(cgroup_root, &groups)
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
    fn host_name_is_not_empty() {
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

    /// A `/proc` and a cgroup tree of our own, read by the production pipeline.
    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new(meminfo_kb: Option<u64>, proc_cgroup: &str) -> Host {
            let dir = tempfile::tempdir().unwrap();
            let proc = dir.path().join("proc");
            std::fs::create_dir_all(proc.join("self")).unwrap();
            if let Some(kb) = meminfo_kb {
                let text = format!("MemTotal:       {kb} kB\nMemFree:  100 kB\n");
                std::fs::write(proc.join("meminfo"), text).unwrap();
            }
            std::fs::write(proc.join("self/cgroup"), proc_cgroup).unwrap();
            Host { dir }
        }

        fn limit(&self, group: &str, file: &str, value: &str) -> &Self {
            let at = self.dir.path().join("cgroup").join(group);
            std::fs::create_dir_all(&at).unwrap();
            std::fs::write(at.join(file), value).unwrap();
            self
        }

        fn capacity(&self) -> Resources {
            let root = self.dir.path();
            capacity_from(2.0, &root.join("proc"), &root.join("cgroup"))
        }
    }

    #[test]
    fn the_lowest_limit_of_the_group_and_its_parents_applies() {
        // v1: the parent slice limits harder than the node's own group; the root
        // reports "no limit".
        let host = Host::new(Some(4 << 20), "5:cpu:/x\n4:memory:/slice/orion\n");
        host.limit(
            "memory/slice/orion",
            "memory.limit_in_bytes",
            "1073741824\n",
        )
        .limit("memory/slice", "memory.limit_in_bytes", "536870912\n")
        .limit("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        let c = host.capacity();
        assert_eq!((c.cpu, c.memory_mb, c.disk_mb), (2.0, 512, 0));
    }

    #[test]
    fn v2_limits_apply_and_the_host_total_wins_when_lower() {
        let host = Host::new(Some(4 << 20), "0::/system.slice/orion.service\n");
        host.limit("system.slice/orion.service", "memory.max", "max\n")
            .limit("system.slice", "memory.max", "2147483648\n");
        assert_eq!(host.capacity().memory_mb, 2048, "the slice's limit");

        let small = Host::new(Some(1 << 20), "0::/system.slice/orion.service\n");
        small.limit("system.slice", "memory.max", "2147483648\n");
        assert_eq!(
            small.capacity().memory_mb,
            1024,
            "MemTotal, lower than the limit"
        );

        let unlimited = Host::new(Some(3 << 20), "0::/\n");
        unlimited.limit("", "memory.max", "max\n");
        assert_eq!(unlimited.capacity().memory_mb, 3072, "no limit: MemTotal");
    }

    #[test]
    fn a_limit_without_meminfo_applies_and_nothing_readable_gives_one_gib() {
        let host = Host::new(None, "0::/c\n");
        host.limit("c", "memory.max", "805306368\n");
        assert_eq!(host.capacity().memory_mb, 768);
        assert_eq!(Host::new(None, "").capacity().memory_mb, 1024);
    }

    #[test]
    fn this_host_reads_its_own_proc_through_the_same_pipeline() {
        // The production entry point reads the real /proc: on Linux MemTotal is
        // there, so the fallback (1 GiB exactly) is not what it reports unless
        // the host really has that.
        let c = host_capacity();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_mb = meminfo_total(&meminfo).unwrap() / (1024 * 1024);
        assert!(
            c.memory_mb > 0 && c.memory_mb <= total_mb,
            "{c:?} vs {total_mb}"
        );
        assert_eq!(
            c.cpu,
            std::thread::available_parallelism().unwrap().get() as f64
        );
    }
}
