//! Embedding a three-node cluster in one process: three managers, each with its
//! own durable Raft store and gossip on loopback ports (the runtime is Orion's
//! fake, so no engine is needed), joined through the first one's HTTP API. A
//! job submitted through one node runs across the cluster, is seen from every
//! replica, and survives the leader's shutdown.
//!
//! ```text
//! cargo run -p orion --example three_nodes
//! ```
//!
//! It also runs as a test (`cargo test -p orion --example three_nodes`).

use std::path::Path;
use std::time::Duration;

use orion::{Cluster, JobSpec, Node};
use orion_core::testing::FakeRuntime;

/// One node: a manager named `name` in `dir/name`, joining `first` if given.
async fn node(name: &str, dir: &Path, first: Option<&Cluster>) -> anyhow::Result<Cluster> {
    let join = first.and_then(|f| f.http_addr()).map(|a| a.to_string());
    let mut builder = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .loopback_ports()
        .join(join.clone());
    if let Some(first) = first {
        // The first node made the cluster CA and a join token for each role
        // (kept in its data dir); joining takes the manager one.
        let token = first
            .join_token(orion::NodeRole::Manager)
            .ok_or_else(|| anyhow::anyhow!("the first node holds no join token"))?;
        builder = builder.join_token(token);
    }
    let cluster = builder.runtime(FakeRuntime::new()).start().await?;
    cluster.ready(Duration::from_secs(30)).await?;
    Ok(cluster)
}

/// Starts the cluster, runs a job on it, loses the leader, and shuts down.
async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let n1 = node("n1", dir.path(), None).await?;
    let n2 = node("n2", dir.path(), Some(&n1)).await?;
    let n3 = node("n3", dir.path(), Some(&n1)).await?;
    println!(
        "leader: {:?}, nodes: {}",
        n1.leader().leader,
        n1.nodes().len()
    );

    let web = JobSpec::service("web", "demo")
        .replicas(3)
        .resources(0.1, 32);
    n2.submit(web.distinct_hosts(true)).await?; // a follower forwards it
    for a in n3.wait_running("web", 3, Duration::from_secs(30)).await? {
        println!("{} runs on {}", a.id, a.node.unwrap_or_default());
    }

    // Lose the leader: the other two elect one and keep taking writes.
    let nodes = [n1, n2, n3];
    let leader = nodes[0].leader().leader.unwrap_or_default();
    let (gone, left): (Vec<_>, Vec<_>) = nodes.into_iter().partition(|n| *n.node_id() == leader);
    gone[0].shutdown().await;
    let job = left[0]
        .submit(JobSpec::service("api", "demo").resources(0.1, 16))
        .await?;
    left[1]
        .wait_running("api", 1, Duration::from_secs(30))
        .await?;
    println!(
        "{leader} shut down; api v{} runs, leader now {:?}",
        job.version,
        left[0].leader().leader
    );
    for n in left {
        n.shutdown().await;
    }
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_embedded_nodes_run_a_job_and_survive_the_leader() {
        super::run().await.unwrap();
    }
}
