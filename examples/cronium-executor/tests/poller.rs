//! The queue poller against a small real HTTP queue server on 127.0.0.1: it
//! acknowledges the jobs, runs them by priority within its concurrency limit
//! on real Docker, reports their statuses and streams their logs, and backs
//! off while the queue is empty.

mod common;
use common::Cleanup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use cronium_executor::{CroniumJob, Executor, LogEntry, Poller, PollerConfig};
use orion::{image, DockerRuntime, Node};
use serde_json::{json, Value};

#[derive(Default)]
struct Queue {
    pending: Vec<CroniumJob>,
    polls: Vec<Instant>,
    acks: Vec<String>,
    statuses: Vec<(String, String, Value)>,
    logs: HashMap<String, Vec<LogEntry>>,
}

type Shared = Arc<Mutex<Queue>>;

async fn serve(q: Shared) -> String {
    let app = Router::new()
        .route(
            "/api/internal/jobs/queue",
            get(|State(q): State<Shared>, Query(p): Query<HashMap<String, usize>>| async move {
                let mut q = q.lock().unwrap();
                q.polls.push(Instant::now());
                let n = p.get("limit").copied().unwrap_or(1).min(q.pending.len());
                Json(q.pending.drain(..n).collect::<Vec<_>>())
            }),
        )
        .route(
            "/api/internal/jobs/{id}/ack",
            post(|State(q): State<Shared>, Path(id): Path<String>| async move {
                q.lock().unwrap().acks.push(id);
                Json(json!({}))
            }),
        )
        .route(
            "/api/internal/jobs/{id}/status",
            post(|State(q): State<Shared>, Path(id): Path<String>, Json(b): Json<Value>| async move {
                let status = b["status"].as_str().unwrap_or_default().to_string();
                q.lock().unwrap().statuses.push((id, status, b["details"].clone()));
                Json(json!({}))
            }),
        )
        .route(
            "/api/internal/jobs/{id}/logs",
            post(|State(q): State<Shared>, Path(id): Path<String>, Json(b): Json<Vec<LogEntry>>| async move {
                q.lock().unwrap().logs.entry(id).or_default().extend(b);
                Json(json!({}))
            }),
        )
        .with_state(q);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_runs_queued_jobs_by_priority_and_reports_them() {
    let docker = DockerRuntime::connect_local().expect("docker client");
    if !common::engine(&docker).await {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let node = format!("cronium-poll-{}", std::process::id());
    let _cleanup = Cleanup(node.clone());
    let cluster = Node::builder()
        .node_id(node.clone())
        .data_dir(data.path())
        .loopback_ports()
        .port_range((31100, 31131))
        .script_image((orion::spec::Lang::Sh, image::DEMO_IMAGE))
        .runtime(docker)
        .start()
        .await
        .unwrap();
    cluster.ready(Duration::from_secs(30)).await.unwrap();

    let q: Shared = Arc::default();
    for (id, priority) in [("low", 10), ("high", 90), ("mid", 50)] {
        q.lock().unwrap().pending.push(
            serde_json::from_value(json!({
                "id": id, "priority": priority,
                "script": { "lang": "sh", "content": format!("echo {id}-1; echo {id}-2") }
            }))
            .unwrap(),
        );
    }
    let base = serve(q.clone()).await;
    let mut config = PollerConfig::new(base);
    config.concurrency = 1;
    config.min_interval = Duration::from_millis(50);
    config.max_interval = Duration::from_millis(400);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poller = tokio::spawn(Poller::new(Executor::new(cluster.clone()), config).run(stopped));

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = q
            .lock()
            .unwrap()
            .statuses
            .iter()
            .filter(|(_, s, _)| s == "completed")
            .count();
        if done == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not all jobs completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let it poll an empty queue for a while, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    poller.await.unwrap();

    let q = q.lock().unwrap();
    let mut acks = q.acks.clone();
    acks.sort();
    assert_eq!(acks, ["high", "low", "mid"]);
    // One at a time, highest priority first.
    let started: Vec<&str> = q
        .statuses
        .iter()
        .filter(|(_, s, d)| s == "running" && d.get("attempt").is_none())
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(started, ["high", "mid", "low"], "{:?}", q.statuses);
    for id in ["high", "mid", "low"] {
        let s: Vec<&str> = q
            .statuses
            .iter()
            .filter(|(j, _, _)| j == id)
            .map(|(_, s, _)| s.as_str())
            .collect();
        assert_eq!(
            s,
            ["queued", "running", "running", "completed"],
            "{id}: {s:?}"
        );
        let done = q
            .statuses
            .iter()
            .find(|(j, s, _)| j == id && s == "completed")
            .unwrap();
        assert_eq!(done.2["exit_code"], 0);
        let logs: Vec<(u64, &str)> = q.logs[id]
            .iter()
            .map(|l| (l.seq, l.line.as_str()))
            .collect();
        assert_eq!(
            logs,
            [
                (1, format!("{id}-1").as_str()),
                (2, format!("{id}-2").as_str())
            ]
        );
    }
    // Polls wait while every slot is taken; then, on an empty queue, the
    // gaps double from the minimum up to the maximum (400 ms).
    let gaps: Vec<Duration> = q.polls.windows(2).map(|w| w[1] - w[0]).collect();
    let empty: Vec<Duration> = gaps
        .iter()
        .copied()
        .skip_while(|g| *g > Duration::from_millis(300))
        .collect();
    assert!(empty.len() >= 3, "{gaps:?}");
    assert!(
        empty
            .windows(2)
            .all(|w| w[1] + Duration::from_millis(30) >= w[0]),
        "{gaps:?}"
    );
    assert!(empty[1] >= empty[0] * 3 / 2, "{gaps:?}");
    let last = *empty.last().unwrap();
    assert!(
        last >= Duration::from_millis(380) && last <= Duration::from_millis(600),
        "{gaps:?}"
    );
}
