//! The history checker's short run (issue 15): 3 managers and a worker, each
//! in its own container, six clients on six jobs for 60 s under every kind of
//! fault; the recorded history must be linearizable and every invariant hold.
//! The long run is `orion-history --duration 30m` (see its crate's docs).

use std::time::Duration;

use orion_history::nemesis::Fault;
use orion_history::{run, Config};

use crate::support::*;

/// `ORION_HISTORY_SEED` replays a run; else the seed is random and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_store_stays_linearizable_under_kills_pauses_restarts_and_partitions() {
    if !engine().await {
        return;
    }
    let seed = std::env::var("ORION_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let out = std::env::temp_dir().join(format!("orion-history-{seed}"));
    let cfg = Config {
        binary: BIN.into(),
        duration: Duration::from_secs(60),
        seed,
        managers: 3,
        workers: 1,
        clients: 6,
        keys: 6,
        faults: Fault::ALL.to_vec(),
        out: out.clone(),
        name: node_id("hist"),
        consistent_reads: true,
    };
    let report = run(&cfg).await.expect("the run could be made");
    let text = report.text(&cfg);
    println!("{text}files: {}", out.display());
    assert!(
        report.passed(),
        "the history checker found anomalies (seed {seed}; replay with ORION_HISTORY_SEED={seed}); \
         the history, the fault schedule and the report are in {}:\n{text}",
        out.display()
    );
    // A run that checked nothing or made no fault proves nothing.
    assert!(
        report.checked >= 200,
        "only {} operations checked",
        report.checked
    );
    assert!(report.faults >= 5, "only {} faults made", report.faults);
    assert!(report.ok >= 100, "only {} operations succeeded", report.ok);
    assert!(
        report.samples >= 30,
        "only {} container samples",
        report.samples
    );
    let _ = std::fs::remove_dir_all(&out);
}
