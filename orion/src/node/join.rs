//! Joining a cluster: ask a member (any of `join`, in turn) to add this node to
//! the replication group over its HTTP API — over mutual TLS with the
//! certificate it received (see `tls`) on a secure cluster — then learn the
//! members' gossip addresses to seed gossip with.

use std::time::Duration;

use orion_core::{NodeView, Peer};
use tracing::info;

use super::config::strip_scheme;
use super::NodeError;

/// Pause between rounds over the join addresses.
const RETRY: Duration = Duration::from_millis(500);

/// Adds `me` through the first member in `targets` that takes it, retrying
/// until `limit`; returns the members' gossip addresses. A member that answers
/// with a client error (a duplicate id, a bad role) ends the attempt at once.
pub(crate) async fn join(
    targets: &[String],
    me: &Peer,
    limit: Duration,
    tls: Option<&orion_core::tls::TlsState>,
) -> Result<Vec<String>, NodeError> {
    let (client, scheme) = match tls {
        Some(tls) => (super::tls::member_client(tls)?, "https"),
        None => (
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .use_preconfigured_tls(orion_core::tls::plain_client_config())
                .build()
                .map_err(|e| NodeError::Join(e.to_string()))?,
            "http",
        ),
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut last = String::new();
        for target in targets {
            let base = format!("{scheme}://{}", strip_scheme(target));
            // A membership change waits for the new learner to catch up (up to
            // a whole snapshot), but never past the join deadline.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let post = client
                .post(format!("{base}/v1/cluster/peers"))
                .timeout(left.clamp(Duration::from_secs(1), Duration::from_secs(90)))
                .json(me);
            match post.send().await {
                Ok(r) if r.status().is_success() => {
                    info!(%target, role = %me.role, "joined the cluster");
                    return Ok(gossip_seeds(&client, &base).await);
                }
                Ok(r) if r.status().is_client_error() => {
                    let body = r.text().await.unwrap_or_default();
                    return Err(NodeError::Join(format!(
                        "{target} refused to add this node: {}",
                        body.trim()
                    )));
                }
                Ok(r) => last = format!("{target} answered {}", r.status()),
                Err(e) if e.is_connect() => {
                    last = format!("no member answers at {target} (cannot connect)")
                }
                Err(e) if e.is_timeout() => {
                    last = format!("no member answers at {target} (no answer in time)")
                }
                Err(e) => last = format!("{target}: {}", super::error_text(&e)),
            }
            info!(reason = %last, "join not accepted yet; retrying");
        }
        if tokio::time::Instant::now() + RETRY > deadline {
            return Err(NodeError::Join(format!(
                "could not join the cluster through {} within {limit:?}: {last}",
                targets.join(", ")
            )));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The members' gossip addresses, as the member at `base` knows them; none when
/// it cannot say (gossip then finds them through the replica once it catches up).
async fn gossip_seeds(client: &reqwest::Client, base: &str) -> Vec<String> {
    let get = client
        .get(format!("{base}/v1/nodes"))
        .timeout(Duration::from_secs(10));
    let nodes: Vec<NodeView> = match get.send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    nodes
        .into_iter()
        .filter_map(|n| n.node.info.addrs.gossip)
        .collect()
}
