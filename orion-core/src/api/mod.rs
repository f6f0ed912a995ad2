//! The HTTP API (axum): jobs, nodes, allocations, leadership and health.
//!
//! | method & path | what |
//! |---|---|
//! | `POST /v1/jobs` (a JSON array or a YAML stream: many at once, all or none) | submit a job (JSON or YAML body); same name again = new version |
//! | `GET /v1/jobs` | list jobs |
//! | `GET /v1/jobs/{name}` | one job with its allocations |
//! | `DELETE /v1/jobs/{name}[?purge=true]` | stop a job (and forget it) |
//! | `GET /v1/nodes` | list nodes with use |
//! | `POST /v1/nodes/{id}/drain`, `/undrain` | start or end a drain |
//! | `DELETE /v1/nodes/{id}` | remove a node |
//! | `DELETE /v1/nodes/{id}[?force=true]` | remove a node; one still alive is refused (409) unless forced |
//! | `GET /v1/volumes`, `POST /v1/volumes` `{name, node}`, `DELETE /v1/volumes/{name}` | named volumes (a task mounting one runs on its node) |
//! | `POST /v1/cluster/peers` | add a node to the replication group (join) |
//! | `GET /v1/allocations[?job=NAME]` | allocations |
//! | `GET /v1/allocations/{id}` | one allocation |
//! | `GET /v1/allocations/{id}/logs[?follow=true]` | its output (text, streamed) |
//! | `POST /v1/allocations/{id}/exec` | run `{"command": [...]}` in it |
//! | `GET /v1/allocations/{id}/stats` | its resource use |
//! | `GET /v1/allocations/{id}/exec/ws?command=[..]&tty=true` | an interactive command over a WebSocket (see [`exec_ws`]) |
//!
//! Logs, exec and stats are served by the node that runs the allocation; another
//! node answers 421 with `{"error", "node", "node_http"}` naming the right one.
//! | `GET /v1/status/leader` | who leads, and the Raft voters |
//! | `GET /health` | 200 when this node and its runtime are healthy, else 503 |
//!
//! Reads (every `GET` above but logs and stats, which ask the runtime) come from
//! this node's replica and may lag the leader by a heartbeat; add
//! `?consistent=true` for a linearizable read. Every such read says which it gave in the
//! `x-orion-consistency` header (`local` or `linearizable`) along with
//! `x-orion-index`, the replica's applied index. Writes on a follower are forwarded
//! to the leader by the store.

pub mod exec_ws;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{Cluster, ClusterError};
use crate::model::JobStatus;
use crate::spec::{Format, SpecError};
use crate::store::{Peer, StoreError};

/// The API's routes over a cluster handle.
pub fn router(cluster: Cluster) -> Router {
    Router::new()
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{name}", get(get_job).delete(stop_job))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", axum::routing::delete(remove_node))
        .route("/v1/nodes/{id}/drain", post(drain))
        .route("/v1/nodes/{id}/undrain", post(undrain))
        .route("/v1/cluster/peers", post(add_peer))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", axum::routing::delete(delete_volume))
        .route("/v1/allocations", get(list_allocations))
        .route("/v1/allocations/{id}", get(get_allocation))
        .route("/v1/allocations/{id}/logs", get(alloc_logs))
        .route("/v1/allocations/{id}/exec", post(alloc_exec))
        .route("/v1/allocations/{id}/exec/ws", get(exec_ws::alloc_exec_ws))
        .route("/v1/allocations/{id}/stats", get(alloc_stats))
        .route("/v1/status/leader", get(leader))
        .route("/health", get(health))
        .fallback(no_route)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(cluster)
}

/// Any path the API does not have.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        json!({ "error": format!("no such endpoint: {method} {}", uri.path()) }),
    )
}

/// One error shape everywhere: an error answer the framework wrote in plain
/// text (a body over the size limit, a bad query parameter, a wrong method)
/// becomes `{"error": "…"}` like the API's own.
async fn json_errors(r: Response) -> Response {
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let error = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&json!({ "error": error })).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// An API error: a status and a JSON body `{"error": …, "errors": [{field, problem}]}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, serde_json::Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::Spec(_) | ClusterError::Config { .. } => StatusCode::BAD_REQUEST,
            ClusterError::JobNotFound(_)
            | ClusterError::NodeNotFound(_)
            | ClusterError::VolumeNotFound(_) => StatusCode::NOT_FOUND,
            ClusterError::Refused(_) | ClusterError::NodeAlive(_) => StatusCode::CONFLICT,
            ClusterError::Store(s) if s.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ClusterError::Store(StoreError::Membership(_)) => StatusCode::CONFLICT,
            ClusterError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ClusterError::AllocNotFound(_) | ClusterError::NoContainer(_) => StatusCode::NOT_FOUND,
            ClusterError::Elsewhere { .. } => StatusCode::MISDIRECTED_REQUEST,
            ClusterError::Runtime(r) if r.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match &e {
            ClusterError::Spec(s) => spec_body(s),
            ClusterError::Elsewhere { node, http } => {
                json!({ "error": e.to_string(), "node": node, "node_http": http })
            }
            other => json!({ "error": other.to_string() }),
        };
        ApiError(status, body)
    }
}

fn spec_body(e: &SpecError) -> serde_json::Value {
    json!({ "error": e.to_string(), "errors": e.errors })
}

type ApiResult<T> = Result<T, ApiError>;

async fn submit(State(c): State<Cluster>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            json!({"error": "body is not UTF-8"}),
        )
    })?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if ctype.contains("yaml") {
        Format::Yaml
    } else if ctype.contains("json") || text.trim_start().starts_with(['{', '[']) {
        Format::Json
    } else {
        Format::Yaml
    };
    let (mut specs, list) = crate::spec::parse_specs(text, format)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, spec_body(&e)))?;
    if list {
        // Many specs: one commit, all or none.
        let done = c.submit_all(specs).await?;
        let status = if done.iter().any(|d| d.changed) {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(done)).into_response());
    }
    let done = c.submit(specs.remove(0)).await?;
    let status = if done.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done)).into_response())
}

#[derive(Deserialize)]
struct ReadParams {
    #[serde(default)]
    consistent: bool,
    job: Option<String>,
    #[serde(default)]
    purge: bool,
    #[serde(default)]
    force: bool,
}

/// Runs the read barrier when asked and says which consistency the read gives.
async fn consistency(c: &Cluster, p: &ReadParams) -> ApiResult<HeaderMap> {
    if p.consistent {
        c.sync().await?;
    }
    let mut h = HeaderMap::new();
    let kind = if p.consistent {
        "linearizable"
    } else {
        "local"
    };
    h.insert("x-orion-consistency", HeaderValue::from_static(kind));
    let index = c.store().replica().applied_index();
    h.insert("x-orion-index", HeaderValue::from(index));
    Ok(h)
}

/// One line of `GET /v1/jobs`.
#[derive(Serialize)]
struct JobLine {
    name: String,
    #[serde(rename = "type")]
    kind: crate::spec::JobKind,
    version: u64,
    /// What the user asked: running or stopped.
    status: JobStatus,
    /// What is: running, degraded, pending or stopped.
    health: crate::model::JobHealth,
    replicas: u32,
    running: usize,
}

async fn list_jobs(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let lines: Vec<JobLine> = c
        .jobs()
        .into_iter()
        .map(|j| {
            let running = c
                .allocations(Some(&j.spec.name))
                .iter()
                .filter(|a| a.state == crate::model::AllocState::Running && a.is_live())
                .count();
            JobLine {
                health: crate::model::JobHealth::of(&j, running),
                running,
                name: j.spec.name,
                kind: j.spec.kind,
                version: j.version,
                status: j.status,
                replicas: j.spec.replicas,
            }
        })
        .collect();
    Ok((h, Json(lines)).into_response())
}

async fn get_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let job = c.job(&name).ok_or(ClusterError::JobNotFound(name))?;
    Ok((h, Json(job)).into_response())
}

async fn stop_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let done = c.stop_job(&name, p.purge).await?;
    Ok(Json(done).into_response())
}

async fn list_nodes(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.nodes())).into_response())
}

async fn drain(State(c): State<Cluster>, Path(id): Path<String>) -> ApiResult<Response> {
    c.drain(&id, true).await?;
    Ok(Json(json!({ "node": id, "draining": true })).into_response())
}

async fn undrain(State(c): State<Cluster>, Path(id): Path<String>) -> ApiResult<Response> {
    c.drain(&id, false).await?;
    Ok(Json(json!({ "node": id, "draining": false })).into_response())
}

async fn remove_node(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    c.remove_node(&id, p.force).await?;
    Ok(Json(json!({ "node": id, "removed": true })).into_response())
}

/// `POST /v1/volumes` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVolume {
    name: String,
    #[serde(default)]
    node: Option<String>,
}

async fn list_volumes(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.volumes())).into_response())
}

async fn create_volume(State(c): State<Cluster>, body: Bytes) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body).unwrap_or_default();
    let v: NewVolume = crate::spec::parse_json_strict(text)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("volume: {e}") }),
            )
        })?;
    let volume = c.create_volume(&v.name, v.node.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(volume)).into_response())
}

async fn delete_volume(State(c): State<Cluster>, Path(name): Path<String>) -> ApiResult<Response> {
    c.delete_volume(&name).await?;
    Ok(Json(json!({ "volume": name, "state": "deleting" })).into_response())
}

async fn add_peer(State(c): State<Cluster>, Json(peer): Json<Peer>) -> ApiResult<Response> {
    c.add_peer(peer.clone()).await?;
    Ok(Json(json!({ "peer": peer.id, "role": peer.role })).into_response())
}

async fn list_allocations(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    if let Some(job) = &p.job {
        if c.job(job).is_none() {
            return Err(ClusterError::JobNotFound(job.clone()).into());
        }
    }
    Ok((h, Json(c.allocations(p.job.as_deref()))).into_response())
}

/// Who leads, as this node sees it, and the current Raft voters.
#[derive(Serialize)]
struct LeaderStatus {
    #[serde(flatten)]
    leadership: crate::store::Leadership,
    voters: Vec<String>,
}

async fn get_allocation(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let a = c.allocation(&id).ok_or(ClusterError::AllocNotFound(id))?;
    Ok((h, Json(a)).into_response())
}

#[derive(Deserialize)]
struct LogParams {
    #[serde(default)]
    follow: bool,
}

async fn alloc_logs(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<LogParams>,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let logs = c.logs(&id, p.follow).await?;
    let body = logs.map(|chunk| chunk.map(|c| c.data).map_err(std::io::Error::other));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ExecBody {
    command: Vec<String>,
}

async fn alloc_exec(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Json(body): Json<ExecBody>,
) -> ApiResult<Response> {
    if body.command.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            json!({"error": "command: must not be empty"}),
        ));
    }
    Ok(Json(c.exec(&id, &body.command).await?).into_response())
}

async fn alloc_stats(State(c): State<Cluster>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(c.stats(&id).await?).into_response())
}

/// This node's view of leadership: `local` unless `?consistent=true`, which first
/// confirms the leader with a quorum (and fails without one).
async fn leader(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let voters = c.store().voters().into_iter().map(|p| p.id).collect();
    let status = LeaderStatus {
        leadership: c.leader(),
        voters,
    };
    Ok((h, Json(status)).into_response())
}

async fn health(State(c): State<Cluster>) -> Response {
    let leader = c.leader();
    match c.runtime_health() {
        None => Json(json!({
            "status": "ok",
            "node": c.node_id(),
            "leader": leader.leader,
        }))
        .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "node": c.node_id(), "reason": why })),
        )
            .into_response(),
    }
}
