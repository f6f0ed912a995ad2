//! The HTTP API (axum): jobs, nodes, allocations, leadership and health.
//!
//! | method & path | what |
//! |---|---|
//! | `POST /v1/jobs` (a JSON array or a YAML stream: many at once, all or none) | submit a job (JSON or YAML body); same name again = new version |
//! | `GET /v1/jobs` | list jobs |
//! | `GET /v1/jobs/{name}` | one job with its allocations |
//! | `DELETE /v1/jobs/{name}[?purge=true]` | stop a job (and forget it) |
//! | `GET /v1/jobs/{name}/deployment`, `GET /v1/deployments` | a job's latest deployment; every kept one |
//! | `POST /v1/jobs/{name}/deployment/{promote,pause,resume,fail}` | act on its latest deployment (404 none, 409 unsuited) |
//! | `GET /v1/jobs/{name}/versions` | its kept versions, oldest first |
//! | `POST /v1/jobs/{name}/periodic/force` | launch a run of a periodic job now |
//! | `POST /v1/gc` | forget finished batch jobs and stopped ones (`job gc`) |
//! | `GET /v1/events[?index=N&topic=job,allocation]` | committed changes as ndjson, or SSE on `Accept: text/event-stream`; resumes after `index` / `Last-Event-ID` |
//! | `GET /v1/services`, `GET /v1/services/{name}[?healthy=false&tag=T&index=N&wait=30s]` | the catalog; a service's instances (healthy only by default), blocking on `index` |
//! | `GET /v1/services/{name}/lb` | this node's load-balancer listeners of the service: per backend requests, open connections, errors, latency |
//! | `POST /v1/jobs/{name}/revert` `[{"version": N}]` | submit a kept version again (default: the last stable one) |
//! | `GET /v1/nodes` | list nodes with use |
//! | `POST /v1/nodes/{id}/drain`, `/undrain` | start or end a drain |
//! | `DELETE /v1/nodes/{id}[?force=true]` | remove a node; one still alive is refused (409) unless forced |
//! | `GET /v1/volumes`, `POST /v1/volumes` `{name, node}`, `DELETE /v1/volumes/{name}` | named volumes (a task mounting one runs on its node) |
//! | `POST /v1/cluster/peers` | add a node to the replication group (join) |
//! | `GET /v1/allocations[?job=NAME]` | allocations |
//! | `GET /v1/allocations/{id}` | one allocation |
//! | `GET /v1/allocations/{id}/logs[?follow=true]` | its output (text, streamed; numbered lines as SSE on `Accept: text/event-stream`, resumable: see [`logs`]) |
//! | `GET /v1/allocations/{id}/logs/ws[?from_seq=N]` | numbered lines over a WebSocket |
//! | `POST /v1/allocations/{id}/exec` | run `{"command": [...]}` in it |
//! | `GET /v1/allocations/{id}/stats[?history=true]` | its resource use now (CPU %, memory % of the limit), and the samples kept (see [`crate::agent::stats`]) |
//! | `GET /v1/allocations/{id}/exec/ws?command=[..]&tty=true` | an interactive command over a WebSocket (see [`exec_ws`]) |
//!
//! | `GET /v1/status/leader` | who leads, and the Raft voters |
//! | `GET /health` | this node and its components, `healthy` / `degraded` (200) or `unhealthy` (503) |
//! | `GET /health/live`, `GET /health/ready` | for liveness and readiness probes |
//! | `POST /v1/acl/tokens` `{name, scopes}`, `GET /v1/acl/tokens`, `DELETE /v1/acl/tokens/{accessor}` | API tokens (the secret is answered once, at creation) |
//! | `GET /v1/acl/token/self` | the caller's token |
//! | `POST /v1/secrets` `{name, data_base64}` | write a secret (a new one, or its next version), sealed on this node; 413 over 1 MiB, 503 without a data key |
//! | `GET /v1/secrets`, `GET /v1/secrets/{name}`, `DELETE /v1/secrets/{name}` | secrets' names, versions and times (never a value); forget one no running job uses |
//!
//! Logs, exec and stats are served by the node that runs the allocation; another
//! node answers 421 with `{"error", "node", "node_http"}` naming the right one.
//!
//! When the node enforces tokens ([`crate::acl`]) every route but `/health*` and
//! the dashboard's files asks for `Authorization: Bearer <token>` with the
//! route's scope (401 without, 403 with the wrong one). Bodies are capped by
//! route ([`SPEC_BODY_MAX`], [`SMALL_BODY_MAX`]); the listener itself bounds
//! connections and times out heads and idle connections ([`crate::serve`]).
//!
//! Reads (every `GET` above but logs and stats, which ask the runtime) come from
//! this node's replica and may lag the leader by a heartbeat; add
//! `?consistent=true` for a linearizable read. Every such read says which it gave in the
//! `x-orion-consistency` header (`local` or `linearizable`) along with
//! `x-orion-index`, the replica's applied index. Writes on a follower are forwarded
//! to the leader by the store.

mod acl;
pub mod exec_ws;
pub mod logs;
mod pki;
mod secrets;
mod ui;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cluster::{Cluster, ClusterError, JobView, NodeView, Submitted};
use crate::model::JobStatus;
use crate::spec::JobSpec;
use crate::spec::{Format, SpecError};
use crate::store::{Peer, StoreError};

/// The API's routes over a cluster handle, and `GET /v1/openapi.json`: the
/// OpenAPI document generated from the same handlers (utoipa), so the two
/// cannot drift apart.
pub fn router(cluster: Cluster) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    let metrics = cluster.metrics().clone();
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .route("/metrics", get(prometheus))
        .route("/", get(ui::root))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(no_route)
        .layer(axum::middleware::from_fn(body_limit))
        .layer(axum::extract::DefaultBodyLimit::max(SPEC_BODY_MAX))
        .layer(axum::middleware::from_fn_with_state(
            cluster.clone(),
            authorize,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let metrics = metrics.clone();
                count_request(metrics, req, next)
            },
        ))
        .with_state(cluster)
}

/// `GET /metrics`: the node's metrics in the Prometheus text format, or in
/// OpenMetrics when the scraper asks for it (`Accept`).
async fn prometheus(State(c): State<Cluster>, headers: HeaderMap) -> Response {
    let state = c.store().replica().current();
    let live = c.membership().live().into_iter().map(|m| m.id).collect();
    c.metrics()
        .scrape_node(c.node_id(), &c.leader(), &live, &state);
    c.metrics().scrape_store(&c.store().status());
    let open = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (ctype, body) = if open {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            c.metrics().encode(&state),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            c.metrics().encode_text(&state),
        )
    };
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// Counts a request and times it, by the route's pattern (not the path, so
/// ids do not explode the label set).
async fn count_request(
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let span = tracing::info_span!("api", method = %method, route = %route);
    let r = tracing::Instrument::instrument(next.run(req), span).await;
    metrics
        .api_latency
        .get_or_create(&crate::metrics::RouteOnly {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .api_requests
        .get_or_create(&crate::metrics::RouteLabels {
            route,
            method,
            status: r.status().as_u16(),
        })
        .inc();
    r
}

/// Asks for a token with the route's scope ([`crate::acl::required_scope`])
/// when the node enforces tokens: from `Authorization: Bearer`, or a `token`
/// query parameter (browsers cannot set headers on an EventSource or a
/// WebSocket), which is taken off the URI before the route sees it. No token
/// or an unknown one: 401; a token without the scope: 403. Neither says
/// anything about what exists.
async fn authorize(
    State(c): State<Cluster>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (from_query, rest) = take_token_param(req.uri());
    if let Some(uri) = rest {
        *req.uri_mut() = uri;
    }
    if !c.acl_enforced() {
        return next.run(req).await;
    }
    let need = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(crate::acl::Need::Scope(crate::acl::Scope::Read), |m| {
            crate::acl::required_scope(req.method(), m.as_str())
        });
    if need == crate::acl::Need::Nothing {
        return next.run(req).await;
    }
    // A cluster member's certificate (verified by the TLS layer): it may
    // read, renew its certificate and add itself as a peer (the route checks
    // it is itself) — what a node does with no token.
    if req.extensions().get::<crate::tls::PeerIdentity>().is_some() {
        let own = need == crate::acl::Need::Node
            || need == crate::acl::Need::Scope(crate::acl::Scope::Read)
            || (req.method() == axum::http::Method::POST
                && req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .is_some_and(|m| m.as_str() == "/v1/cluster/peers"));
        if own {
            return next.run(req).await;
        }
    }
    if need == crate::acl::Need::Node {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "this route answers cluster members' certificates only" }),
        )
        .into_response();
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let refuse =
        |status: StatusCode, msg: &str| ApiError(status, json!({ "error": msg })).into_response();
    let Some(secret) = from_header.or(from_query) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this node asks for an API token: send `Authorization: Bearer <token>` (the CLI reads ORION_TOKEN or --token)",
        );
    };
    if !crate::acl::is_secret_shaped(&secret) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the API token is malformed: tokens look like orn_ and 64 hex digits",
        );
    }
    match c.token_for(&secret) {
        None => refuse(StatusCode::UNAUTHORIZED, "the API token is not valid"),
        Some(t) if !t.allows(need) => refuse(
            StatusCode::FORBIDDEN,
            "this token's scopes do not allow this request",
        ),
        Some(t) => {
            req.extensions_mut().insert(t);
            next.run(req).await
        }
    }
}

/// The `token` query parameter and, when there was one, the URI without it.
fn take_token_param(uri: &axum::http::Uri) -> (Option<String>, Option<axum::http::Uri>) {
    let Some(q) = uri.query() else {
        return (None, None);
    };
    let mut token = None;
    let kept: Vec<&str> = q
        .split('&')
        .filter(|kv| match kv.strip_prefix("token=") {
            Some(v) => {
                token = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    if token.is_none() {
        return (None, None);
    }
    let path = uri.path();
    let rebuilt = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    (token, rebuilt.parse().ok())
}

/// Largest body of a route that takes job specs (`POST /v1/jobs`, many specs
/// at once; `POST /v1/jobs/plan`): 4 MiB, some thousands of specs.
pub const SPEC_BODY_MAX: usize = 4 * 1024 * 1024;

/// Largest body of every other route (a scale, a drain, an exec command, a
/// peer): 64 KiB, far above any of them.
pub const SMALL_BODY_MAX: usize = 64 * 1024;

/// Largest body of `POST /v1/secrets`: 2 MiB, room for a 1 MiB value in
/// base64 (4/3 of it) and its JSON; the value itself is capped at
/// [`crate::secret::MAX_SECRET_BYTES`] once decoded.
pub const SECRET_BODY_MAX: usize = 2 * 1024 * 1024;

/// The body cap of a route (by its pattern).
fn body_cap(route: &str) -> usize {
    match route {
        "/v1/jobs" | "/v1/jobs/plan" => SPEC_BODY_MAX,
        "/v1/secrets" => SECRET_BODY_MAX,
        _ => SMALL_BODY_MAX,
    }
}

/// Caps each request's body by route: a declared length over the cap is
/// refused at once (413, naming the cap), a body that runs past it while
/// streaming fails the read the same way. Nothing is written either way.
async fn body_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string());
    let cap = route.as_deref().map_or(SMALL_BODY_MAX, body_cap);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let place = route.clone().unwrap_or_else(|| "this route".into());
    let too_big = |what: &str| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!(
                "request body{what} is over the {} KiB limit of {place}",
                cap / 1024
            ) }),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > cap as u64) {
        return too_big(&format!(" of {} bytes", declared.unwrap_or_default()));
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, cap));
    let r = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&r) {
        return too_big("");
    }
    r
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The OpenAPI document of [`router`]'s routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

#[derive(utoipa::OpenApi)]
// A path parameter's type is referenced, not collected: register it.
#[openapi(
    components(schemas(crate::state::DeploymentAction)),
    info(
        title = "Orion",
        description = "The HTTP API every Orion node serves. Reads come from the node's replica (`x-orion-consistency: local`) unless `?consistent=true`; writes on a follower are forwarded to the leader; errors are `{\"error\": …}`."
    )
)]
struct ApiDoc;

/// Every route with its documentation, from the handlers' `#[utoipa::path]`.
fn routes() -> OpenApiRouter<Cluster> {
    use utoipa::OpenApi as _;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(submit, list_jobs))
        .routes(routes!(plan_job))
        .routes(routes!(get_job, stop_job))
        .routes(routes!(get_deployment))
        .routes(routes!(deployment_action))
        .routes(routes!(list_deployments))
        .routes(routes!(job_versions))
        .routes(routes!(revert_job))
        .routes(routes!(job_scaling))
        .routes(routes!(scale_job))
        .routes(routes!(force_periodic))
        .routes(routes!(gc))
        .routes(routes!(event_stream))
        .routes(routes!(list_services))
        .routes(routes!(get_service))
        .routes(routes!(service_lb))
        .routes(routes!(list_nodes))
        .routes(routes!(remove_node))
        .routes(routes!(drain))
        .routes(routes!(undrain))
        .routes(routes!(add_peer))
        .routes(routes!(list_volumes, create_volume))
        .routes(routes!(delete_volume))
        .routes(routes!(list_allocations))
        .routes(routes!(get_allocation))
        .routes(routes!(alloc_logs))
        .routes(routes!(logs::alloc_logs_ws))
        .routes(routes!(alloc_exec))
        .routes(routes!(exec_ws::alloc_exec_ws))
        .routes(routes!(alloc_stats))
        .routes(routes!(leader))
        .routes(routes!(health))
        .routes(routes!(health_live))
        .routes(routes!(health_ready))
        .routes(routes!(acl::create_token, acl::list_tokens))
        .routes(routes!(acl::revoke_token))
        .routes(routes!(acl::token_self))
        .routes(routes!(pki::get_ca))
        .routes(routes!(pki::ca_rotation))
        .routes(routes!(pki::rotate_ca))
        .routes(routes!(pki::join))
        .routes(routes!(pki::renew))
        .routes(routes!(pki::unlock))
        .routes(routes!(pki::get_unlock_key))
        .routes(routes!(pki::get_join_token))
        .routes(routes!(pki::rotate_join_token))
        .routes(routes!(pki::list_gossip_keys, pki::install_gossip_key))
        .routes(routes!(pki::use_gossip_key))
        .routes(routes!(pki::remove_gossip_key))
        .routes(routes!(secrets::create_secret, secrets::list_secrets))
        .routes(routes!(secrets::get_secret, secrets::delete_secret))
}

/// The shape of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
    /// For a refused spec: each field and its problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::spec::FieldError>,
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
    if !(status.is_client_error() || status.is_server_error()) || is_json(&r) {
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
            | ClusterError::VolumeNotFound(_)
            | ClusterError::DeploymentNotFound(_)
            | ClusterError::VersionNotFound { .. }
            | ClusterError::TokenNotFound(_)
            | ClusterError::SecretNotFound(_)
            | ClusterError::GossipKeyNotFound(_) => StatusCode::NOT_FOUND,
            ClusterError::NoDataKey => StatusCode::SERVICE_UNAVAILABLE,
            ClusterError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ClusterError::Refused { .. } | ClusterError::NodeAlive(_) => StatusCode::CONFLICT,
            ClusterError::Forbidden(_) => StatusCode::FORBIDDEN,
            ClusterError::Store(s) if s.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            ClusterError::Store(StoreError::Membership(_)) => StatusCode::CONFLICT,
            // A store without that call (membership on a single-replica
            // store): nothing the client can change makes it work here.
            ClusterError::Store(StoreError::Unsupported(_)) => StatusCode::NOT_IMPLEMENTED,
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

/// The specs of a submission's body, JSON or YAML by its content type (or its
/// first character), and whether it held a list.
fn body_specs(headers: &HeaderMap, body: &Bytes) -> ApiResult<(Vec<JobSpec>, bool)> {
    let text = std::str::from_utf8(body).map_err(|_| {
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
    crate::spec::parse_specs(text, format)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, spec_body(&e)))
}

#[utoipa::path(post, path = "/v1/jobs/plan", tag = "jobs",
    request_body(content = JobSpec, description = "a job spec (JSON or YAML)"),
    responses((status = 200, body = crate::cluster::JobPlan), (status = 400, body = ErrorBody)))]
async fn plan_job(
    State(c): State<Cluster>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (specs, list) = body_specs(&headers, &body)?;
    if list {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            json!({ "error": "plan one job at a time" }),
        ));
    }
    Ok(Json(c.plan_job(&specs[0])?).into_response())
}

#[derive(Deserialize)]
struct SubmitParams {
    check_index: Option<u64>,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    params(("check_index" = Option<u64>, Query, description = "write only if the job's modify index is still this (0: only if new); 409 otherwise")),
    request_body(content = JobSpec, description = "a job spec (JSON or YAML), or a JSON array / YAML stream of them: all are written in one commit, or none"),
    responses((status = 201, description = "written (a list: an array of these)", body = Submitted),
              (status = 200, description = "the same spec was there already", body = Submitted), (status = 400, description = "bad input", body = ErrorBody)))]
async fn submit(
    State(c): State<Cluster>,
    Query(q): Query<SubmitParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (mut specs, list) = body_specs(&headers, &body)?;
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
    let spec = specs.remove(0);
    let done = match q.check_index {
        Some(index) => c.submit_checked(spec, index).await?,
        None => c.submit(spec).await?,
    };
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
#[derive(Serialize, utoipa::ToSchema)]
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

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("consistent" = Option<bool>, Query, description = "a linearizable read")),
    responses((status = 200, body = Vec<JobLine>)))]
async fn list_jobs(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let lines: Vec<JobLine> = c
        .jobs()
        .into_iter()
        .map(|j| {
            let allocs = c.allocations(Some(&j.spec.name));
            let running = allocs
                .iter()
                .filter(|a| a.state == crate::model::AllocState::Running && a.is_live())
                .count();
            let gate = c.store().replica().read(|s| s.gate(&j));
            JobLine {
                health: match gate {
                    crate::state::Gate::Open => crate::model::JobHealth::assess(&j, allocs.iter()),
                    crate::state::Gate::Waiting(_) => crate::model::JobHealth::Pending,
                    crate::state::Gate::Failed(_) => crate::model::JobHealth::Failed,
                },
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

#[utoipa::path(get, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path), ("consistent" = Option<bool>, Query)),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let job = c.job(&name).ok_or(ClusterError::JobNotFound(name))?;
    Ok((h, Json(job)).into_response())
}

#[utoipa::path(delete, path = "/v1/jobs/{name}", tag = "jobs",
    params(("name" = String, Path), ("purge" = Option<bool>, Query, description = "also forget the job")),
    responses((status = 200, body = Submitted), (status = 404, body = ErrorBody)))]
async fn stop_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let done = c.stop_job(&name, p.purge).await?;
    Ok(Json(done).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{name}/deployment", tag = "deployments",
    params(("name" = String, Path), ("consistent" = Option<bool>, Query)),
    responses((status = 200, body = crate::model::Deployment), (status = 404, body = ErrorBody)))]
async fn get_deployment(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    if c.job(&name).is_none() {
        return Err(ClusterError::JobNotFound(name).into());
    }
    let d = c
        .deployment(&name)
        .ok_or(ClusterError::DeploymentNotFound(name))?;
    Ok((h, Json(d)).into_response())
}

#[utoipa::path(post, path = "/v1/jobs/{name}/deployment/{action}", tag = "deployments",
    params(("name" = String, Path), ("action" = crate::state::DeploymentAction, Path, description = "promote, pause, resume or fail")),
    responses((status = 200, body = crate::model::Deployment), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn deployment_action(
    State(c): State<Cluster>,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult<Response> {
    let action: crate::state::DeploymentAction =
        serde_json::from_value(serde_json::Value::String(action.clone())).map_err(|_| {
            ApiError(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("no deployment action {action:?}: expected promote, pause, resume or fail") }),
            )
        })?;
    let d = c.deployment_action(&name, action).await?;
    Ok(Json(d).into_response())
}

#[utoipa::path(get, path = "/v1/deployments", tag = "deployments",
    params(("consistent" = Option<bool>, Query)),
    responses((status = 200, body = Vec<crate::model::Deployment>)))]
async fn list_deployments(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.deployments())).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{name}/versions", tag = "jobs",
    params(("name" = String, Path), ("consistent" = Option<bool>, Query)),
    responses((status = 200, body = Vec<crate::model::JobVersion>), (status = 404, body = ErrorBody)))]
async fn job_versions(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let v = c.versions(&name).ok_or(ClusterError::JobNotFound(name))?;
    Ok((h, Json(v)).into_response())
}

/// The body of `POST /v1/jobs/{name}/revert`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevertBody {
    /// The version to go back to; by default the last stable one.
    #[serde(default)]
    version: Option<u64>,
}

#[utoipa::path(post, path = "/v1/jobs/{name}/revert", tag = "jobs",
    params(("name" = String, Path)), request_body(content = RevertBody),
    responses((status = 200, body = Submitted), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn revert_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: RevertBody = if body.iter().all(u8::is_ascii_whitespace) {
        RevertBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("invalid revert body: {e}") }),
            )
        })?
    };
    let done = c.revert(&name, body.version).await?;
    Ok(Json(done).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{name}/scaling", tag = "jobs",
    params(("name" = String, Path)),
    responses((status = 200, description = "the job's autoscaling: policy, bounds now, the latest evaluation and the last 20 decisions", body = crate::cluster::ScalingView),
        (status = 404, description = "no such job, or it has no scaling block", body = ErrorBody)))]
async fn job_scaling(State(c): State<Cluster>, Path(name): Path<String>) -> ApiResult<Response> {
    match c.scaling(&name)? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("job {name:?} has no scaling block") }),
        )),
    }
}

/// What `POST /v1/jobs/{name}/scale` takes.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    /// The count to run.
    replicas: u32,
}

#[utoipa::path(post, path = "/v1/jobs/{name}/scale", tag = "jobs",
    params(("name" = String, Path)), request_body(content = ScaleBody),
    responses((status = 200, description = "the count is set (on a scaling job, its policy is suspended for its longer cooldown)", body = Submitted),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "outside the job's scaling bounds", body = ErrorBody)))]
async fn scale_job(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: ScaleBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("invalid scale body: {e}"), "field": "replicas" }),
        )
    })?;
    let done = c.scale(&name, body.replicas).await?;
    Ok(Json(done).into_response())
}

#[utoipa::path(post, path = "/v1/jobs/{name}/periodic/force", tag = "jobs",
    params(("name" = String, Path)),
    responses((status = 200, description = "the run launched (`{\"run\": name}`)"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn force_periodic(State(c): State<Cluster>, Path(name): Path<String>) -> ApiResult<Response> {
    let run = c.force_periodic(&name).await?;
    Ok(Json(json!({ "job": name, "run": run })).into_response())
}

/// What `POST /v1/gc` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Collected {
    /// The jobs forgotten.
    collected: Vec<String>,
}

#[utoipa::path(post, path = "/v1/gc", tag = "jobs",
    responses((status = 200, description = "the jobs forgotten", body = Collected)))]
async fn gc(State(c): State<Cluster>) -> ApiResult<Response> {
    let collected = c.gc(None).await?;
    Ok(Json(Collected { collected }).into_response())
}

/// The query of `GET /v1/events` (for the document: the handler reads the
/// pairs itself, since `topic` repeats).
#[derive(Deserialize, utoipa::IntoParams)]
#[allow(dead_code)]
struct EventQuery {
    /// Resume after this log index (default: from now on).
    #[serde(default)]
    index: Option<u64>,
    /// Topics, repeatable and comma-separated: `job`, `allocation`, `node`,
    /// `deployment`, `volume`, `leader`, each optionally with one key
    /// (`job:web`, `node:*`); `*` for all; default all.
    #[serde(default)]
    topic: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, description = "newline-delimited events (or SSE)", body = crate::events::Event),
        (status = 400, body = ErrorBody)))]
async fn event_stream(
    State(c): State<Cluster>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    use crate::events::{events_of, parse_filters, wanted, Topic, TopicFilter};
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, json!({ "error": e }));
    let mut index = None;
    let mut topic_values = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "index" => {
                index = Some(v.parse::<u64>().map_err(|_| {
                    bad(format!("index: {v:?} is not a log index (a whole number)"))
                })?)
            }
            "topic" => topic_values.push(v),
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?}: expected index or topic"
                )))
            }
        }
    }
    let topics: Vec<TopicFilter> = parse_filters(&topic_values).map_err(bad)?;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let from = last_id.or(index);
    let replica = c.store().replica().clone();
    // Subscribe before reading what is kept, so nothing falls between.
    let live = replica.subscribe_changes();
    let (kept, complete) = match from {
        Some(i) => c.event_log().since(i),
        None => (Vec::new(), true),
    };
    let frame = move |e: &crate::events::Event| -> axum::body::Bytes {
        let json = serde_json::to_string(e).unwrap_or_default();
        if sse {
            format!("id: {}\nevent: {:?}\ndata: {json}\n\n", e.index, e.topic).into()
        } else {
            format!("{json}\n").into()
        }
    };
    let notice = move |msg: String| -> axum::body::Bytes {
        let json = json!({ "error": msg }).to_string();
        if sse {
            format!("event: error\ndata: {json}\n\n").into()
        } else {
            format!("{json}\n").into()
        }
    };
    let mut pending: std::collections::VecDeque<axum::body::Bytes> = Default::default();
    if !complete {
        pending.push_back(notice(format!(
            "index {} is older than what this node keeps: re-read state, then follow from its index",
            from.unwrap_or(0)
        )));
    }
    let mut last = from.unwrap_or(0);
    {
        let state = replica.current();
        for b in &kept {
            pending.extend(events_of(b, &topics, &state).iter().map(frame));
            last = last.max(b.index);
        }
    }
    struct Follow {
        replica: std::sync::Arc<crate::replica::Replica>,
        /// None once the store stopped reporting.
        leadership: Option<tokio::sync::watch::Receiver<crate::store::Leadership>>,
        leader: Option<String>,
        live: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::replica::ChangeBatch>>,
        pending: std::collections::VecDeque<axum::body::Bytes>,
        last: u64,
        topics: Vec<TopicFilter>,
        /// The stream ends when the node stops (else a graceful shutdown
        /// would wait on it).
        stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    }
    let leadership = c.store().leadership();
    let leader = leadership.borrow().leader.clone();
    let init = Follow {
        replica,
        leadership: Some(leadership),
        leader,
        live,
        pending,
        last,
        topics,
        stop: Box::pin(c.on_shutdown()),
    };
    let stream = futures::stream::unfold(init, move |mut f| async move {
        loop {
            if let Some(b) = f.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(b), f));
            }
            let next = tokio::select! {
                _ = &mut f.stop => return None,
                n = f.live.recv() => n,
                r = async {
                    match f.leadership.as_mut() {
                        Some(l) => l.changed().await.map(|()| l.borrow_and_update().clone()),
                        None => std::future::pending().await,
                    }
                } => {
                    let Ok(l) = r else {
                        f.leadership = None;
                        continue;
                    };
                    if l.leader.is_some() && l.leader != f.leader {
                        f.leader = l.leader.clone();
                        let key = l.leader.clone().unwrap_or_default();
                        if wanted(&f.topics, Topic::Leader, &key) {
                            let e = crate::events::Event {
                                index: f.replica.applied_index(),
                                topic: Topic::Leader,
                                key,
                                object: Some(json!({ "leader": l.leader, "term": l.term })),
                            };
                            f.pending.push_back(frame(&e));
                        }
                    }
                    continue;
                }
            };
            match next {
                Ok(batch) if batch.index <= f.last => {}
                Ok(batch) => {
                    f.last = batch.index;
                    let state = f.replica.current();
                    let events = events_of(&batch, &f.topics, &state);
                    f.pending.extend(events.iter().map(frame));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    f.pending.push_back(notice(format!(
                        "this client fell behind after index {}: resume from it",
                        f.last
                    )));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let body = axum::body::Body::from_stream(stream);
    let ctype = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

#[utoipa::path(get, path = "/v1/services", tag = "services",
    params(("consistent" = Option<bool>, Query)),
    responses((status = 200, body = Vec<crate::catalog::ServiceSummary>)))]
async fn list_services(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.services())).into_response())
}

/// The query of `GET /v1/services/{name}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ServiceQuery {
    /// Only healthy instances (default true).
    #[serde(default = "yes")]
    healthy: bool,
    /// Only instances with this tag.
    #[serde(default)]
    tag: Option<String>,
    /// Block until the service's index differs from this.
    #[serde(default)]
    index: Option<u64>,
    /// How long to block at most (default 5m, at most 10m).
    #[serde(default)]
    wait: Option<String>,
    /// A linearizable read.
    #[serde(default)]
    consistent: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(get, path = "/v1/services/{name}", tag = "services",
    params(("name" = String, Path), ServiceQuery),
    responses((status = 200, description = "its instances; `x-orion-index` is the service's index",
        body = Vec<crate::catalog::Instance>), (status = 400, body = ErrorBody)))]
async fn get_service(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(q): Query<ServiceQuery>,
) -> ApiResult<Response> {
    if q.consistent {
        c.sync().await?;
    }
    let (index, all) = match q.index {
        None => c.service(&name),
        Some(n) => {
            let wait = match q.wait.as_deref() {
                None => std::time::Duration::from_secs(300),
                Some(w) => humantime::parse_duration(w).map_err(|e| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": format!("wait: {w:?}: {e}") }),
                    )
                })?,
            };
            c.service_after(&name, n, wait.min(std::time::Duration::from_secs(600)))
                .await
        }
    };
    let shown: Vec<crate::catalog::Instance> = all
        .into_iter()
        .filter(|i| !q.healthy || i.healthy)
        .filter(|i| q.tag.as_ref().is_none_or(|t| i.tags.contains(t)))
        .collect();
    let mut h = HeaderMap::new();
    h.insert("x-orion-index", HeaderValue::from(index));
    Ok((h, Json(shown)).into_response())
}

#[utoipa::path(get, path = "/v1/services/{name}/lb", tag = "services",
    params(("name" = String, Path)),
    responses((status = 200, description = "this node's load-balancer listeners of the service and their backends' figures",
        body = Vec<crate::lb::ListenerStats>), (status = 404, body = ErrorBody)))]
async fn service_lb(State(c): State<Cluster>, Path(name): Path<String>) -> ApiResult<Response> {
    let stats = c.lb_stats(Some(&name));
    if stats.is_empty() {
        let known = c.services().iter().any(|s| s.name == name);
        let why = if known {
            format!("service {name:?} has no load-balancer port on this node")
        } else {
            format!("no such service: {name:?}")
        };
        return Err(ApiError(StatusCode::NOT_FOUND, json!({ "error": why })));
    }
    Ok(Json(stats).into_response())
}

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    params(("consistent" = Option<bool>, Query)), responses((status = 200, body = Vec<NodeView>)))]
async fn list_nodes(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.nodes())).into_response())
}

#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, description = "draining"), (status = 404, body = ErrorBody)))]
async fn drain(State(c): State<Cluster>, Path(id): Path<String>) -> ApiResult<Response> {
    c.drain(&id, true).await?;
    Ok(Json(json!({ "node": id, "draining": true })).into_response())
}

#[utoipa::path(post, path = "/v1/nodes/{id}/undrain", tag = "nodes", params(("id" = String, Path)),
    responses((status = 200, description = "no longer draining"), (status = 404, body = ErrorBody)))]
async fn undrain(State(c): State<Cluster>, Path(id): Path<String>) -> ApiResult<Response> {
    c.drain(&id, false).await?;
    Ok(Json(json!({ "node": id, "draining": false })).into_response())
}

#[utoipa::path(delete, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path), ("force" = Option<bool>, Query, description = "remove it although gossip sees it alive")),
    responses((status = 200, description = "removed"), (status = 404, body = ErrorBody),
              (status = 409, description = "still alive", body = ErrorBody)))]
async fn remove_node(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    c.remove_node(&id, p.force).await?;
    Ok(Json(json!({ "node": id, "removed": true })).into_response())
}

/// `POST /v1/volumes` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewVolume {
    name: String,
    #[serde(default)]
    node: Option<String>,
}

#[utoipa::path(get, path = "/v1/volumes", tag = "volumes",
    params(("consistent" = Option<bool>, Query)), responses((status = 200, body = Vec<crate::model::Volume>)))]
async fn list_volumes(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.volumes())).into_response())
}

#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", request_body = NewVolume,
    responses((status = 201, body = crate::model::Volume), (status = 400, description = "bad input", body = ErrorBody), (status = 409, body = ErrorBody)))]
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

#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path)),
    responses((status = 200, description = "deleting: its node removes the data"), (status = 404, body = ErrorBody),
              (status = 409, description = "mounted by a running job", body = ErrorBody)))]
async fn delete_volume(State(c): State<Cluster>, Path(name): Path<String>) -> ApiResult<Response> {
    c.delete_volume(&name).await?;
    Ok(Json(json!({ "volume": name, "state": "deleting" })).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/peers", tag = "cluster", request_body = Peer,
    responses((status = 200, description = "added to the replication group"), (status = 400, description = "bad input", body = ErrorBody)))]
async fn add_peer(
    State(c): State<Cluster>,
    who: Option<axum::Extension<crate::tls::PeerIdentity>>,
    token: Option<axum::Extension<crate::acl::AclToken>>,
    Json(peer): Json<Peer>,
) -> ApiResult<Response> {
    // A peer without an id or addresses could never be reached, and as a
    // voter would take the quorum with it (schemathesis added one).
    for (field, value) in [
        ("id", &peer.id),
        ("raft_addr", &peer.raft_addr),
        ("http_addr", &peer.http_addr),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("a peer needs a {field}") }),
            ));
        }
    }
    // A node (no token, its certificate) adds only itself, in its role.
    if let (Some(axum::Extension(who)), None) = (&who, &token) {
        if c.acl_enforced() && (who.node_id != peer.id || who.role != peer.role) {
            return Err(ClusterError::Forbidden(format!(
                "the certificate of {} ({}) cannot add {} as a {}",
                who.node_id, who.role, peer.id, peer.role
            ))
            .into());
        }
    }
    c.add_peer(peer.clone()).await?;
    Ok(Json(json!({ "peer": peer.id, "role": peer.role })).into_response())
}

#[utoipa::path(get, path = "/v1/allocations", tag = "allocations",
    params(("job" = Option<String>, Query), ("consistent" = Option<bool>, Query)),
    responses((status = 200, body = Vec<crate::model::Allocation>), (status = 404, body = ErrorBody)))]
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
#[derive(Serialize, utoipa::ToSchema)]
struct LeaderStatus {
    #[serde(flatten)]
    leadership: crate::store::Leadership,
    voters: Vec<String>,
}

#[utoipa::path(get, path = "/v1/allocations/{id}", tag = "allocations",
    params(("id" = String, Path), ("consistent" = Option<bool>, Query)),
    responses((status = 200, body = crate::model::Allocation), (status = 404, body = ErrorBody)))]
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
    /// With SSE: only the lines after this one (as `Last-Event-ID`).
    #[serde(default)]
    from_seq: Option<u64>,
}

#[utoipa::path(get, path = "/v1/allocations/{id}/logs", tag = "allocations",
    params(("id" = String, Path), ("follow" = Option<bool>, Query, description = "stream until the task exits"),
        ("from_seq" = Option<u64>, Query, description = "with SSE: only the lines after this one")),
    responses((status = 200, description = "the task's output as text, or with `Accept: text/event-stream` as numbered lines (see `api::logs`), resumable with `Last-Event-ID`", content_type = "text/plain"),
              (status = 421, description = "another node runs it: ask node_http", body = ErrorBody)))]
async fn alloc_logs(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<LogParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let logs = c.logs(&id, p.follow).await?;
    if logs::wants_sse(&headers) {
        let from = logs::resume_from(&headers, p.from_seq);
        return Ok(logs::sse(logs::numbered(logs, from)));
    }
    let body = logs.map(|chunk| chunk.map(|c| c.data).map_err(std::io::Error::other));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ExecBody {
    command: Vec<String>,
}

#[utoipa::path(post, path = "/v1/allocations/{id}/exec", tag = "allocations",
    params(("id" = String, Path)), request_body = ExecBody,
    responses((status = 200, body = crate::runtime::ExecOutput), (status = 421, body = ErrorBody)))]
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

/// `?history=true` adds the samples kept by the node.
#[derive(Deserialize, utoipa::IntoParams)]
struct StatsParams {
    /// Also return the kept samples (every 10 s, the last hour by default).
    #[serde(default)]
    history: bool,
}

#[utoipa::path(get, path = "/v1/allocations/{id}/stats", tag = "allocations",
    params(("id" = String, Path), StatsParams),
    responses((status = 200, body = crate::agent::stats::TaskStats), (status = 404, body = ErrorBody), (status = 421, body = ErrorBody)))]
async fn alloc_stats(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(q): Query<StatsParams>,
) -> ApiResult<Response> {
    Ok(Json(c.stats(&id, q.history).await?).into_response())
}

/// This node's view of leadership: `local` unless `?consistent=true`, which first
/// confirms the leader with a quorum (and fails without one).
#[utoipa::path(get, path = "/v1/status/leader", tag = "cluster",
    params(("consistent" = Option<bool>, Query)), responses((status = 200, body = LeaderStatus)))]
async fn leader(State(c): State<Cluster>, Query(p): Query<ReadParams>) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let voters = c.store().voters().into_iter().map(|p| p.id).collect();
    let status = LeaderStatus {
        leadership: c.leader(),
        voters,
    };
    Ok((h, Json(status)).into_response())
}

/// A component's or the node's condition, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Condition {
    fn word(self) -> &'static str {
        match self {
            Condition::Healthy => "healthy",
            Condition::Degraded => "degraded",
            Condition::Unhealthy => "unhealthy",
        }
    }
}

/// Log entries a store may trail (its own unapplied entries, or on the leader
/// a follower's) before `/health` calls it degraded: a burst of writes passes
/// in well under this, a follower that has stopped keeping up does not.
const STORE_LAG_DEGRADED: u64 = 1_000;

/// How long entries may wait in a node's log uncommitted before `/health`
/// calls its store unhealthy: a commit takes milliseconds and an election a
/// second or two, so five seconds of waiting means the store cannot commit.
const COMMIT_STALL_UNHEALTHY: std::time::Duration = std::time::Duration::from_secs(5);

/// This node and each of its components (Cronium's shape): the store (leader,
/// term, applied index, lag, snapshots), the runtime (engine, version, containers), membership
/// (live and dead members), the API, DNS and the load balancer. The node is
/// as bad as its worst component; `degraded` still answers 200.
async fn node_health(c: &Cluster) -> (Condition, serde_json::Value) {
    let leader = c.leader();
    let runtime_error = c.runtime_health();
    let store_status = c.store().status();
    let lag = store_status.lag();
    let (store_cond, store_reason) = if leader.quorum_lost {
        (
            Condition::Unhealthy,
            Some("this node leads but hears from no majority of the managers".to_string()),
        )
    } else if leader.leader.is_none() {
        (Condition::Unhealthy, Some("no leader known".to_string()))
    } else if std::time::Duration::from_millis(store_status.commit_stalled_ms)
        >= COMMIT_STALL_UNHEALTHY
    {
        (
            Condition::Unhealthy,
            Some(format!(
                "the store cannot commit: {} log entries have waited {:.1} s (a majority of the managers is not answering or not storing)",
                store_status.unapplied,
                store_status.commit_stalled_ms as f64 / 1000.0
            )),
        )
    } else if lag > STORE_LAG_DEGRADED {
        (
            Condition::Degraded,
            Some(format!("the store trails by {lag} log entries")),
        )
    } else {
        (Condition::Healthy, None)
    };
    let (engine, containers) = match runtime_error {
        Some(_) => (None, None),
        None => c.runtime_summary().await,
    };
    let runtime_cond = if runtime_error.is_some() {
        Condition::Unhealthy
    } else {
        Condition::Healthy
    };
    let live: std::collections::HashSet<String> =
        c.membership().live().into_iter().map(|m| m.id).collect();
    let (known, dead): (usize, Vec<String>) = c.store().replica().read(|s| {
        let dead = s
            .nodes
            .keys()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        (s.nodes.len(), dead)
    });
    let membership_cond = if dead.is_empty() {
        Condition::Healthy
    } else {
        Condition::Degraded
    };
    let problems = c.lb_problems();
    let lb_cond = if problems.is_empty() {
        Condition::Healthy
    } else {
        Condition::Degraded
    };
    let worst = [store_cond, runtime_cond, membership_cond, lb_cond]
        .into_iter()
        .max()
        .unwrap_or(Condition::Healthy);
    let component = |cond: Condition, detail: serde_json::Value| {
        let mut v = json!({ "status": cond.word() });
        if let (Some(m), Some(d)) = (v.as_object_mut(), detail.as_object()) {
            m.extend(d.clone());
        }
        v
    };
    let reason = runtime_error
        .clone()
        .or(store_reason.clone())
        .or_else(|| {
            (!dead.is_empty()).then(|| format!("members not answering gossip: {}", dead.join(", ")))
        })
        .or_else(|| {
            problems
                .iter()
                .next()
                .map(|(p, e)| format!("load balancer port {p}: {e}"))
        });
    let mut warnings: Vec<String> = if c.insecure_dev() {
        vec![crate::cluster::INSECURE_DEV_WARNING.to_string()]
    } else {
        Vec::new()
    };
    if let Some(w) = c.local_health().warning() {
        warnings.push(w);
    }
    if let Some(w) = &c.node_info().runtime_warning {
        warnings.push(format!("runtime {}: {w}", c.runtime().name()));
    }
    let body = json!({
        "status": worst.word(),
        "warnings": warnings,
        "node": c.node_id(),
        "leader": leader.leader,
        "reason": reason,
        "components": {
            "store": component(store_cond, json!({
                "leader": leader.leader, "term": leader.term, "is_leader": leader.is_self,
                "applied_index": c.store().replica().applied_index(), "error": store_reason,
                "last_log_index": store_status.last_log_index, "lag": lag,
                "unapplied": store_status.unapplied, "followers_behind": store_status.followers_behind,
                "commit_stalled_ms": store_status.commit_stalled_ms,
                "snapshot": store_status.snapshots,
            })),
            "runtime": component(runtime_cond, json!({
                "name": c.runtime().name(), "version": engine, "containers": containers,
                "error": runtime_error,
            })),
            "membership": component(membership_cond, json!({
                "live": live.len(), "dead": dead.len(), "dead_members": dead, "known_nodes": known,
            })),
            "api": component(Condition::Healthy, json!({ "addr": c.http_addr().map(|a| a.to_string()) })),
            "dns": component(Condition::Healthy, json!({ "addr": c.dns_addr().map(|a| a.to_string()) })),
            "lb": component(lb_cond, json!({
                "listeners": c.lb_stats(None).iter().filter(|l| l.bound).map(|l| l.port).collect::<Vec<_>>(),
                "problems": problems.iter().map(|(p, e)| json!({ "port": p, "error": e })).collect::<Vec<_>>(),
            })),
        },
    });
    (worst, body)
}

#[utoipa::path(get, path = "/health", tag = "cluster",
    responses((status = 200, description = "this node and each of its components: status healthy or degraded"),
              (status = 503, description = "a component is unhealthy, and why")))]
async fn health(State(c): State<Cluster>) -> Response {
    let (cond, body) = node_health(&c).await;
    let code = if cond == Condition::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// For a liveness probe: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "cluster",
    responses((status = 200, description = "the node's process answers")))]
async fn health_live(State(c): State<Cluster>) -> Response {
    Json(json!({ "status": "alive", "node": c.node_id() })).into_response()
}

/// For a readiness probe: 200 once the node can serve (a leader is known, the
/// runtime answers), 503 with why until then.
#[utoipa::path(get, path = "/health/ready", tag = "cluster",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready, and why")))]
async fn health_ready(State(c): State<Cluster>) -> Response {
    let (cond, body) = node_health(&c).await;
    let ready = cond != Condition::Unhealthy;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let answer = json!({
        "status": if ready { "ready" } else { "not ready" },
        "node": c.node_id(),
        "reason": body["reason"],
    });
    (code, Json(answer)).into_response()
}
