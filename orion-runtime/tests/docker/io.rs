//! Logs, stats and exec.

use std::time::Duration;

use futures::StreamExt;
use orion_core::runtime::{LogStream, Logs, Runtime};

use crate::ctx_or_skip;
use crate::support::{eventually, task, POLITE};

/// Collects a log stream into (stdout, stderr), failing after 15 s.
async fn collect(mut logs: Logs) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let all = async {
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.expect("log chunk");
            match chunk.stream {
                LogStream::Stdout => out.extend_from_slice(&chunk.data),
                LogStream::Stderr => err.extend_from_slice(&chunk.data),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), all)
        .await
        .expect("the log stream ends");
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// `logs` returns what the task wrote, stdout and stderr kept apart.
#[tokio::test]
async fn logs_keep_stdout_and_stderr_apart() {
    let ctx = ctx_or_skip!();
    let script = "echo to-out; echo to-err >&2";
    let id = ctx
        .run(&ctx.launch("n1", task(&["/bin/sh", "-c", script])))
        .await;
    eventually("the task to exit", Duration::from_secs(15), || async {
        let state = ctx.rt.inspect(&id).await.expect("inspect").state;
        matches!(state, orion_core::ContainerState::Exited { .. }).then_some(())
    })
    .await;
    let (out, err) = collect(ctx.rt.logs(&id, false).await.expect("logs")).await;
    assert_eq!(out, "to-out\n");
    assert_eq!(err, "to-err\n");
}

/// With `follow`, the stream delivers output written after it opened and ends when the
/// task exits.
#[tokio::test]
async fn followed_logs_stream_until_the_task_exits() {
    let ctx = ctx_or_skip!();
    let script = "for i in 1 2 3; do echo line-$i; sleep 0.3; done";
    let id = ctx
        .run(&ctx.launch("n1", task(&["/bin/sh", "-c", script])))
        .await;
    let (out, _) = collect(ctx.rt.logs(&id, true).await.expect("logs")).await;
    assert_eq!(out, "line-1\nline-2\nline-3\n");
}

/// `stats` samples a running container once: memory in use, its limit, CPU time and
/// processes.
#[tokio::test]
async fn stats_sample_a_running_container() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    let stats = ctx.rt.stats(&id).await.expect("stats");
    assert!(stats.pids >= 1, "{stats:?}");
    assert!(stats.memory_bytes > 0, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, 64 * 1024 * 1024);
}

/// `exec` runs a command in the running container and returns its stdout, stderr and
/// exit code.
#[tokio::test]
async fn exec_collects_output_and_exit_code() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    let cmd: Vec<String> = ["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"]
        .map(String::from)
        .to_vec();
    let out = ctx.rt.exec(&id, &cmd).await.expect("exec");
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "oops\n");
    let ok = ctx
        .rt
        .exec(&id, &["/bin/true".to_string()])
        .await
        .expect("exec");
    assert_eq!(ok.exit_code, 0);
    assert!(!ok.truncated);
}

/// A command printing 50 MB keeps only the first MiB of it, says it was cut,
/// and still reports how it exited.
#[tokio::test]
async fn exec_output_is_capped() {
    let ctx = ctx_or_skip!();
    let id = ctx.run(&ctx.launch("n1", task(POLITE))).await;
    let cmd: Vec<String> = [
        "/bin/sh",
        "-c",
        "head -c 50000000 /dev/zero | tr '\\0' a; echo done >&2; exit 4",
    ]
    .map(String::from)
    .to_vec();
    let out = ctx.rt.exec(&id, &cmd).await.expect("exec");
    assert_eq!(out.exit_code, 4);
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), orion_core::runtime::EXEC_OUTPUT_MAX);
    assert!(out.stdout.bytes().all(|b| b == b'a'));
    assert_eq!(out.stderr, "done\n");
}

/// A launch's `secret_env` reaches the container's environment beside
/// `task.env`, and a read-only bind of a file (the agent's secret files) is
/// readable and not writable, shown on tmpfs in the container's mount table.
#[tokio::test]
async fn secret_variables_and_read_only_file_binds_reach_the_task() {
    let ctx = ctx_or_skip!();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a dir on tmpfs");
    let file = shm.path().join("0-db");
    std::fs::write(&file, "s3cret-file").unwrap();
    let mut t = task(POLITE);
    t.env.insert("PLAIN".into(), "p".into());
    t.volumes.push(orion_core::spec::VolumeMount {
        name: None,
        host_path: Some(file.display().to_string()),
        target: "/run/secrets/db".into(),
        read_only: true,
    });
    let mut launch = ctx.launch("n1", t);
    launch.secret_env.insert(
        "DB_PASSWORD".into(),
        orion_core::secret::Plaintext::new(b"s3cret-env".to_vec()),
    );
    let id = ctx.run(&launch).await;
    let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    let out = ctx
        .rt
        .exec(
            &id,
            &sh("echo \"$PLAIN $DB_PASSWORD\"; cat /run/secrets/db"),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout, "p s3cret-env\ns3cret-file", "{out:?}");
    let out = ctx
        .rt
        .exec(&id, &sh("echo x > /run/secrets/db"))
        .await
        .expect("exec");
    assert_ne!(out.exit_code, 0, "the bind is read-only: {out:?}");
    let out = ctx
        .rt
        .exec(&id, &sh("grep ' /run/secrets/db ' /proc/mounts"))
        .await
        .expect("exec");
    assert!(
        out.stdout.starts_with("tmpfs /run/secrets/db tmpfs ro"),
        "{out:?}"
    );
}
