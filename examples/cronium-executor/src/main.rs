//! `cronium-executor JOB.json`: runs one Cronium job on an Orion node embedded
//! in this process (on the local Docker engine, data in a temporary
//! directory) and prints each update as a JSON line; exits 0 when the job
//! completed, 2 when it failed, 1 on an error.

use std::time::Duration;

use cronium_executor::{CroniumJob, ExecutionUpdate, Executor};
use futures::StreamExt;

#[tokio::main]
async fn main() {
    match run().await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run() -> anyhow::Result<i32> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: cronium-executor JOB.json"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let job: CroniumJob =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let data = tempfile::tempdir()?;
    let cluster = orion::Node::builder()
        .node_id("cronium-executor")
        .data_dir(data.path())
        .loopback_ports()
        .runtime(orion::DockerRuntime::connect_local()?)
        .start()
        .await?;
    cluster.ready(Duration::from_secs(30)).await?;
    let exec = Executor::new(cluster);
    if let Err(errors) = exec.validate(&job) {
        for e in errors {
            eprintln!("invalid job: {e}");
        }
        return Ok(1);
    }
    let mut code = 1;
    let mut updates = exec.execute(&job);
    while let Some(u) = updates.next().await {
        println!("{}", serde_json::to_string(&u)?);
        if let ExecutionUpdate::Complete { status, .. } = &u {
            code = if status == "completed" { 0 } else { 2 };
        }
    }
    exec.cleanup(&job).await;
    exec.cluster().shutdown().await;
    Ok(code)
}
