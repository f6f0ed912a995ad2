//! A data dir whose store is gone, emptied or damaged: the node refuses to
//! start with one line naming the file and what to do — never a new, empty
//! cluster, never a panic.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Starts the node on `spec`'s data dir as `agent` would, without waiting:
/// its exit status and stderr.
fn start_and_exit(spec: &NodeSpec) -> (bool, String) {
    let (lo, hi) = spec.port_range;
    let mut child = Command::new(BIN)
        .args(["agent", "--insecure-dev", "--node-id", &spec.id])
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args([
            "--http",
            &spec.http.to_string(),
            "--raft",
            &spec.raft.to_string(),
        ])
        .args([
            "--gossip",
            &spec.gossip.to_string(),
            "--port-range",
            &format!("{lo}-{hi}"),
        ])
        .env("ORION_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), err);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    (true, "still running after 10 s: it started".into())
}

#[tokio::test]
async fn a_store_deleted_emptied_or_damaged_is_refused_naming_it() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-store"), dir.path());
    let _cleanup = Containers(vec![spec.id.clone()]);
    let mut node = Node::start_ready(&spec).await;
    submit(&spec.addr(), &web_json("kept", 1)).await.unwrap();
    node.terminate();
    let file = spec.data_dir.join("store/orion.redb");
    let good = std::fs::read(&file).unwrap();

    std::fs::write(&file, b"").unwrap();
    let (ok, err) = start_and_exit(&spec);
    assert!(!ok, "{err}");
    assert!(
        err.contains("orion.redb is empty") && err.contains("not starting a new, empty cluster"),
        "{err}"
    );
    assert!(
        !err.contains("stack backtrace") && err.trim().lines().count() == 1,
        "one line: {err}"
    );

    std::fs::remove_file(&file).unwrap();
    let (ok, err) = start_and_exit(&spec);
    assert!(!ok && err.contains("is gone"), "{err}");

    let mut bad = good.clone();
    let len = bad.len();
    for b in &mut bad[len / 2..(len / 2 + 4096).min(len)] {
        *b = 0xa5;
    }
    // The page headers live at the start: damage those.
    for b in &mut bad[..4096.min(len)] {
        *b = 0x5a;
    }
    std::fs::write(&file, &bad).unwrap();
    let (ok, err) = start_and_exit(&spec);
    assert!(!ok, "{err}");
    assert!(
        err.contains("orion.redb is damaged") && err.contains("Restore the data dir"),
        "{err}"
    );
    assert!(
        !err.contains("stack backtrace") && !err.contains("panicked at"),
        "{err}"
    );

    // Put back, it starts with its job.
    std::fs::write(&file, &good).unwrap();
    let _node = Node::start_ready(&spec).await;
    let jobs = get_json(&format!("{}/v1/jobs", spec.addr())).await.unwrap();
    assert_eq!(jobs[0]["name"], "kept", "{jobs}");
}
