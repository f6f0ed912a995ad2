//! The process runtime on this host: the shared runtime suite, exit codes
//! and signals, logs, the env-port convention, limits (a task over its
//! memory limit is killed and reported OOM where the cgroup allows), and an
//! agent that restarts adopting its running processes by pid and start time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orion_core::model::PortBinding;
use orion_core::runtime::{ContainerState, LogStream, Owner, Runtime, TaskLaunch, OOM_KILLED};
use orion_core::spec::{Protocol, Resources, TaskSpec};
use orion_runtime::process::Limits;
use orion_runtime::{ProcessConfig, ProcessRuntime};

fn task(argv: &[&str]) -> TaskSpec {
    let mut t: TaskSpec = serde_json::from_value(serde_json::json!({
        "command": argv,
        "resources": { "cpu": 0.5, "memory_mb": 64 }
    }))
    .unwrap();
    t.env.insert("GREETING".into(), "hi".into());
    t
}

fn launch(cluster: &str, alloc: &str, task: TaskSpec, ports: Vec<PortBinding>) -> TaskLaunch {
    TaskLaunch {
        cluster_id: cluster.into(),
        node_id: "n1".into(),
        alloc_id: alloc.into(),
        job: "job".into(),
        job_version: 1,
        task,
        ports,
        security: Default::default(),
        secret_env: BTreeMap::new(),
    }
}

fn runtime(dir: &std::path::Path) -> Arc<ProcessRuntime> {
    ProcessRuntime::new(ProcessConfig::new(dir)).unwrap()
}

async fn exited(rt: &ProcessRuntime, id: &str) -> orion_core::ContainerInfo {
    for _ in 0..200 {
        let c = rt.inspect(id).await.unwrap();
        if matches!(c.state, ContainerState::Exited { .. }) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never exited");
}

async fn all_logs(rt: &ProcessRuntime, id: &str) -> (String, String) {
    let mut s = rt.logs(id, false).await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        match c.stream {
            LogStream::Stdout => out.push_str(&String::from_utf8_lossy(&c.data)),
            LogStream::Stderr => err.push_str(&String::from_utf8_lossy(&c.data)),
        }
    }
    (out, err)
}

#[tokio::test]
async fn the_process_runtime_passes_the_runtime_suite() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    orion_core::testing::runtime_suite::run_all(&*rt, "suite-proc", &task(&["sleep", "1000"]))
        .await
        .expect("the process runtime honours the runtime contract");
}

#[tokio::test]
async fn exit_codes_signals_logs_and_ports_come_back_like_dockers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let port = PortBinding {
        name: "http-alt".into(),
        container_port: 8080,
        host_port: 18080,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
    };
    let l = launch(
        "c1",
        "a1",
        task(&[
            "sh",
            "-c",
            "echo $GREETING $ORION_PORT_HTTP_ALT $ORION_ADDR_HTTP_ALT; pwd; echo oops >&2; exit 3",
        ]),
        vec![port],
    );
    let c = rt.create(&l).await.unwrap();
    rt.start(&c.id).await.unwrap();
    let done = exited(&rt, &c.id).await;
    assert_eq!(done.state, ContainerState::Exited { code: 3 });
    let (out, err) = all_logs(&rt, &c.id).await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hi 18080 127.0.0.1:18080"), "{out}");
    assert!(
        lines.next().unwrap().ends_with(&format!("{}/work", c.id)),
        "{out}"
    );
    assert_eq!(err, "oops\n");
    // A signal reports 128 + its number, as Docker does.
    let l = launch("c1", "a2", task(&["sh", "-c", "kill -TERM $$"]), vec![]);
    let c = rt.create(&l).await.unwrap();
    rt.start(&c.id).await.unwrap();
    assert_eq!(
        exited(&rt, &c.id).await.state,
        ContainerState::Exited { code: 143 }
    );
    // Stop: SIGTERM to the group, SIGKILL after the grace for one that
    // ignores it.
    let l = launch(
        "c1",
        "a3",
        task(&["sh", "-c", "trap '' TERM; sleep 1000 & wait"]),
        vec![],
    );
    let c = rt.create(&l).await.unwrap();
    rt.start(&c.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = std::time::Instant::now();
    rt.stop(&c.id, Duration::from_millis(500)).await.unwrap();
    let done = exited(&rt, &c.id).await;
    assert_eq!(done.state, ContainerState::Exited { code: 137 }, "{done:?}");
    assert!(t0.elapsed() >= Duration::from_millis(500));
    // Exec runs in the task's directory with its env; stats read /proc.
    let l = launch("c1", "a4", task(&["sleep", "1000"]), vec![]);
    let c = rt.create(&l).await.unwrap();
    rt.start(&c.id).await.unwrap();
    let out = rt
        .exec(
            &c.id,
            &["sh".into(), "-c".into(), "echo $GREETING; pwd".into()],
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(
        out.stdout.starts_with("hi\n") && out.stdout.trim_end().ends_with("/work"),
        "{out:?}"
    );
    let s = rt.stats(&c.id).await.unwrap();
    assert!(s.pids >= 1 && s.memory_bytes > 0, "{s:?}");
    assert_eq!(s.memory_limit_bytes, 64 << 20);
    for id in ["a1", "a2", "a3", "a4"] {
        let id = format!("orion-c1-{id}");
        rt.remove(&id).await.unwrap();
    }
    // An image is not for this runtime.
    let e = rt.ensure_image("busybox:1").await.unwrap_err();
    assert!(e.to_string().contains("runs commands, not images"), "{e}");
}

#[tokio::test]
async fn an_agent_that_restarts_adopts_its_processes_and_a_reused_pid_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Owner {
        cluster_id: "c2".into(),
        node_id: "n1".into(),
    };
    let id = {
        let rt = runtime(dir.path());
        let c = rt
            .create(&launch("c2", "a1", task(&["sleep", "1000"]), vec![]))
            .await
            .unwrap();
        rt.start(&c.id).await.unwrap();
        c.id
        // The runtime is dropped: the process runs on.
    };
    let rt = runtime(dir.path());
    let listed = rt.list(&owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state,
        ContainerState::Running,
        "adopted, not duplicated"
    );
    // Stopping the adopted process works through its group.
    rt.stop(&id, Duration::from_secs(2)).await.unwrap();
    let done = exited(&rt, &id).await;
    assert!(
        matches!(done.state, ContainerState::Exited { .. }),
        "{done:?}"
    );
    // A record whose pid now belongs to another process (its start time
    // differs) is not that process.
    let record = orion_runtime::process::task_dir(dir.path(), &id).join("record.json");
    let mut r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    r["pid"] = serde_json::json!(std::process::id());
    r["start_time"] = serde_json::json!(1);
    r["exit"] = serde_json::Value::Null;
    std::fs::write(&record, serde_json::to_vec(&r).unwrap()).unwrap();
    drop(rt);
    let rt = runtime(dir.path());
    let c = rt.inspect(&id).await.unwrap();
    assert!(matches!(c.state, ContainerState::Exited { .. }), "{c:?}");
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_task_over_its_memory_limit_is_killed_and_reported_oom() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    eprintln!("limits here: {}", rt.limits().describe());
    let mut t = task(&["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]);
    t.resources = Resources {
        cpu: 0.5,
        memory_mb: 32,
        disk_mb: 0,
    };
    let c = rt.create(&launch("c3", "a1", t, vec![])).await.unwrap();
    rt.start(&c.id).await.unwrap();
    let done = exited(&rt, &c.id).await;
    match rt.limits() {
        Limits::V1 { .. } | Limits::V2 { .. } => {
            assert_eq!(done.state, ContainerState::Exited { code: 137 }, "{done:?}");
            assert_eq!(done.error.as_deref(), Some(OOM_KILLED), "{done:?}");
        }
        Limits::Rlimit { .. } => {
            // setrlimit: the allocation fails instead; dd exits non-zero.
            assert!(
                matches!(done.state, ContainerState::Exited { code } if code != 0),
                "{done:?}"
            );
        }
    }
    rt.remove(&c.id).await.unwrap();
}

/// Without a writable cgroup the runtime says its limits are not enforced
/// (shown in `/health` and `node list`), and caps memory by `ulimit -v`: an
/// allocation over it fails.
#[tokio::test]
async fn without_cgroups_limits_fall_back_to_setrlimit_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(dir.path());
    config.cgroup_root = None;
    let rt = ProcessRuntime::new(config).unwrap();
    let w = rt.warning().expect("a warning");
    assert!(
        w.contains("NOT fully enforced") && w.contains("cpu not at all"),
        "{w}"
    );
    let mut t = task(&["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]);
    t.resources.memory_mb = 32;
    let c = rt.create(&launch("c4", "a1", t, vec![])).await.unwrap();
    rt.start(&c.id).await.unwrap();
    let done = exited(&rt, &c.id).await;
    assert!(
        matches!(done.state, ContainerState::Exited { code } if code != 0),
        "{done:?}"
    );
    let (_, err) = all_logs(&rt, &c.id).await;
    assert!(err.contains("memory") || err.contains("alloc"), "{err}");
    rt.remove(&c.id).await.unwrap();
}

/// A log past the cap is rotated (one old copy kept) while the process
/// writes on, and `logs` serves the old copy then the new file.
#[tokio::test]
async fn logs_past_the_cap_rotate_and_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(dir.path());
    config.log_max_bytes = 4096;
    let rt = ProcessRuntime::new(config).unwrap();
    let script = "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); sleep 0.005; done";
    let c = rt
        .create(&launch("c5", "a1", task(&["sh", "-c", script]), vec![]))
        .await
        .unwrap();
    rt.start(&c.id).await.unwrap();
    exited(&rt, &c.id).await;
    let task_dir = orion_runtime::process::task_dir(dir.path(), &c.id);
    assert!(task_dir.join("stdout.1").exists(), "rotated");
    let size = std::fs::metadata(task_dir.join("stdout")).unwrap().len();
    assert!(
        size < 400 * 40,
        "the current file was truncated: {size} bytes"
    );
    let (out, _) = all_logs(&rt, &c.id).await;
    assert!(
        out.trim_end()
            .ends_with("line-399-xxxxxxxxxxxxxxxxxxxxxxxx"),
        "{}",
        &out[out.len().saturating_sub(200)..]
    );
    rt.remove(&c.id).await.unwrap();
}
