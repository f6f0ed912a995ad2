//! The secrets of this node's tasks: opened only for the tasks this node
//! runs, and never written to disk.
//!
//! ```text
//!  launch of an allocation whose task uses secrets
//!     │  sealed versions from the replica ──► open with the node's data key
//!     ▼
//!  <dir>/<cluster>-<node>/<alloc>/<i>-<name>   (dir on tmpfs, checked in
//!     │                                         /proc/mounts: refused if not)
//!     ▼  mode as the spec says, owned by the task's numeric user
//!  bind-mounted read-only at the secret's target; env_from_secret values in
//!  TaskLaunch::secret_env (they reach the engine's create call only)
//!     │
//!     ▼
//!  removed with the allocation's container, when its start fails, and on
//!  every pass for allocations this node no longer runs (so after a restart)
//! ```
//!
//! The default directory, `/dev/shm/orion-secrets`, is on a tmpfs on Linux:
//! the files live in memory (and may go to swap, as any process memory),
//! vanish at reboot, and are readable by root and the agent's user on the
//! node. The per-node subdirectory keeps nodes that share a host (tests, a
//! development cluster) from removing each other's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::runtime::RuntimeError;
use crate::secret::{DataKey, Plaintext, SecretVersion};
use crate::spec::{Security, TaskSpec, VolumeMount};
use crate::state::ClusterState;

/// Where a node writes its tasks' secret files unless told otherwise: on
/// Linux, `/dev/shm` is a tmpfs.
pub const DEFAULT_SECRETS_DIR: &str = "/dev/shm/orion-secrets";

/// File systems that keep files in memory only.
const MEMORY_FS: [&str; 2] = ["tmpfs", "ramfs"];

/// This node's data key and where its tasks' secret files go.
#[derive(Clone, Debug)]
pub struct SecretFiles {
    /// The cluster's data key as this node holds it; without one, a task
    /// that uses secrets is not placed here (the scheduler sees the node's
    /// key id), and one that comes anyway fails to start saying why.
    pub key: Option<DataKey>,
    /// The directory (on a tmpfs) the files are written under.
    pub dir: PathBuf,
}

impl Default for SecretFiles {
    fn default() -> Self {
        SecretFiles {
            key: None,
            dir: PathBuf::from(DEFAULT_SECRETS_DIR),
        }
    }
}

fn failed(op: &'static str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine {
        op,
        source: why.to_string().into(),
    }
}

impl SecretFiles {
    /// The directory of one node of one cluster.
    pub fn node_dir(&self, cluster_id: &str, node_id: &str) -> PathBuf {
        let cluster: String = cluster_id.chars().take(8).collect();
        self.dir.join(format!("{cluster}-{node_id}"))
    }

    /// Opens the secrets `task` uses (their current versions, `sealed`, as
    /// [`sealed_for`] reads them off the replica), writes its files
    /// under the allocation's directory and mounts each read-only at its
    /// target (added to `task.volumes`), and puts the values of its
    /// `env_from_secret` in `env`. On an error nothing is left behind.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare(
        &self,
        sealed: &BTreeMap<String, SecretVersion>,
        cluster_id: &str,
        node_id: &str,
        alloc: &str,
        security: &Security,
        task: &mut TaskSpec,
        env: &mut BTreeMap<String, Plaintext>,
    ) -> Result<(), RuntimeError> {
        if task.secret_names().is_empty() {
            return Ok(());
        }
        let opened = self.open_all(sealed, task)?;
        let dir = self.node_dir(cluster_id, node_id).join(alloc);
        let written = self.write_files(&dir, &opened, security, task);
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mounts = written?;
        task.volumes.extend(mounts);
        for (var, name) in &task.env_from_secret {
            let value = &opened[name];
            if std::str::from_utf8(value.expose()).is_err() || value.expose().contains(&0) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(failed(
                    "setting env_from_secret",
                    format!("secret {name} (for {var}) is not UTF-8 text without NUL: mount it as a file instead"),
                ));
            }
            env.insert(var.clone(), value.clone());
        }
        Ok(())
    }

    /// Every secret the task uses, opened.
    fn open_all(
        &self,
        sealed: &BTreeMap<String, SecretVersion>,
        task: &TaskSpec,
    ) -> Result<BTreeMap<String, Plaintext>, RuntimeError> {
        let op = "opening secrets";
        let mut out = BTreeMap::new();
        for name in task.secret_names() {
            let Some(key) = &self.key else {
                return Err(failed(
                    op,
                    format!("this node holds no data key, so it cannot open secret {name}"),
                ));
            };
            let v = sealed
                .get(name)
                .ok_or_else(|| failed(op, format!("secret {name} does not exist")))?;
            let value = crate::secret::open(key, name, v).map_err(|e| failed(op, e))?;
            out.insert(name.to_string(), value);
        }
        Ok(out)
    }

    /// Writes the task's secret files in `dir` (made on a tmpfs, or refused)
    /// and answers their mounts.
    fn write_files(
        &self,
        dir: &Path,
        opened: &BTreeMap<String, Plaintext>,
        security: &Security,
        task: &TaskSpec,
    ) -> Result<Vec<VolumeMount>, RuntimeError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if task.secrets.is_empty() {
            return Ok(Vec::new());
        }
        let op = "writing secrets";
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed(op, format!("{}: {e}", dir.display())))?;
        check_memory_fs(dir).map_err(|e| failed(op, e))?;
        let owner = numeric_user(security.user.as_deref());
        let mut mounts = Vec::new();
        for (i, s) in task.secrets.iter().enumerate() {
            let path = dir.join(format!("{i}-{}", s.name));
            let io = |e: std::io::Error| failed(op, format!("{}: {e}", path.display()));
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            std::io::Write::write_all(&mut f, opened[&s.name].expose()).map_err(io)?;
            drop(f);
            if let Some((uid, gid)) = owner {
                // Only root may give a file away; otherwise the task reads it
                // as the agent's user would (the mode decides).
                if let Err(e) = std::os::unix::fs::chown(&path, Some(uid), Some(gid)) {
                    debug!(path = %path.display(), error = %e, "secret file left to the agent's user");
                }
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(s.mode()))
                .map_err(io)?;
            mounts.push(VolumeMount {
                name: None,
                host_path: Some(path.to_string_lossy().into_owned()),
                target: s.target(),
                read_only: true,
            });
        }
        Ok(mounts)
    }

    /// Removes one allocation's files (none there is fine).
    pub(crate) fn remove(&self, cluster_id: &str, node_id: &str, alloc: &str) {
        let dir = self.node_dir(cluster_id, node_id).join(alloc);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => debug!(alloc = %alloc, "secret files removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(alloc = %alloc, error = %e, "could not remove secret files"),
        }
    }

    /// Removes the files of every allocation `keep` does not name.
    pub(crate) fn prune(&self, cluster_id: &str, node_id: &str, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(self.node_dir(cluster_id, node_id)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep(&name) {
                self.remove(cluster_id, node_id, &name);
            }
        }
    }
}

/// The current sealed version of each secret `task` uses that `state` has
/// (copied out, so nothing is opened or written under the replica's lock).
pub(crate) fn sealed_for(state: &ClusterState, task: &TaskSpec) -> BTreeMap<String, SecretVersion> {
    task.secret_names()
        .into_iter()
        .filter_map(|n| Some((n.to_string(), state.secrets.get(n)?.current()?.clone())))
        .collect()
}

/// `uid[:gid]` as numbers, when the user is given so.
fn numeric_user(user: Option<&str>) -> Option<(u32, u32)> {
    let u = user?;
    let (uid, gid) = u.split_once(':').unwrap_or((u, u));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// Refuses a directory that is not on a file system kept in memory, by the
/// mount table (`/proc/mounts`).
pub fn check_memory_fs(dir: &Path) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| {
        format!("cannot read /proc/mounts to check the secrets dir is on tmpfs: {e}")
    })?;
    let real = dir
        .canonicalize()
        .map_err(|e| format!("secrets dir {}: {e}", dir.display()))?;
    match fs_type_of(&real, &mounts) {
        Some(t) if MEMORY_FS.contains(&t.as_str()) => Ok(()),
        other => Err(format!(
            "secrets dir {} is on {}, not on tmpfs: this node writes secrets only to memory (give a directory on a tmpfs, /dev/shm by default)",
            dir.display(),
            other.as_deref().unwrap_or("an unknown file system")
        )),
    }
}

/// The type of the file system `path` is on, by the longest mount point in
/// `mounts` (the text of `/proc/mounts`) that holds it.
pub fn fs_type_of(path: &Path, mounts: &str) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_dev, point, kind) = (f.next()?, f.next()?, f.next()?);
            // Spaces and the like are octal escapes in the mount table.
            let point = point.replace("\\040", " ").replace("\\011", "\t");
            path.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        // The last of equal length wins: a later mount covers an earlier one.
        .fold(None, |best: Option<(usize, String)>, m| match best {
            Some(b) if b.0 > m.0 => Some(b),
            _ => Some(m),
        })
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
tmpfs /dev/shm tmpfs rw,relatime 0 0
/dev/vdb /dev/shm/disk ext4 rw 0 0
tmpfs /run/my\\040dir tmpfs rw 0 0
";

    #[test]
    fn the_file_system_is_the_longest_mount_point_holding_the_path() {
        let t = |p: &str| fs_type_of(Path::new(p), MOUNTS);
        assert_eq!(t("/dev/shm/orion-secrets/x").as_deref(), Some("tmpfs"));
        assert_eq!(t("/dev/shm/disk/x").as_deref(), Some("ext4"));
        // A prefix of a name is not a parent.
        assert_eq!(t("/dev/shmem/x").as_deref(), Some("ext4"));
        assert_eq!(t("/var/lib/orion").as_deref(), Some("ext4"));
        assert_eq!(t("/run/my dir/s").as_deref(), Some("tmpfs"));
    }

    #[test]
    fn a_dir_not_in_memory_is_refused_naming_its_file_system() {
        let disk = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let kind = fs_type_of(&disk.path().canonicalize().unwrap(), &mounts).unwrap();
        if MEMORY_FS.contains(&kind.as_str()) {
            return; // the work dir itself is in memory here: nothing to refuse
        }
        let e = check_memory_fs(disk.path()).unwrap_err();
        assert!(e.contains("not on tmpfs") && e.contains(&kind), "{e}");
        if Path::new("/dev/shm").is_dir() {
            check_memory_fs(Path::new("/dev/shm")).unwrap();
        }
    }

    mod agent {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::Arc;

        use super::super::*;
        use crate::agent::{Agent, AgentConfig};
        use crate::command::Command;
        use crate::model::AllocState;
        use crate::scheduler::FilterScoreScheduler;
        use crate::secret::seal;
        use crate::spec::{FileMode, JobSpec, SecretMount};
        use crate::store::Store as _;
        use crate::testing::fixtures::{job, node};
        use crate::testing::{FakeRuntime, MemStore};

        const VALUE: &str = "marker-7f3a9c-secret-value";

        struct Rig {
            store: Arc<MemStore>,
            runtime: Arc<FakeRuntime>,
            agent: Agent,
            dir: tempfile::TempDir,
        }

        /// One node holding `key`; the agent holds `agent_key` and writes
        /// under a fresh directory of `/dev/shm` (or of `base`).
        fn rig(key: &DataKey, agent_key: Option<DataKey>, base: &str) -> Rig {
            let store = Arc::new(MemStore::new("n1"));
            store.apply_now(&Command::InitCluster {
                cluster_id: "c1".into(),
            });
            let mut info = node("n1", 4.0, 4096);
            info.data_key_id = Some(key.id());
            store.apply_now(&Command::RegisterNode { info });
            let value = Plaintext::new(VALUE.as_bytes().to_vec());
            store.apply_now(&Command::PutSecret {
                name: "db".into(),
                version: seal(key, "db", 1, &value, 1),
            });
            let runtime = Arc::new(FakeRuntime::new());
            let dir = tempfile::tempdir_in(base).unwrap();
            let (health, _) = tokio::sync::watch::channel(None);
            let agent = Agent::new(
                "n1".into(),
                store.clone(),
                runtime.clone(),
                AgentConfig::default(),
                health,
            )
            .with_secret_files(SecretFiles {
                key: agent_key,
                dir: dir.path().to_path_buf(),
            });
            Rig {
                store,
                runtime,
                agent,
                dir,
            }
        }

        impl Rig {
            fn submit(&self, spec: JobSpec) {
                self.store.apply_now(&Command::UpsertJob { spec });
                let plan = self
                    .store
                    .replica()
                    .read(|s| crate::reconcile::plan(s, &FilterScoreScheduler::default(), 100, 1));
                self.store.apply_now(&Command::ApplyPlan { plan });
            }

            fn alloc(&self) -> crate::model::Allocation {
                self.store
                    .replica()
                    .read(|s| s.allocs.values().next().cloned().unwrap())
            }

            fn node_dir(&self) -> PathBuf {
                self.dir.path().join("c1-n1")
            }
        }

        fn api() -> JobSpec {
            let mut spec = job("api", 1, 0.5, 256).env_from_secret("DB_PASSWORD", "db");
            spec.task.secrets.push(SecretMount {
                name: "db".into(),
                target: None,
                mode: None,
            });
            spec.task.secrets.push(SecretMount {
                name: "db".into(),
                target: Some("/etc/app/db".into()),
                mode: Some(FileMode(0o440)),
            });
            spec
        }

        /// The task's container gets each secret as a read-only bind of a
        /// file on tmpfs with the mode asked, and its variable's value only
        /// in the launch's redacted `secret_env`.
        #[tokio::test]
        async fn a_task_gets_its_secrets_as_read_only_files_and_variables() {
            let key = DataKey::generate();
            let mut r = rig(&key, Some(key.clone()), "/dev/shm");
            r.submit(api());
            r.agent.sync().await;
            let a = r.alloc();
            assert_eq!(a.state, AllocState::Running, "{:?}", a.message);
            let launch = r.runtime.launch_of(&a.id).unwrap();
            let mounts: Vec<&VolumeMount> = launch
                .task
                .volumes
                .iter()
                .filter(|v| v.target == "/run/secrets/db" || v.target == "/etc/app/db")
                .collect();
            assert_eq!(mounts.len(), 2, "{:?}", launch.task.volumes);
            for (m, mode) in mounts.iter().zip([0o400, 0o440]) {
                assert!(m.read_only);
                let path = Path::new(m.host_path.as_deref().unwrap());
                assert!(
                    path.starts_with(r.node_dir().join(&a.id)),
                    "{}",
                    path.display()
                );
                assert_eq!(std::fs::read_to_string(path).unwrap(), VALUE);
                let meta = std::fs::metadata(path).unwrap();
                assert_eq!(meta.permissions().mode() & 0o7777, mode);
                check_memory_fs(path.parent().unwrap()).unwrap();
            }
            assert_eq!(launch.secret_env["DB_PASSWORD"].expose(), VALUE.as_bytes());
            assert!(!launch.task.env.values().any(|v| v.contains(VALUE)));
            let shown = format!("{launch:?}");
            assert!(!shown.contains(VALUE), "Debug of a launch shows no value");
            let json = serde_json::to_string(&launch).unwrap();
            assert!(
                !json.contains(VALUE),
                "a launch serializes without values: {json}"
            );
        }

        /// Files go with the container when the allocation stops, and files
        /// of allocations this node no longer runs go on the next pass (as
        /// after an agent restart).
        #[tokio::test]
        async fn files_go_when_the_allocation_stops_and_stale_ones_on_the_next_pass() {
            let key = DataKey::generate();
            let mut r = rig(&key, Some(key.clone()), "/dev/shm");
            r.submit(api());
            r.agent.sync().await;
            let a = r.alloc();
            let stale = r.node_dir().join("gone-0-9");
            std::fs::create_dir_all(&stale).unwrap();
            std::fs::write(stale.join("0-db"), VALUE).unwrap();
            r.agent.sync().await;
            assert!(!stale.exists(), "a stale allocation's files are removed");
            assert!(r.node_dir().join(&a.id).exists(), "a running one's stay");
            r.store.apply_now(&Command::StopJob {
                name: "api".into(),
                purge: false,
            });
            r.agent.sync().await;
            assert_eq!(r.runtime.running(&a.id), 0);
            assert!(!r.node_dir().join(&a.id).exists());
        }

        /// A node without the key, or with its secrets dir on disk, does not
        /// start the task: the allocation fails saying why, and nothing is
        /// left behind.
        #[tokio::test]
        async fn without_the_key_or_off_tmpfs_the_start_fails_saying_why() {
            let key = DataKey::generate();
            let mut r = rig(&key, None, "/dev/shm");
            r.submit(api());
            r.agent.sync().await;
            let a = r.alloc();
            assert_eq!(a.state, AllocState::Failed);
            let why = a.message.unwrap_or_default();
            assert!(why.contains("holds no data key"), "{why}");
            assert!(r.runtime.launch_of(&a.id).is_none());

            let disk = std::env::current_dir().unwrap();
            let kind = fs_type_of(
                &disk.canonicalize().unwrap(),
                &std::fs::read_to_string("/proc/mounts").unwrap(),
            );
            if kind.as_deref().is_some_and(|k| MEMORY_FS.contains(&k)) {
                return; // the work dir is in memory here: nothing to refuse
            }
            let mut r = rig(&key, Some(key.clone()), disk.to_str().unwrap());
            r.submit(api());
            r.agent.sync().await;
            let a = r.alloc();
            assert_eq!(a.state, AllocState::Failed);
            let why = a.message.unwrap_or_default();
            assert!(why.contains("not on tmpfs"), "{why}");
            assert!(!why.contains(VALUE));
            assert!(!r.node_dir().join(&a.id).exists(), "nothing left on disk");
        }
    }

    #[test]
    fn numeric_users_own_their_files() {
        assert_eq!(numeric_user(Some("65534:65534")), Some((65534, 65534)));
        assert_eq!(numeric_user(Some("1000")), Some((1000, 1000)));
        assert_eq!(numeric_user(Some("app")), None);
        assert_eq!(numeric_user(None), None);
    }
}
