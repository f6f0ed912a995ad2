//! The HTTP server half of the transport: Raft's RPCs and the forwarding endpoint,
//! as an axum [`Router`] over a store.
//!
//! | path | body | answer |
//! |---|---|---|
//! | `POST /raft/append` | `AppendEntriesRequest` | `Result<AppendEntriesResponse, RaftError>` |
//! | `POST /raft/vote` | `VoteRequest` | `Result<VoteResponse, RaftError>` |
//! | `POST /raft/snapshot` | `InstallSnapshotRequest` | `Result<InstallSnapshotResponse, RaftError>` |
//! | `POST /raft/forward` | a call only the leader can make | its answer |
//!
//! Every route asks for the cluster's Raft secret (`x-orion-raft-secret`) once
//! the replica holds one (see `members_only`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::rpc::{Forwarded, LeaderReply, APPEND_PATH, FORWARD_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::store::Inner;
use crate::types::{RaftNodeId, TypeConfig};

/// Largest request body accepted: 300 entries per append (openraft's batch) with
/// large plans, or a 1 MiB snapshot chunk as a JSON array, fit well within it.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The routes, over the store's shared state.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(FORWARD_PATH, post(forward))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            inner.clone(),
            members_only,
        ))
        .with_state(inner)
}

/// Answers only callers that send the cluster's Raft secret (once this node's
/// replica holds one: a node started without token checks has none, and a
/// fresh node takes its first log from whoever adds it). Others get a 401 and
/// reach neither Raft nor forwarding: no forged vote drives the term up, no
/// stranger's write is forwarded.
async fn members_only(
    State(s): State<Arc<Inner>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // Over mutual TLS the caller is a member; Raft's own RPCs come only from
    // managers (a worker's certificate may forward, not vote).
    if let Some(who) = req.extensions().get::<orion_core::tls::PeerIdentity>() {
        if who.role != orion_core::NodeRole::Manager && req.uri().path() != FORWARD_PATH {
            return (
                axum::http::StatusCode::FORBIDDEN,
                "Raft RPCs come from managers only",
            )
                .into_response();
        }
    }
    if let Some(want) = s.secret.get() {
        let given = req
            .headers()
            .get(orion_core::acl::RAFT_SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !orion_core::acl::same_secret(given, want) {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                "not a member of this cluster",
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn append(
    State(s): State<Arc<Inner>>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>> {
    Json(s.raft.append_entries(req).await)
}

async fn vote(
    State(s): State<Arc<Inner>>,
    Json(req): Json<VoteRequest<RaftNodeId>>,
) -> Json<Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>> {
    Json(s.raft.vote(req).await)
}

async fn snapshot(
    State(s): State<Arc<Inner>>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>>
{
    Json(s.raft.install_snapshot(req).await)
}

async fn forward(State(s): State<Arc<Inner>>, Json(req): Json<Forwarded>) -> Json<LeaderReply> {
    Json(s.lead(req.call, req.budget).await)
}
