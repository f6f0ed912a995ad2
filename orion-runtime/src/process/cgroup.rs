//! Limits on a task's memory and CPU: the node's cgroup hierarchy (v1 or
//! v2) where the agent may write it, else `setrlimit` for memory only.

use std::path::{Path, PathBuf};

use orion_core::runtime::RuntimeError;
use orion_core::spec::Resources;

/// How this node enforces task limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limits {
    /// cgroup v1: a task's directories under the memory and cpu hierarchies.
    V1 {
        /// `<root>/memory/orion`.
        memory: PathBuf,
        /// `<root>/cpu/orion`, when that hierarchy is writable too.
        cpu: Option<PathBuf>,
    },
    /// cgroup v2: a task's directory under `<root>/orion`.
    V2 {
        /// `<root>/orion`.
        dir: PathBuf,
    },
    /// No writable cgroup: memory capped by `RLIMIT_AS`, CPU not at all.
    Rlimit {
        /// Why no cgroup.
        why: String,
    },
}

/// Makes `dir` and checks a child of it can be made (the agent may write it).
fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("orion-probe-{}", std::process::id()));
    let ok = std::fs::create_dir_all(dir).is_ok() && std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

impl Limits {
    /// What this host allows under `root` (`/sys/fs/cgroup`; none: no cgroups).
    pub fn detect(root: Option<&Path>) -> Limits {
        let Some(root) = root else {
            return Limits::Rlimit {
                why: "cgroups are turned off".into(),
            };
        };
        if root.join("cgroup.controllers").exists() && !root.join("memory").is_dir() {
            let dir = root.join("orion");
            if writable(&dir) {
                // Let children use the memory and cpu controllers.
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu");
                return Limits::V2 { dir };
            }
            return Limits::Rlimit {
                why: format!("{} is not writable", dir.display()),
            };
        }
        let memory = root.join("memory/orion");
        if writable(&memory) {
            let cpu = root.join("cpu/orion");
            return Limits::V1 {
                memory,
                cpu: writable(&cpu).then_some(cpu),
            };
        }
        Limits::Rlimit {
            why: format!("{} is not writable", memory.display()),
        }
    }

    /// A line for `/health` and the logs.
    pub fn describe(&self) -> String {
        match self {
            Limits::V1 { cpu: Some(_), .. } => "cgroup v1 (memory, cpu)".into(),
            Limits::V1 { cpu: None, .. } => "cgroup v1 (memory; cpu not enforced)".into(),
            Limits::V2 { .. } => "cgroup v2 (memory, cpu)".into(),
            Limits::Rlimit { why } => format!(
                "NOT fully enforced: {why}; memory by setrlimit (address space), cpu not at all"
            ),
        }
    }

    /// A warning when limits are not fully enforced.
    pub fn warning(&self) -> Option<String> {
        match self {
            Limits::V1 { cpu: None, .. } | Limits::Rlimit { .. } => Some(self.describe()),
            _ => None,
        }
    }

    fn dirs(&self, id: &str) -> Vec<PathBuf> {
        match self {
            Limits::V1 { memory, cpu } => std::iter::once(memory.join(id))
                .chain(cpu.iter().map(|c| c.join(id)))
                .collect(),
            Limits::V2 { dir } => vec![dir.join(id)],
            Limits::Rlimit { .. } => Vec::new(),
        }
    }

    /// Makes task `id`'s cgroups with its limits; what the child does to
    /// enter them before it execs.
    pub fn prepare(&self, id: &str, r: &Resources) -> Result<Enter, RuntimeError> {
        let bytes = r.memory_mb.saturating_mul(1024 * 1024);
        let period = 100_000u64;
        let quota = ((r.cpu * period as f64).round() as u64).max(1_000);
        let fail = |p: &Path, e: std::io::Error| RuntimeError::Engine {
            op: "setting a task's limits",
            source: format!("{}: {e}", p.display()).into(),
        };
        let write = |p: PathBuf, v: String| std::fs::write(&p, v).map_err(|e| fail(&p, e));
        let mut procs = Vec::new();
        match self {
            Limits::V1 { memory, cpu } => {
                let m = memory.join(id);
                std::fs::create_dir_all(&m).map_err(|e| fail(&m, e))?;
                write(m.join("memory.limit_in_bytes"), bytes.to_string())?;
                // No swapping past the limit, where the kernel accounts swap.
                let _ = std::fs::write(m.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                let _ = std::fs::write(m.join("memory.swappiness"), "0");
                procs.push(m.join("cgroup.procs"));
                if let Some(c) = cpu {
                    let c = c.join(id);
                    std::fs::create_dir_all(&c).map_err(|e| fail(&c, e))?;
                    write(c.join("cpu.cfs_period_us"), period.to_string())?;
                    write(c.join("cpu.cfs_quota_us"), quota.to_string())?;
                    procs.push(c.join("cgroup.procs"));
                }
            }
            Limits::V2 { dir } => {
                let d = dir.join(id);
                std::fs::create_dir_all(&d).map_err(|e| fail(&d, e))?;
                write(d.join("memory.max"), bytes.to_string())?;
                let _ = std::fs::write(d.join("memory.swap.max"), "0");
                let _ = std::fs::write(d.join("cpu.max"), format!("{quota} {period}"));
                procs.push(d.join("cgroup.procs"));
            }
            Limits::Rlimit { .. } => {}
        }
        Ok(Enter {
            procs,
            address_space: matches!(self, Limits::Rlimit { .. }).then_some(bytes),
        })
    }

    /// Whether task `id`'s memory cgroup killed a process for its limit.
    pub fn oom_killed(&self, id: &str) -> bool {
        match self {
            Limits::V1 { memory, .. } => {
                let d = memory.join(id);
                let control =
                    std::fs::read_to_string(d.join("memory.oom_control")).unwrap_or_default();
                let kills = control
                    .lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match kills {
                    Some(n) => n > 0,
                    None => std::fs::read_to_string(d.join("memory.failcnt"))
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0),
                }
            }
            Limits::V2 { dir } => std::fs::read_to_string(dir.join(id).join("memory.events"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0),
            Limits::Rlimit { .. } => false,
        }
    }

    /// Memory task `id`'s cgroup charges now, when it has one.
    pub fn memory_usage(&self, id: &str) -> Option<u64> {
        let file = match self {
            Limits::V1 { memory, .. } => memory.join(id).join("memory.usage_in_bytes"),
            Limits::V2 { dir } => dir.join(id).join("memory.current"),
            Limits::Rlimit { .. } => return None,
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Removes task `id`'s cgroups (empty once its processes are gone).
    pub fn remove(&self, id: &str) {
        for d in self.dirs(id) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// How a child comes under its limits: `sh` runs first, moves itself into
/// the task's cgroups (or sets `ulimit -v`), then `exec`s the task, so the
/// task and everything it forks are limited from its first instruction
/// (`unsafe` code, which a `pre_exec` hook needs, is forbidden here).
#[derive(Debug)]
pub struct Enter {
    procs: Vec<PathBuf>,
    address_space: Option<u64>,
}

impl Enter {
    /// The `sh -c` script that enters the limits and runs `"$@"`.
    pub fn script(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            // Our own paths: no quote can be in them (task ids are DNS labels).
            s.push_str(&format!("echo $$ > '{}' || exit 125; ", p.display()));
        }
        if let Some(bytes) = self.address_space {
            s.push_str(&format!("ulimit -v {} || exit 125; ", bytes / 1024));
        }
        s.push_str("exec \"$@\"");
        s
    }
}
