//! The agent over `FakeRuntime` and `MemStore`: starts, reports, restarts, adopts,
//! stops, and says why when the image or the runtime fails.

use std::sync::Arc;

use super::*;
use crate::command::Command;
use crate::reconcile;
use crate::scheduler::FilterScoreScheduler;
use crate::testing::fixtures::{job, node};
use crate::testing::{FakeRuntime, MemStore, RuntimeCall};

struct Rig {
    store: Arc<MemStore>,
    runtime: Arc<FakeRuntime>,
    agent: Agent,
}

fn rig() -> Rig {
    let store = Arc::new(MemStore::new("n1"));
    store.apply_now(&Command::InitCluster {
        cluster_id: "c1".into(),
    });
    store.apply_now(&Command::RegisterNode {
        info: node("n1", 4.0, 4096),
    });
    let runtime = Arc::new(FakeRuntime::new());
    let (health, _) = watch::channel(None);
    let agent = Agent::new(
        "n1".into(),
        store.clone(),
        runtime.clone(),
        AgentConfig::default(),
        health,
    );
    Rig {
        store,
        runtime,
        agent,
    }
}

impl Rig {
    fn submit(&self, spec: crate::spec::JobSpec) {
        self.store.apply_now(&Command::UpsertJob { spec });
        self.reconcile();
    }

    fn reconcile(&self) {
        let plan = self
            .store
            .replica()
            .read(|s| reconcile::plan(s, &FilterScoreScheduler::default(), 100, 1));
        if !plan.is_empty() {
            self.store.apply_now(&Command::ApplyPlan { plan });
        }
    }

    fn allocs(&self) -> Vec<Allocation> {
        self.store
            .replica()
            .read(|s| s.allocs.values().cloned().collect())
    }

    fn creates(&self) -> usize {
        self.runtime
            .calls()
            .iter()
            .filter(|c| matches!(c, RuntimeCall::Create(_)))
            .count()
    }
}

#[tokio::test]
async fn starts_placed_allocations_and_reports_them_running_with_ports() {
    let mut r = rig();
    r.submit(job("web", 2, 0.5, 256).port("http", 80));
    r.agent.sync().await;
    let allocs = r.allocs();
    assert_eq!(allocs.len(), 2);
    for a in &allocs {
        assert_eq!(a.state, AllocState::Running);
        assert_eq!(r.runtime.running(&a.id), 1);
        assert_eq!(a.ports[0].name, "http");
    }
    r.agent.sync().await;
    assert_eq!(r.creates(), 2, "a second pass starts nothing new");
}

fn quick_restarts(spec: crate::spec::JobSpec) -> crate::spec::JobSpec {
    spec.restart(crate::spec::RestartSpec {
        delay: Duration::from_secs(1),
        ..Default::default()
    })
}

#[tokio::test(start_paused = true)]
async fn exited_service_tasks_are_restarted_after_a_delay() {
    let mut r = rig();
    r.submit(quick_restarts(job("web", 1, 0.5, 256)));
    r.agent.sync().await;
    let id = r.allocs()[0].id.clone();
    assert!(r.runtime.exit(&id, 137));
    r.agent.sync().await;
    let a = &r.allocs()[0];
    assert_eq!((a.state, a.exit_code), (AllocState::Exited, Some(137)));
    tokio::time::advance(Duration::from_millis(900)).await;
    r.agent.sync().await;
    assert_eq!(
        r.allocs()[0].state,
        AllocState::Exited,
        "not before its delay"
    );
    tokio::time::advance(Duration::from_millis(400)).await;
    r.agent.sync().await;
    let a = &r.allocs()[0];
    assert_eq!((a.state, a.restarts), (AllocState::Running, 1));
    assert_eq!(r.runtime.running(&id), 1);
    assert_eq!(r.creates(), 1, "restarted in place, not recreated");
}

#[tokio::test]
async fn a_new_agent_adopts_existing_containers() {
    let mut r = rig();
    r.submit(job("web", 3, 0.5, 256));
    r.agent.sync().await;
    let (health, _) = watch::channel(None);
    let mut again = Agent::new(
        "n1".into(),
        r.store.clone(),
        r.runtime.clone(),
        AgentConfig::default(),
        health,
    );
    again.sync().await;
    assert_eq!(r.creates(), 3);
    assert_eq!(r.runtime.containers().len(), 3);
}

#[tokio::test]
async fn stopped_jobs_lose_their_containers() {
    let mut r = rig();
    r.submit(job("web", 2, 0.5, 256));
    r.agent.sync().await;
    r.store.apply_now(&Command::StopJob {
        name: "web".into(),
        purge: false,
    });
    r.agent.sync().await;
    assert!(r.runtime.containers().is_empty());
    assert!(r.allocs().iter().all(|a| a.state == AllocState::Stopped));
}

#[tokio::test]
async fn containers_of_purged_or_unknown_allocations_are_removed() {
    let mut r = rig();
    r.submit(job("web", 1, 0.5, 256));
    r.agent.sync().await;
    r.store.apply_now(&Command::StopJob {
        name: "web".into(),
        purge: true,
    });
    r.agent.sync().await;
    assert!(r.runtime.containers().is_empty());
}

#[tokio::test]
async fn a_missing_image_fails_the_allocation_naming_the_image() {
    let mut r = rig();
    r.runtime.remove_image("orion-test/web:1");
    r.submit(job("web", 1, 0.5, 256));
    r.agent.sync().await;
    let a = &r.allocs()[0];
    assert_eq!(a.state, AllocState::Failed);
    let msg = a.message.clone().unwrap();
    assert!(
        msg.contains("orion-test/web:1") && msg.contains("not available"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreachable_runtime_marks_the_node_unhealthy_until_it_returns() {
    let mut r = rig();
    r.submit(job("web", 1, 0.5, 256));
    r.runtime.set_unavailable(Some("connection refused"));
    r.agent.sync().await;
    let status = r.store.replica().read(|s| s.nodes["n1"].clone());
    assert_eq!(status.status, crate::model::NodeStatus::Unhealthy);
    assert!(status.health.unwrap().contains("connection refused"));
    let a = &r.allocs()[0];
    assert_eq!(a.state, AllocState::Failed);
    assert!(a.message.as_ref().unwrap().contains("connection refused"));
    r.runtime.set_unavailable(None);
    r.agent.sync().await;
    r.agent.sync().await;
    let status = r.store.replica().read(|s| s.nodes["n1"].status);
    assert_eq!(status, crate::model::NodeStatus::Ready);
    assert_eq!(r.allocs()[0].state, AllocState::Running);
    assert!(r.runtime.ping().await.is_ok());
}

/// A store cut off from its leader: reads of the local replica work, the read
/// barrier does not.
struct CutOff(Arc<MemStore>);

#[async_trait::async_trait]
impl crate::store::Store for CutOff {
    async fn propose(
        &self,
        cmd: Command,
    ) -> Result<crate::store::Applied, crate::store::StoreError> {
        self.0.propose(cmd).await
    }
    fn replica(&self) -> &Arc<crate::replica::Replica> {
        self.0.replica()
    }
    async fn read_barrier(&self) -> Result<(), crate::store::StoreError> {
        Err(crate::store::StoreError::NoLeader("cut off".into()))
    }
    fn leadership(&self) -> watch::Receiver<crate::store::Leadership> {
        self.0.leadership()
    }
    async fn shutdown(&self) -> Result<(), crate::store::StoreError> {
        Ok(())
    }
}

/// An agent that has not caught up with the leader since it started keeps what
/// runs but starts nothing: it cannot know whether its allocations were replaced.
#[tokio::test]
async fn an_agent_that_has_not_caught_up_starts_nothing_but_keeps_what_runs() {
    let mut r = rig();
    r.submit(job("web", 2, 0.5, 256));
    r.agent.sync().await;
    assert_eq!(r.creates(), 2);
    // One container dies while the node is down; the node restarts cut off.
    let first = r.allocs()[0].id.clone();
    r.runtime.exit(&first, 137);
    let (health, _) = watch::channel(None);
    let store = Arc::new(CutOff(r.store.clone()));
    let mut cut = Agent::new(
        "n1".into(),
        store,
        r.runtime.clone(),
        AgentConfig::default(),
        health,
    );
    cut.sync().await;
    assert_eq!(r.creates(), 2, "nothing new started");
    assert_eq!(
        r.runtime.running(&first),
        0,
        "the dead one is not restarted"
    );
    let others: Vec<_> = r.allocs().into_iter().filter(|a| a.id != first).collect();
    assert_eq!(
        r.runtime.running(&others[0].id),
        1,
        "what runs keeps running"
    );
}

/// The restart policy: exponential delays (with at most 25% jitter) within
/// the attempts, then the node gives up and says why; the reconciler replaces
/// the allocation, and the replacement carries the slot's reschedule count and
/// waits out its backoff before it starts.
#[tokio::test(start_paused = true)]
async fn restarts_back_off_then_the_node_gives_up_and_the_replacement_waits() {
    use crate::spec::{Backoff, RescheduleSpec, RestartSpec};
    let mut r = rig();
    let mut spec = job("crash", 1, 0.5, 256).restart(RestartSpec {
        attempts: 2,
        delay: Duration::from_secs(2),
        backoff: Backoff::Exponential,
        max_delay: Duration::from_secs(60),
        ..Default::default()
    });
    spec.reschedule = Some(RescheduleSpec {
        delay: Duration::from_secs(10),
        ..Default::default()
    });
    r.submit(spec);
    r.agent.sync().await;
    let id = r.allocs()[0].id.clone();
    let mut waited = Vec::new();
    for _ in 0..2 {
        assert!(r.runtime.exit(&id, 3));
        r.agent.sync().await;
        let start = tokio::time::Instant::now();
        while r.allocs()[0].state != AllocState::Running {
            tokio::time::advance(Duration::from_millis(100)).await;
            r.agent.sync().await;
        }
        waited.push(start.elapsed().as_secs_f64());
    }
    for (w, delay) in waited.iter().zip([2.0, 4.0]) {
        assert!(
            *w >= delay && *w <= delay * 1.25 + 0.11,
            "waited {waited:?}"
        );
    }
    assert!(r.runtime.exit(&id, 3));
    r.agent.sync().await;
    let a = r.allocs()[0].clone();
    assert_eq!(
        (a.state, a.gave_up, a.restarts),
        (AllocState::Failed, true, 2)
    );
    assert!(
        a.message
            .as_deref()
            .unwrap()
            .starts_with("restarts spent (2 within 30m): exited with code 3"),
        "{a:?}"
    );
    // Nothing more from this node.
    tokio::time::advance(Duration::from_secs(60)).await;
    r.agent.sync().await;
    assert_eq!(r.runtime.running(&id), 0);

    r.reconcile();
    let all = r.allocs();
    let new = all.iter().find(|x| x.id != id).expect("a replacement");
    assert_eq!(new.reschedules, 1);
    assert!((10_000..=12_500).contains(&new.start_delay_ms), "{new:?}");
    r.agent.sync().await;
    let new = r.allocs().into_iter().find(|x| x.id != id).unwrap();
    assert_eq!(new.state, AllocState::Starting, "waits out the backoff");
    assert!(
        new.message.as_deref().unwrap().starts_with("starts in 1"),
        "{new:?}"
    );
    tokio::time::advance(Duration::from_millis(new.start_delay_ms + 10)).await;
    r.agent.sync().await;
    let new = r.allocs().into_iter().find(|x| x.id != id).unwrap();
    assert_eq!(new.state, AllocState::Running);
}

/// `mode: delay` waits the interval out instead of giving up.
#[tokio::test(start_paused = true)]
async fn restart_mode_delay_waits_out_the_interval() {
    use crate::spec::{RestartMode, RestartSpec};
    let mut r = rig();
    r.submit(job("slow", 1, 0.5, 256).restart(RestartSpec {
        attempts: 1,
        delay: Duration::from_secs(1),
        interval: Duration::from_secs(30),
        mode: RestartMode::Delay,
        ..Default::default()
    }));
    r.agent.sync().await;
    let id = r.allocs()[0].id.clone();
    assert!(r.runtime.exit(&id, 1));
    r.agent.sync().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    r.agent.sync().await;
    assert_eq!(r.allocs()[0].restarts, 1);
    assert!(r.runtime.exit(&id, 1));
    r.agent.sync().await;
    tokio::time::advance(Duration::from_secs(20)).await;
    r.agent.sync().await;
    let a = r.allocs()[0].clone();
    assert_eq!(
        (a.state, a.gave_up),
        (AllocState::Exited, false),
        "waits, does not give up"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    r.agent.sync().await;
    assert_eq!(
        r.allocs()[0].restarts,
        2,
        "once the first restart left the interval"
    );
}

/// However many tasks cannot start, retries stay within the agent's
/// failed-starts budget per second.
#[tokio::test(start_paused = true)]
async fn failed_start_retries_are_bounded_per_second() {
    let mut r = rig();
    r.runtime.remove_image("orion-test/web:1");
    r.submit(job("web", 20, 0.1, 64));
    r.agent.sync().await;
    let failed = |r: &Rig| r.allocs().iter().map(|a| a.failures).sum::<u32>();
    assert_eq!(failed(&r), 20, "every first attempt is made");
    tokio::time::advance(Duration::from_millis(1100)).await;
    r.agent.sync().await;
    assert_eq!(failed(&r), 25, "then at most 5 retries a second");
    tokio::time::advance(Duration::from_millis(1100)).await;
    r.agent.sync().await;
    assert_eq!(failed(&r), 30);
}
