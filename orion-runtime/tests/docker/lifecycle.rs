//! Labels, listing by owner, resource limits, stop, kill and remove.

use std::time::{Duration, Instant};

use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use orion_core::runtime::{ContainerState, Runtime, RuntimeError};
use orion_runtime::docker::PORTS_LABEL;

use crate::ctx_or_skip;
use crate::support::{eventually, http_port, launch_for, task, Ctx, POLITE};

/// The engine's own view of a container, for what `ContainerInfo` does not carry.
async fn engine_inspect(id: &str) -> bollard::models::ContainerInspectResponse {
    let docker = Docker::connect_with_local_defaults()
        .expect("connect")
        .negotiate_version()
        .await
        .expect("negotiate");
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .expect("inspect")
}

/// Polls until the container has exited; returns its exit code.
async fn exit_code(ctx: &Ctx, id: &str) -> i64 {
    eventually("the container to exit", Duration::from_secs(15), || async {
        match ctx.rt.inspect(id).await.expect("inspect").state {
            ContainerState::Exited { code } => Some(code),
            _ => None,
        }
    })
    .await
}

/// The container is named `TaskLaunch::container_name` and carries every
/// `TaskLaunch::labels` label plus the port names; `list` returns the owner's containers
/// in any state and none of another node's or another cluster's.
#[tokio::test]
async fn labels_identify_the_owner_and_list_filters_by_them() {
    let ctx = ctx_or_skip!();
    let mut mine = ctx.launch("n1", task(POLITE));
    mine.ports = vec![http_port()];
    let mine_stopped = ctx.launch("n1", task(POLITE));
    let neighbour = ctx.launch("n2", task(POLITE));
    let foreign_owner = orion_core::runtime::Owner {
        cluster_id: format!("{}-other", ctx.cluster),
        node_id: "n1".into(),
    };
    let foreign = launch_for(&foreign_owner, task(POLITE));
    let id = ctx.run(&mine).await;
    ctx.rt.create(&mine_stopped).await.expect("create");
    ctx.rt.create(&neighbour).await.expect("create");
    ctx.rt.create(&foreign).await.expect("create");

    let engine = engine_inspect(&id).await;
    assert_eq!(
        engine.name.as_deref(),
        Some(&*format!("/{}", mine.container_name()))
    );
    let labels = engine.config.and_then(|c| c.labels).expect("labels");
    for (key, value) in mine.labels() {
        assert_eq!(labels.get(&key), Some(&value), "label {key}");
    }
    assert_eq!(labels[PORTS_LABEL], "http=80/tcp");

    let mut listed: Vec<String> = ctx
        .rt
        .list(&ctx.owner("n1"))
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.alloc_id)
        .collect();
    listed.sort();
    let mut want = vec![mine.alloc_id.clone(), mine_stopped.alloc_id.clone()];
    want.sort();
    assert_eq!(listed, want);
    let others = ctx.rt.list(&ctx.owner("n2")).await.expect("list");
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].alloc_id, neighbour.alloc_id);
    assert_eq!(others[0].job, "web");
    let foreigners = ctx.rt.list(&foreign_owner).await.expect("list");
    assert_eq!(foreigners.len(), 1);
    assert_eq!(foreigners[0].alloc_id, foreign.alloc_id);
}

/// Memory (memory_mb), CPU (`nano_cpus` from cores) and pids limits are set, there is no
/// restart policy, and stats see the memory limit.
#[tokio::test]
async fn resource_limits_are_set_on_the_container() {
    let ctx = ctx_or_skip!();
    let mut spec = task(POLITE);
    spec.resources.memory_mb = 48;
    spec.resources.cpu = 0.25;
    let id = ctx.run(&ctx.launch("n1", spec)).await;

    let host = engine_inspect(&id).await.host_config.expect("host config");
    assert_eq!(host.memory, Some(48 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.pids_limit, Some(1024));
    let restart = host
        .restart_policy
        .and_then(|p| p.name)
        .map(|n| n.to_string());
    assert!(
        matches!(restart.as_deref(), Some("no") | Some("")),
        "{restart:?}"
    );

    let stats = ctx.rt.stats(&id).await.expect("stats");
    assert_eq!(stats.memory_limit_bytes, 48 * 1024 * 1024);
}

/// `stop` delivers SIGTERM first: a task that exits on TERM stops well within its grace,
/// with its own exit code.
#[tokio::test]
async fn stop_sends_term_and_returns_once_the_task_exits() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    let started = Instant::now();
    ctx.rt
        .stop(&id, Duration::from_secs(20))
        .await
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited out the grace"
    );
    let info = ctx.rt.inspect(&id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Exited { code: 0 });
}

/// `stop` kills a task that ignores SIGTERM once the grace has passed (exit 137), and not
/// before.
#[tokio::test]
async fn stop_kills_a_task_that_ignores_term_after_the_grace() {
    let ctx = ctx_or_skip!();
    // The task ignores SIGTERM on purpose (the engine's init forwards it to the task).
    let id = ctx
        .run(&ctx.launch(
            "n1",
            task(&[
                "/bin/sh",
                "-c",
                "trap '' TERM; while true; do sleep 1; done",
            ]),
        ))
        .await;
    let started = Instant::now();
    ctx.rt
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "killed before the grace"
    );
    let info = ctx.rt.inspect(&id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Exited { code: 137 });
    // Stopping a stopped container is a no-op, not an error.
    ctx.rt
        .stop(&id, Duration::from_secs(1))
        .await
        .expect("second stop");
}

/// `kill` ends the task at once with exit code 137; killing it again is not an error.
#[tokio::test]
async fn kill_ends_the_task_with_137() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    ctx.rt.kill(&id).await.expect("kill");
    assert_eq!(exit_code(&ctx, &id).await, 137);
    ctx.rt.kill(&id).await.expect("kill of a dead container");
}

/// A task that exits on its own is reported `Exited` with its exit code, and the
/// container stays (listed) until removed: no restart policy brings it back.
#[tokio::test]
async fn an_exiting_task_reports_its_exit_code() {
    let ctx = ctx_or_skip!();
    let id = ctx
        .run(&ctx.launch("n1", task(&["/bin/sh", "-c", "exit 3"])))
        .await;
    assert_eq!(exit_code(&ctx, &id).await, 3);
    let listed = ctx.rt.list(&ctx.owner("n1")).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::Exited { code: 3 });
}

/// `remove` takes a running container away (force); afterwards inspect, stop, kill and
/// remove all say NotFound.
#[tokio::test]
async fn remove_forces_a_running_container_away() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    ctx.rt.remove(&id).await.expect("remove");
    assert!(matches!(
        ctx.rt.inspect(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        ctx.rt.stop(&id, Duration::from_secs(1)).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        ctx.rt.kill(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        ctx.rt.remove(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(ctx
        .rt
        .list(&ctx.owner("n1"))
        .await
        .expect("list")
        .is_empty());
}
