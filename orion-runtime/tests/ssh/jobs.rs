//! Jobs as Cronium runs them: scripts with their exit codes, output through
//! `logs`, the environment and port convention, `exec` in the task's directory.

use std::time::Duration;

use orion_core::{ContainerState, PortBinding, Protocol, Runtime};
use orion_runtime::ssh::SshRuntime;

use crate::sshd_or_skip;
use crate::support::{exited, launch_for, logs, owner, run_to_end, script_task, task};

/// A script's exit code comes back (`exit 3` is Exited 3), its stdout and
/// stderr are readable through `logs`, and the task sees its env, its secret
/// env and `ORION_PORT_<NAME>` / `ORION_ADDR_<NAME>` for its ports.
#[tokio::test]
async fn a_script_job_reports_its_output_env_and_exit_code() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let mut spec = script_task(
        "echo hello\necho \"port=$ORION_PORT_HTTP addr=$ORION_ADDR_HTTP admin=$ORION_PORT_ADMIN_API\"\n\
         echo \"greeting=$GREETING secret=$TOKEN\"\necho oops >&2\nexit 3\n",
    );
    spec.env
        .insert("GREETING".into(), "it's a 'quoted' $value".into());
    let mut launch = launch_for(&owner(), spec);
    launch.ports = vec![port("http", 18080), port("admin-api", 18081)];
    launch.secret_env.insert(
        "TOKEN".into(),
        orion_core::secret::Plaintext::new(b"s3cret".to_vec()),
    );
    let (id, info) = run_to_end(&rt, &launch).await;
    assert_eq!(info.state, ContainerState::Exited { code: 3 }, "{info:?}");
    assert_eq!(info.error, None);
    let (out, err) = logs(&rt, &id, false).await;
    assert_eq!(
        out,
        "hello\nport=18080 addr=127.0.0.1:18080 admin=18081\n\
         greeting=it's a 'quoted' $value secret=s3cret\n"
    );
    assert_eq!(err, "oops\n");
    let record = sshd
        .dir
        .path()
        .join("data")
        .join(&launch.alloc_id)
        .join("task.json");
    let record = std::fs::read_to_string(record).expect("the task's record");
    assert!(record.contains("GREETING"), "{record}");
    assert!(
        !record.contains("s3cret"),
        "a secret reached the disk: {record}"
    );
    assert!(!sshd.log().contains("s3cret"));
    rt.remove(&id).await.expect("remove");
}

/// `logs(follow)` streams output as it comes and ends when the task does; a
/// command with args runs with them.
#[tokio::test]
async fn following_logs_streams_until_the_task_ends() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let mut spec = task(&["sh", "-c"]);
    spec.args = vec!["echo first; sleep 1; echo second".into()];
    let launch = launch_for(&owner(), spec);
    let id = rt.create(&launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    let (out, _) = logs(&rt, &id, true).await;
    assert_eq!(out, "first\nsecond\n");
    let info = exited(&rt, &id, Duration::from_secs(5)).await;
    assert_eq!(info.state, ContainerState::Exited { code: 0 });
    rt.remove(&id).await.expect("remove");
}

/// `exec` runs in the task's remote temporary directory with its env; `remove`
/// deletes that directory.
#[tokio::test]
async fn exec_runs_in_the_task_directory_and_remove_deletes_it() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    let mut spec = task(&["sleep", "1000"]);
    spec.env.insert("COLOUR".into(), "blue".into());
    let launch = launch_for(&owner(), spec);
    let id = rt.create(&launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    let cmd = [
        "sh".to_string(),
        "-c".into(),
        "pwd; echo $COLOUR; exit 4".into(),
    ];
    let out = rt.exec(&id, &cmd).await.expect("exec");
    assert_eq!(out.exit_code, 4);
    let mut lines = out.stdout.lines();
    let dir = lines.next().expect("pwd").to_string();
    assert!(dir.contains("/orion-"), "{dir}");
    assert_eq!(lines.next(), Some("blue"));
    assert!(
        std::path::Path::new(&dir).is_dir(),
        "the server is this host"
    );
    rt.remove(&id).await.expect("remove");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was removed");
}

/// Images are refused (the task's image is not run), `stats` is unsupported.
#[tokio::test]
async fn images_are_refused_and_stats_unsupported() {
    let sshd = sshd_or_skip!();
    let rt: SshRuntime = sshd.runtime();
    rt.ensure_image("").await.expect("no image is fine");
    let e = rt.ensure_image("alpine:3").await.expect_err("images");
    assert!(e.to_string().contains("not images"), "{e}");
    let launch = launch_for(&owner(), task(&["true"]));
    let id = rt.create(&launch).await.expect("create").id;
    let e = rt.stats(&id).await.expect_err("stats");
    assert!(matches!(e, orion_core::RuntimeError::Unsupported(_)), "{e}");
    rt.remove(&id).await.expect("remove");
}

fn port(name: &str, host_port: u16) -> PortBinding {
    PortBinding {
        name: name.to_string(),
        container_port: host_port,
        host_port,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".to_string(),
    }
}
