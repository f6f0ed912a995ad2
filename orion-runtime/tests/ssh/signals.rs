//! `stop` and `kill` reach the task's whole process group, TERM first.

use std::time::{Duration, Instant};

use orion_core::{ContainerState, Runtime};

use crate::sshd_or_skip;
use crate::support::{launch_for, owner, pgrep, task};

/// A task that exits on TERM stops well within its grace with its own code,
/// and the child it forked dies with it (the group was signalled).
#[tokio::test]
async fn stop_sends_term_to_the_process_group() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let marker = format!("orion-stop-{}", uuid::Uuid::new_v4().simple());
    // The child carries the marker and would outlive its parent if only
    // the parent were signalled.
    let script =
        format!("trap 'exit 0' TERM; sh -c 'sleep 1000; : {marker}' & while :; do sleep 0.1; done");
    let launch = launch_for(&owner(), task(&["sh", "-c", &script]));
    let id = rt.create(&launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    assert!(pgrep(&marker), "the child runs");
    let started = Instant::now();
    rt.stop(&id, Duration::from_secs(20)).await.expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited out the grace"
    );
    let info = rt.inspect(&id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Exited { code: 0 });
    let deadline = Instant::now() + Duration::from_secs(5);
    while pgrep(&marker) {
        assert!(Instant::now() < deadline, "the child outlived the stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.remove(&id).await.expect("remove");
}

/// A task that ignores TERM is killed once the grace has passed: 137.
#[tokio::test]
async fn stop_kills_a_task_that_ignores_term_after_the_grace() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let stubborn = "trap '' TERM; while :; do sleep 0.1; done";
    let launch = launch_for(&owner(), task(&["sh", "-c", stubborn]));
    let id = rt.create(&launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    let started = Instant::now();
    rt.stop(&id, Duration::from_secs(1)).await.expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before the grace: {took:?}"
    );
    let info = rt.inspect(&id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Exited { code: 137 });
    rt.remove(&id).await.expect("remove");
}
