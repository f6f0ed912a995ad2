//! The executor on the real engine: script jobs on an embedded node, and the
//! whole update stream of each — lines in order with their numbers, status
//! changes, the exit code; a timeout; a retry whose second attempt succeeds.

mod common;
use common::Cleanup;

use std::time::Duration;

use cronium_executor::{CroniumJob, ExecutionUpdate, Executor};
use futures::StreamExt;
use orion::{image, DockerRuntime, Node};

fn node_id() -> String {
    format!("cronium-{}", std::process::id())
}

async fn executor(data: &std::path::Path) -> Option<Executor> {
    let docker = DockerRuntime::connect_local().expect("docker client");
    if !common::engine(&docker).await {
        return None;
    }
    let cluster = Node::builder()
        .node_id(node_id())
        .data_dir(data)
        .loopback_ports()
        .port_range((31000, 31031))
        .script_image((orion::spec::Lang::Sh, image::DEMO_IMAGE))
        .runtime(docker)
        .start()
        .await
        .expect("an embedded node");
    cluster.ready(Duration::from_secs(30)).await.unwrap();
    Some(Executor::new(cluster))
}

async fn run(exec: &Executor, job: serde_json::Value) -> Vec<ExecutionUpdate> {
    let job: CroniumJob = serde_json::from_value(job).unwrap();
    exec.validate(&job).unwrap();
    let updates: Vec<ExecutionUpdate> = tokio::time::timeout(
        Duration::from_secs(90),
        exec.execute(&job).collect::<Vec<_>>(),
    )
    .await
    .expect("the job to finish");
    exec.cleanup(&job).await;
    updates
}

fn lines(updates: &[ExecutionUpdate]) -> Vec<(u64, String)> {
    updates
        .iter()
        .filter_map(|u| match u {
            ExecutionUpdate::Log { seq, line, .. } => Some((*seq, line.clone())),
            _ => None,
        })
        .collect()
}

fn statuses(updates: &[ExecutionUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|u| match u {
            ExecutionUpdate::Status { status } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_stream_their_lines_status_and_exit_code_time_out_and_retry() {
    let data = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(node_id());
    let Some(exec) = executor(data.path()).await else {
        return;
    };
    // A run that succeeds: every line, numbered in order, then the exit code.
    let ok = run(
        &exec,
        serde_json::json!({
            "id": "ok", "script": { "lang": "sh", "content": "for i in 1 2 3 4 5; do echo line $i; done", "args": [] }
        }),
    )
    .await;
    let want: Vec<(u64, String)> = (1..=5).map(|i| (i, format!("line {i}"))).collect();
    assert_eq!(lines(&ok), want, "{ok:?}");
    assert_eq!(statuses(&ok), ["queued", "running"], "{ok:?}");
    assert_eq!(
        ok.last(),
        Some(&ExecutionUpdate::Complete {
            status: "completed".into(),
            exit_code: Some(0)
        })
    );

    // A timeout: killed, failed, and said so.
    let slow = run(
        &exec,
        serde_json::json!({
            "id": "slow", "timeout": "2s",
            "script": { "lang": "sh", "content": "echo started; sleep 30" }
        }),
    )
    .await;
    assert_eq!(lines(&slow), [(1, "started".to_string())], "{slow:?}");
    assert!(
        slow.iter().any(|u| matches!(u, ExecutionUpdate::Error { message } if message.contains("timed out after 2s"))),
        "{slow:?}"
    );
    assert!(
        matches!(slow.last(), Some(ExecutionUpdate::Complete { status, .. }) if status == "failed")
    );

    // A retry: the first attempt fails with 3, the second (which finds what
    // the first left in /workspace) succeeds; lines number on across them.
    let retry = run(
        &exec,
        serde_json::json!({
            "id": "retry", "retries": 1, "retry_delay": "1s",
            "script": { "lang": "sh", "content": "if [ -f /workspace/once ]; then echo second; exit 0; fi; touch /workspace/once; echo first; exit 3" }
        }),
    )
    .await;
    assert_eq!(
        lines(&retry),
        [(1, "first".to_string()), (2, "second".to_string())],
        "{retry:?}"
    );
    assert_eq!(
        statuses(&retry),
        ["queued", "running", "retrying", "running"],
        "{retry:?}"
    );
    assert!(
        retry.contains(&ExecutionUpdate::Progress { attempt: 2, of: 2 }),
        "{retry:?}"
    );
    assert_eq!(
        retry.last(),
        Some(&ExecutionUpdate::Complete {
            status: "completed".into(),
            exit_code: Some(0)
        })
    );

    // A job that cannot run is refused before anything is written.
    let bad: CroniumJob = serde_json::from_value(serde_json::json!({
        "id": "bad", "cpu": 0.0, "script": { "lang": "sh", "content": "true" }
    }))
    .unwrap();
    let errors = exec.validate(&bad).unwrap_err();
    assert!(
        errors.iter().any(|e| e.field == "task.resources.cpu"),
        "{errors:?}"
    );
    exec.cluster().shutdown().await;
}
