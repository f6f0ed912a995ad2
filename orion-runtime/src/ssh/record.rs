//! What survives an agent restart: each task's launch (without its secrets),
//! remote directory and last pid in `<data_dir>/<alloc>/task.json`, read back
//! by a new `SshRuntime` so the tasks are listed (and can be removed, remote
//! directory and process included) instead of orphaned.

use std::path::Path;

use orion_core::{ContainerState, TaskLaunch};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::task::Task;

/// The file name beside a task's logs.
const FILE: &str = "task.json";

/// The error an adopted task reports.
pub(crate) const ADOPTED: &str = "adopted after a restart: the SSH channel it ran on is gone, \
     so its exit status is unknown (its remote process may still run until removed)";

/// One task's durable part.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    /// `secret_env` is not serialized: secrets never reach the disk.
    pub launch: TaskLaunch,
    pub dir: String,
    pub pid: Option<u32>,
}

/// Writes the record into `log_dir` (atomically: a temporary file renamed).
pub(crate) fn save(log_dir: &Path, record: &Record) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    let tmp = log_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, log_dir.join(FILE))
}

/// Every record under `data_dir`, as tasks: exited, with [`ADOPTED`] as
/// their error and their last pid kept to be killed on start or remove.
pub(crate) fn load(data_dir: &Path) -> Vec<(String, Task)> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) => tasks.push((
                r.id,
                Task {
                    launch: r.launch,
                    dir: Some(r.dir),
                    state: ContainerState::Exited {
                        code: super::remote::DROPPED_CODE,
                    },
                    error: Some(ADOPTED.to_string()),
                    run_id: 0,
                    run: None,
                    orphan: r.pid,
                },
            )),
            Err(e) => warn!(path = %path.display(), error = %e, "unreadable ssh task record"),
        }
    }
    tasks
}
