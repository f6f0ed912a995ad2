//! Orion, the embeddable container orchestrator, in one crate.
//!
//! A whole cluster node — Raft-replicated state, gossip membership, the
//! scheduler, the node agent driving Docker, the HTTP API — runs in-process
//! behind one builder:
//!
//! ```no_run
//! use orion::{DockerRuntime, JobSpec, Node};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Node::builder()
//!     .data_dir("/var/lib/orion")
//!     .runtime(DockerRuntime::connect_local()?)
//!     .start()
//!     .await?;
//! let job = cluster.submit(JobSpec::service("web", "nginx").port("http", 80).replicas(3)).await?;
//! cluster.wait_running("web", 3, std::time::Duration::from_secs(60)).await?;
//! println!("web is at version {}", job.version);
//! # Ok(()) }
//! ```
//!
//! A second node joins the first with `.join(["<first node's HTTP address>"])`.
//!
//! # Layout
//!
//! - [`Node`] / [`NodeBuilder`] / [`NodeConfig`]: a whole node from one config,
//!   with every default in one place; it opens [`RaftStore`] (bootstrap or join),
//!   starts [`ChitchatMembership`], and hands both to the core.
//! - [`Cluster`]: the running node's handle (`orion_core::Cluster`), the one
//!   handle type. [`Cluster::builder`] is the core's builder for callers that
//!   bring every seam themselves (fakes in tests, a store of their own).
//! - Everything else is re-exported from `orion-core` (the model, the seams, the
//!   scheduler, the API), `orion-runtime` ([`DockerRuntime`]), `orion-store` and
//!   `orion-gossip`.

mod node;

pub use node::{
    is_autolocked, parse_port_range, ConfigError, Node, NodeBuilder, NodeConfig, NodeError,
    DATA_KEY_FILE, MANAGEMENT_TOKEN_FILE, TLS_DIR,
};
pub use orion_core::*;
pub use orion_gossip::{ChitchatMembership, GossipConfig};
pub use orion_runtime::{
    image, DockerConfig, DockerRuntime, ProcessConfig, ProcessRuntime, SshConfig, SshRuntime,
    SshTarget,
};
pub use orion_store::{Engine, RaftStore, RaftStoreConfig};
