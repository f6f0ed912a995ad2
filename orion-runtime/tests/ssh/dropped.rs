//! A connection that drops while a task runs is reported as such, never as a
//! success.

use std::time::Duration;

use orion_core::{ContainerState, Runtime};

use crate::sshd_or_skip;
use crate::support::{exited, kill9, launch_for, owner, task};

/// `sleep 30` runs; the server's processes are killed (the listener and the
/// session's sshd, not the sleep): the task is Exited 255 with "the SSH
/// connection to ... dropped while the task ran".
#[tokio::test]
async fn a_connection_dropped_mid_task_is_not_a_success() {
    let mut sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let launch = launch_for(&owner(), task(&["sleep", "30"]));
    let id = rt.create(&launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    assert_eq!(
        rt.inspect(&id).await.expect("inspect").state,
        ContainerState::Running
    );

    let orphans = sshd.kill_sshd_only();
    let info = exited(&rt, &id, Duration::from_secs(15)).await;
    kill9(&orphans);
    assert_eq!(info.state, ContainerState::Exited { code: 255 }, "{info:?}");
    let error = info.error.expect("an error");
    assert_eq!(
        error,
        format!(
            "the SSH connection to {} dropped while the task ran",
            sshd.target()
        )
    );
}
