//! Embedding Orion: a whole node inside this program, on the local Docker engine.
//!
//! Starts a node (durable Raft store in a temporary directory, gossip and HTTP
//! API on free loopback ports), runs the demo web job (building its image
//! locally when absent), prints where it answers, then stops it and shuts down.
//!
//! ```text
//! cargo run -p orion --example embed
//! ```
//!
//! It runs as a test too (`cargo test -p orion --example embed`); without an
//! engine it says so and passes, except under CI (`CI` set, as `true` or `1`).

use std::time::Duration;

use orion::{image, DockerRuntime, JobSpec, Node};

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

async fn run() -> anyhow::Result<()> {
    let docker = DockerRuntime::connect_local()?;
    image::ensure_demo_image(&docker, image::DEMO_IMAGE).await?;
    let data = tempfile::tempdir()?;

    let cluster = Node::builder()
        .node_id("embedded")
        .data_dir(data.path())
        .loopback_ports()
        .runtime(docker)
        .start()
        .await?;
    cluster.ready(Duration::from_secs(10)).await?;

    let spec = JobSpec::service("hello", image::DEMO_IMAGE)
        .command(image::DEMO_COMMAND.iter().copied())
        .port("http", 80)
        .replicas(2)
        .resources(0.1, 32);
    let job = cluster.submit(spec).await?;
    println!("submitted {} version {}", job.name, job.version);
    for a in cluster
        .wait_running("hello", 2, Duration::from_secs(60))
        .await?
    {
        println!(
            "{} runs on {}: {}",
            a.id,
            a.node.unwrap_or_default(),
            a.ports[0]
        );
    }

    // Stop the job and wait until its containers are gone before shutting down:
    // a node that shuts down leaves its containers running, to adopt them later.
    cluster.stop_job("hello", false).await?;
    cluster
        .wait_stopped("hello", Duration::from_secs(60))
        .await?;
    cluster.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_embedded_node_runs_the_demo_job_on_docker() {
        let reachable = match orion::DockerRuntime::connect_local() {
            Ok(d) => orion::Runtime::ping(&d).await.is_ok(),
            Err(_) => false,
        };
        if !reachable {
            assert!(
                !orion_core::testing::in_ci(),
                "the Docker engine is unreachable in CI"
            );
            eprintln!("SKIP: docker engine unreachable");
            return;
        }
        super::run().await.unwrap();
    }
}
