//! `runtime_suite`: the contract every [`Runtime`] adapter must pass, run against
//! [`FakeRuntime`](super::FakeRuntime) here and against `DockerRuntime` in `orion-runtime`.
//!
//! Each check takes the runtime, a cluster id unique to the run (so that suites can run
//! in parallel against one engine) and the task to run, whose image must be obtainable
//! by [`Runtime::ensure_image`] and whose command must keep running until stopped. A
//! check returns a [`SuiteFailure`] rather than panicking, and removes every container
//! it created before returning, also when it fails, so an adapter's test only has to
//! `expect` the result:
//!
//! ```no_run
//! # async fn demo(runtime: &dyn orion_core::Runtime, task: &orion_core::TaskSpec) {
//! orion_core::testing::runtime_suite::run_all(runtime, "suite-1a2b3c", task)
//!     .await
//!     .expect("the runtime honours the contract");
//! # }
//! ```

use std::time::Duration;

use crate::runtime::{ContainerInfo, ContainerState, Owner, Runtime, RuntimeError, TaskLaunch};
use crate::spec::TaskSpec;

/// The grace the suite stops containers with: short, since it only checks the outcome.
const GRACE: Duration = Duration::from_secs(2);

/// A container id no runtime has.
const UNKNOWN_ID: &str = "orion-suite-no-such-container";

/// A broken promise of the runtime contract.
#[derive(Debug, thiserror::Error)]
#[error("{check}: {problem}")]
pub struct SuiteFailure {
    /// The check that failed.
    pub check: &'static str,
    /// What went wrong.
    pub problem: String,
}

/// Runs every check in turn.
pub async fn run_all<R: Runtime + ?Sized>(
    runtime: &R,
    cluster_id: &str,
    task: &TaskSpec,
) -> Result<(), SuiteFailure> {
    lifecycle(runtime, cluster_id, task).await?;
    duplicate_name(runtime, cluster_id, task).await?;
    exits(runtime, cluster_id, task).await?;
    unknown_ids(runtime).await
}

/// A runtime with an exit feed ([`Runtime::exits`]) reports the exit of each
/// of the owner's containers, whether it is killed or stopped, and none of
/// another owner's. A runtime that answers [`RuntimeError::Unsupported`]
/// passes: its agent relies on its tick.
pub async fn exits<R: Runtime + ?Sized>(
    runtime: &R,
    cluster_id: &str,
    task: &TaskSpec,
) -> Result<(), SuiteFailure> {
    let mine = owner(cluster_id, "suite-node-exits");
    let neighbour = owner(cluster_id, "suite-node-exits-b");
    let result = Check::new("exits")
        .exits(runtime, task, &mine, &neighbour)
        .await;
    clean(runtime, &[mine, neighbour]).await;
    result
}

/// create → inspect Created → start → Running → listed for its owner only → stop →
/// Exited → still listed → start again → kill → Exited 137 → remove → NotFound and no
/// longer listed.
pub async fn lifecycle<R: Runtime + ?Sized>(
    runtime: &R,
    cluster_id: &str,
    task: &TaskSpec,
) -> Result<(), SuiteFailure> {
    let mine = owner(cluster_id, "suite-node-a");
    let neighbour = owner(cluster_id, "suite-node-b");
    let foreign = owner(&format!("{cluster_id}-other"), "suite-node-a");
    let result = Check::new("lifecycle")
        .lifecycle(runtime, task, [&mine, &neighbour, &foreign])
        .await;
    clean(runtime, &[mine, neighbour, foreign]).await;
    result
}

/// Creating a second container with an existing allocation's name fails, and leaves one.
pub async fn duplicate_name<R: Runtime + ?Sized>(
    runtime: &R,
    cluster_id: &str,
    task: &TaskSpec,
) -> Result<(), SuiteFailure> {
    let mine = owner(cluster_id, "suite-node-dup");
    let result = Check::new("duplicate_name")
        .duplicate_name(runtime, task, &mine)
        .await;
    clean(runtime, &[mine]).await;
    result
}

/// Every operation on an id the runtime does not know answers [`RuntimeError::NotFound`].
pub async fn unknown_ids<R: Runtime + ?Sized>(runtime: &R) -> Result<(), SuiteFailure> {
    let c = Check::new("unknown_ids");
    let id = UNKNOWN_ID;
    c.not_found("start", runtime.start(id).await.map(drop))?;
    c.not_found("stop", runtime.stop(id, GRACE).await)?;
    c.not_found("kill", runtime.kill(id).await)?;
    c.not_found("remove", runtime.remove(id).await)?;
    c.not_found("inspect", runtime.inspect(id).await.map(drop))?;
    c.not_found("logs", runtime.logs(id, false).await.map(drop))?;
    c.not_found("stats", runtime.stats(id).await.map(drop))?;
    let cmd = ["true".to_string()];
    c.not_found("exec", runtime.exec(id, &cmd).await.map(drop))
}

fn owner(cluster_id: &str, node_id: &str) -> Owner {
    Owner {
        cluster_id: cluster_id.to_string(),
        node_id: node_id.to_string(),
    }
}

/// A launch for the owner with a fresh allocation id.
fn launch(owner: &Owner, task: &TaskSpec) -> TaskLaunch {
    let alloc: String = uuid::Uuid::new_v4().simple().to_string();
    TaskLaunch {
        cluster_id: owner.cluster_id.clone(),
        node_id: owner.node_id.clone(),
        alloc_id: format!("suite-{}", &alloc[..12]),
        job: "suite".to_string(),
        job_version: 1,
        task: task.clone(),
        ports: Vec::new(),
        security: Default::default(),
        secret_env: Default::default(),
    }
}

/// Removes every container of the owners; errors are ignored, as there is nothing
/// better to do with them.
async fn clean<R: Runtime + ?Sized>(runtime: &R, owners: &[Owner]) {
    for owner in owners {
        for c in runtime.list(owner).await.unwrap_or_default() {
            let _ = runtime.remove(&c.id).await;
        }
    }
}

/// One named check, and the failures it reports.
struct Check {
    name: &'static str,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Check { name }
    }

    fn fail(&self, problem: impl Into<String>) -> SuiteFailure {
        SuiteFailure {
            check: self.name,
            problem: problem.into(),
        }
    }

    /// The call must have succeeded.
    fn ok<T>(&self, what: &str, result: Result<T, RuntimeError>) -> Result<T, SuiteFailure> {
        result.map_err(|e| self.fail(format!("{what} failed: {e}")))
    }

    /// The call must have failed with NotFound.
    fn not_found(&self, what: &str, result: Result<(), RuntimeError>) -> Result<(), SuiteFailure> {
        match result {
            Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(self.fail(format!("{what} of an unknown id: want NotFound, got {e}"))),
            Ok(()) => Err(self.fail(format!("{what} of an unknown id succeeded"))),
        }
    }

    /// The container must be in the state.
    async fn expect_state<R: Runtime + ?Sized>(
        &self,
        runtime: &R,
        id: &str,
        want: impl Fn(&ContainerState) -> bool,
        described: &str,
    ) -> Result<ContainerInfo, SuiteFailure> {
        let info = self.ok("inspect", runtime.inspect(id).await)?;
        if want(&info.state) {
            Ok(info)
        } else {
            Err(self.fail(format!(
                "{id}: want {described}, got {:?} (error: {:?})",
                info.state, info.error
            )))
        }
    }

    /// The owner's list must hold exactly these allocations.
    async fn expect_listed<R: Runtime + ?Sized>(
        &self,
        runtime: &R,
        owner: &Owner,
        allocs: &[&str],
    ) -> Result<(), SuiteFailure> {
        let listed = self.ok("list", runtime.list(owner).await)?;
        let mut got: Vec<&str> = listed.iter().map(|c| c.alloc_id.as_str()).collect();
        got.sort_unstable();
        let mut want = allocs.to_vec();
        want.sort_unstable();
        if got == want {
            Ok(())
        } else {
            Err(self.fail(format!(
                "list of {}/{}: want {want:?}, got {got:?}",
                owner.cluster_id, owner.node_id
            )))
        }
    }

    async fn lifecycle<R: Runtime + ?Sized>(
        &self,
        runtime: &R,
        task: &TaskSpec,
        [mine, neighbour, foreign]: [&Owner; 3],
    ) -> Result<(), SuiteFailure> {
        self.ok("ping", runtime.ping().await)?;
        self.ok("ensure_image", runtime.ensure_image(&task.image).await)?;
        let (a, b, c) = (
            launch(mine, task),
            launch(neighbour, task),
            launch(foreign, task),
        );
        let created = self.ok("create", runtime.create(&a).await)?;
        if created.alloc_id != a.alloc_id || created.state != ContainerState::Created {
            return Err(self.fail(format!("create returned {created:?}")));
        }
        self.ok("create", runtime.create(&b).await)?;
        self.ok("create", runtime.create(&c).await)?;
        let id = created.id;
        let created_state = |s: &ContainerState| *s == ContainerState::Created;
        self.expect_state(runtime, &id, created_state, "Created")
            .await?;

        self.ok("start", runtime.start(&id).await)?;
        let running = |s: &ContainerState| *s == ContainerState::Running;
        self.expect_state(runtime, &id, running, "Running").await?;
        self.expect_listed(runtime, mine, &[&a.alloc_id]).await?;
        self.expect_listed(runtime, neighbour, &[&b.alloc_id])
            .await?;
        self.expect_listed(runtime, foreign, &[&c.alloc_id]).await?;

        self.ok("stop", runtime.stop(&id, GRACE).await)?;
        let exited = |s: &ContainerState| matches!(s, ContainerState::Exited { .. });
        self.expect_state(runtime, &id, exited, "Exited").await?;
        self.expect_listed(runtime, mine, &[&a.alloc_id]).await?;

        self.ok("start of an exited container", runtime.start(&id).await)?;
        self.expect_state(runtime, &id, running, "Running again")
            .await?;
        self.ok("kill", runtime.kill(&id).await)?;
        let killed = |s: &ContainerState| *s == ContainerState::Exited { code: 137 };
        self.expect_state(runtime, &id, killed, "Exited with 137")
            .await?;

        self.ok("remove", runtime.remove(&id).await)?;
        self.not_found("inspect after remove", runtime.inspect(&id).await.map(drop))?;
        self.not_found("second remove", runtime.remove(&id).await)?;
        self.expect_listed(runtime, mine, &[]).await
    }

    async fn exits<R: Runtime + ?Sized>(
        &self,
        runtime: &R,
        task: &TaskSpec,
        mine: &Owner,
        neighbour: &Owner,
    ) -> Result<(), SuiteFailure> {
        use futures::StreamExt;
        let mut feed = match runtime.exits(mine).await {
            Err(RuntimeError::Unsupported(_)) => return Ok(()),
            other => self.ok("exits", other)?,
        };
        self.ok("ensure_image", runtime.ensure_image(&task.image).await)?;
        let (a, b, other) = (
            launch(mine, task),
            launch(mine, task),
            launch(neighbour, task),
        );
        let mut ids = Vec::new();
        for l in [&a, &b, &other] {
            let created = self.ok("create", runtime.create(l).await)?;
            self.ok("start", runtime.start(&created.id).await)?;
            ids.push(created.id);
        }
        // The neighbour's exit first: it must not show up in this feed.
        self.ok("kill", runtime.kill(&ids[2]).await)?;
        self.ok("kill", runtime.kill(&ids[0]).await)?;
        self.ok("stop", runtime.stop(&ids[1], GRACE).await)?;
        let mut want: Vec<&str> = vec![&a.alloc_id, &b.alloc_id];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !want.is_empty() {
            let next = tokio::time::timeout_at(deadline, feed.next()).await;
            let alloc = match next {
                Err(_) => {
                    return Err(self.fail(format!("no exit reported for {want:?} within 30 s")))
                }
                Ok(None) => return Err(self.fail("the exit feed ended")),
                Ok(Some(r)) => self.ok("exit feed", r)?,
            };
            if alloc == other.alloc_id {
                return Err(self.fail(format!("another owner's exit {alloc} was reported")));
            }
            want.retain(|w| *w != alloc);
        }
        Ok(())
    }

    async fn duplicate_name<R: Runtime + ?Sized>(
        &self,
        runtime: &R,
        task: &TaskSpec,
        mine: &Owner,
    ) -> Result<(), SuiteFailure> {
        self.ok("ensure_image", runtime.ensure_image(&task.image).await)?;
        let a = launch(mine, task);
        self.ok("create", runtime.create(&a).await)?;
        if let Ok(second) = runtime.create(&a).await {
            return Err(self.fail(format!(
                "a second create of {} made {}",
                a.container_name(),
                second.id
            )));
        }
        self.expect_listed(runtime, mine, &[&a.alloc_id]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Resources;
    use crate::testing::FakeRuntime;

    fn task() -> TaskSpec {
        TaskSpec {
            image: "orion-test/any:1".into(),
            outputs: Vec::new(),
            script: None,
            security: None,
            command: vec!["sleep".into(), "3600".into()],
            args: Vec::new(),
            env: Default::default(),
            resources: Resources::default(),
            ports: Vec::new(),
            volumes: Vec::new(),
            secrets: Vec::new(),
            env_from_secret: Default::default(),
            health_checks: Vec::new(),
            service: None,
            timeout: None,
            metrics: None,
        }
    }

    #[tokio::test]
    async fn fake_runtime_passes_the_suite() {
        let runtime = FakeRuntime::new();
        run_all(&runtime, "suite-fake", &task()).await.unwrap();
        assert!(runtime.containers().is_empty(), "the suite cleans up");
    }

    #[tokio::test]
    async fn failures_name_the_check() {
        let runtime = FakeRuntime::new();
        runtime.set_unavailable(Some("engine down"));
        let failure = lifecycle(&runtime, "suite-down", &task())
            .await
            .unwrap_err();
        assert_eq!(failure.check, "lifecycle");
        assert!(failure.problem.contains("engine down"), "{failure}");
    }
}
