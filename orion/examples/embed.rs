//! Embedding Orion: a whole single-node cluster inside this program.
//!
//! Starts a node on the local Docker engine with its store in a temporary
//! directory, runs the demo web job (building its image from the local busybox
//! when absent), prints where it answers, then stops it and shuts down.
//!
//! ```text
//! cargo run -p orion --example embed
//! ```

use std::time::Duration;

use futures::StreamExt;
use orion::{image, AllocState, Cluster, DockerRuntime, JobSpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let docker = DockerRuntime::connect_local()?;
    image::ensure_demo_image(&docker, image::DEMO_IMAGE).await?;
    let data = tempfile::tempdir()?;

    let cluster = Cluster::builder()
        .node_id("embedded")
        .data_dir(data.path())
        .runtime(docker)
        .start()
        .await?;
    cluster.ready(Duration::from_secs(10)).await?;

    let mut changes = cluster.watch();
    let spec = JobSpec::service("hello", image::DEMO_IMAGE)
        .command(image::DEMO_COMMAND.iter().copied())
        .port("http", 80)
        .replicas(2)
        .resources(0.1, 32);
    let job = cluster.submit(spec).await?;
    println!("submitted {} version {}", job.name, job.version);

    // Follow committed changes until both replicas run.
    while let Some(batch) = changes.next().await {
        let running: Vec<_> = cluster
            .allocations(Some("hello"))
            .into_iter()
            .filter(|a| a.state == AllocState::Running)
            .collect();
        if running.len() == 2 {
            for a in running {
                println!(
                    "{} runs on {}: {}",
                    a.id,
                    a.node.unwrap_or_default(),
                    a.ports[0]
                );
            }
            break;
        }
        tracing_like(batch.index);
    }
    // Stop the job and wait until its containers are gone before shutting down:
    // a node that shuts down leaves its containers running, to adopt them later.
    cluster.stop_job("hello", false).await?;
    while !cluster
        .allocations(Some("hello"))
        .iter()
        .all(|a| a.state.is_terminal())
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await;
    Ok(())
}

fn tracing_like(index: u64) {
    eprintln!("  … committed index {index}");
}
