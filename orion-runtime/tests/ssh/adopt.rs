//! Tasks outlive the runtime that started them: a new runtime on the same
//! data dir lists them, and removing one cleans the server up.

use std::time::{Duration, Instant};

use orion_core::{ContainerState, Runtime};

use crate::sshd_or_skip;
use crate::support::{launch_for, owner, pgrep, task};

/// A runtime starts a task and goes away (its connections closed, as when the
/// agent restarts); a new one lists the task as Exited 255 with an error
/// saying it was adopted; removing it kills the old remote process and
/// deletes its remote directory.
#[tokio::test]
async fn a_new_runtime_adopts_and_cleans_up_the_old_ones_tasks() {
    let sshd = sshd_or_skip!();
    let o = owner();
    let marker = format!("orion-adopt-{}", uuid::Uuid::new_v4().simple());
    let script = format!("sleep 1000; : {marker}");
    let launch = launch_for(&o, task(&["sh", "-c", &script]));
    let (id, dir) = {
        let rt = sshd.runtime();
        let id = rt.create(&launch).await.expect("create").id;
        rt.start(&id).await.expect("start");
        let pwd = ["pwd".to_string()];
        let dir = rt
            .exec(&id, &pwd)
            .await
            .expect("exec")
            .stdout
            .trim()
            .to_string();
        rt.shutdown().await;
        (id, dir)
    };
    assert!(pgrep(&marker), "the remote process outlives the connection");

    let rt = sshd.runtime();
    let listed = rt.list(&o).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, ContainerState::Exited { code: 255 });
    let error = listed[0].error.clone().expect("an error");
    assert!(error.contains("adopted after a restart"), "{error}");

    rt.remove(&id).await.expect("remove");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pgrep(&marker) {
        assert!(
            Instant::now() < deadline,
            "the old process survived the remove"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was removed");
    assert!(rt.list(&o).await.expect("list").is_empty());
    assert!(
        sshd.runtime().list(&o).await.expect("list").is_empty(),
        "no record left"
    );
}
