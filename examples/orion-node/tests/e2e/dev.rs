//! `orion-node dev`, the README's main command, end to end.

use std::process::Command;

use crate::support::*;

/// The dev cluster starts three nodes (large, small, gpu), runs the example jobs,
/// prints where each replica landed with an address to open (the gpu job on the
/// gpu node), and with `--once` cleans up after itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_example_jobs_and_cleans_up() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Three API ports from a block below the ephemeral range that no node of this
    // run publishes tasks on (a free port picked by binding 0 says nothing about
    // the two after it, which other tests' client sockets may hold).
    let port = port_range().0;
    let out = Command::new(BIN)
        .args(["dev", "--once", "--http-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ORION_LOG", "warn")
        .output()
        .expect("running orion-node dev");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in ["large", "small", "gpu"] {
        assert!(stdout.contains(&format!("node {node}")), "{stdout}");
    }
    let leads = stdout
        .lines()
        .find(|l| l.contains("(leader)"))
        .unwrap_or_default();
    assert!(
        leads.contains("node large") && leads.contains("manager"),
        "the large node is the manager and leads: {stdout}"
    );
    assert!(
        stdout.contains("32768 MB") && stdout.contains("gpu=true"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("open http://127.0.0.1:").count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("trainer[0] on gpu"), "{stdout}");
    for node in ["large", "small", "gpu"] {
        assert!(
            Containers::of(node).is_empty(),
            "dev left containers on {node}"
        );
    }
}
