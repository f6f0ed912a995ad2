//! `/v1/cluster/{ca,join,certificate,join-tokens}`: the cluster PKI (see
//! [`crate::tls`] and [`crate::cluster::pki`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;

use super::{ApiError, ApiResult, ErrorBody};
use crate::cluster::pki::{CertGrant, JoinRequest, RenewRequest};
use crate::cluster::{Cluster, ClusterError};
use crate::model::NodeRole;
use crate::tls::PeerIdentity;

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &Bytes) -> ApiResult<T> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    crate::spec::parse_json_strict(text)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("{what}: {e}") }),
            )
        })
}

#[utoipa::path(get, path = "/v1/cluster/ca", tag = "cluster",
    responses((status = 200, description = "the CA certificates this node trusts, PEM", content_type = "application/x-pem-file"),
              (status = 404, description = "this node serves no TLS", body = ErrorBody)))]
pub(super) async fn get_ca(State(c): State<Cluster>) -> ApiResult<Response> {
    let Some(pki) = c.pki() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            json!({ "error": "this node serves no TLS (started with --insecure-dev)" }),
        ));
    };
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        pki.tls.roots_pem(),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/cluster/join", tag = "cluster", request_body = JoinRequest,
    responses((status = 200, description = "its certificate (and for a manager the CA)", body = CertGrant),
              (status = 400, body = ErrorBody),
              (status = 403, description = "the token is not valid for this cluster and role", body = ErrorBody)))]
pub(super) async fn join(State(c): State<Cluster>, body: Bytes) -> ApiResult<Response> {
    let req: JoinRequest = parse("join request", &body)?;
    crate::spec::check_dns_label(&req.node_id).map_err(|p| ClusterError::Config {
        field: "node_id",
        problem: p,
    })?;
    Ok(Json(c.admit(&req)?).into_response())
}

/// The unlock key sent to `POST /v1/cluster/unlock` (its schema only: the
/// locked node's own route reads it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UnlockBody {
    /// `ORNKEY-1-…`.
    key: String,
}

/// A locked node (autolock) answers this route before its store opens (see
/// `orion::Node`); a running node is not locked, and says so.
#[utoipa::path(post, path = "/v1/cluster/unlock", tag = "cluster", request_body = UnlockBody,
    responses((status = 200, description = "the key opens this node's files: it starts"),
              (status = 400, description = "not an unlock key", body = ErrorBody),
              (status = 403, description = "not this node's unlock key", body = ErrorBody),
              (status = 409, description = "this node is not locked", body = ErrorBody)))]
pub(super) async fn unlock(State(c): State<Cluster>) -> ApiResult<Response> {
    Err(ApiError(
        StatusCode::CONFLICT,
        json!({ "error": format!("node {} is not locked: it is running", c.node_id()), "locked": false }),
    ))
}

/// `GET /v1/cluster/unlock-key` (operator): the key this node's files are
/// sealed under (Swarm's `swarm unlock-key`).
#[utoipa::path(get, path = "/v1/cluster/unlock-key", tag = "cluster",
    responses((status = 200, description = "{\"key\": \"ORNKEY-1-…\"}"),
              (status = 404, description = "this node is not autolocked", body = ErrorBody)))]
pub(super) async fn get_unlock_key(State(c): State<Cluster>) -> ApiResult<Response> {
    match c.pki().and_then(|p| p.unlock_key()) {
        Some(k) => {
            Ok(Json(json!({ "key": k.to_text().as_str(), "key_id": k.id() })).into_response())
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            json!({ "error": "this node is not autolocked (start it with --autolock)" }),
        )),
    }
}

#[utoipa::path(post, path = "/v1/cluster/certificate", tag = "cluster", request_body = RenewRequest,
    responses((status = 200, description = "a new certificate for the calling node", body = CertGrant),
              (status = 401, description = "not called with a member's certificate", body = ErrorBody)))]
pub(super) async fn renew(
    State(c): State<Cluster>,
    who: Option<Extension<PeerIdentity>>,
    body: Bytes,
) -> ApiResult<Response> {
    let Some(Extension(who)) = who else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            json!({ "error": "a certificate is renewed over mutual TLS with the certificate itself" }),
        ));
    };
    let req: RenewRequest = parse("renewal", &body)?;
    Ok(Json(c.renew_certificate(&who, &req)?).into_response())
}

/// A join token as shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ShownToken {
    role: NodeRole,
    token: String,
}

fn role(s: &str) -> ApiResult<NodeRole> {
    match s {
        "manager" => Ok(NodeRole::Manager),
        "worker" => Ok(NodeRole::Worker),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("role {s:?}: manager or worker") }),
        )),
    }
}

#[utoipa::path(get, path = "/v1/cluster/join-tokens/{role}", tag = "cluster", params(("role" = String, Path)),
    responses((status = 200, body = ShownToken),
              (status = 404, description = "this node did not make the current token", body = ErrorBody)))]
pub(super) async fn get_join_token(
    State(c): State<Cluster>,
    Path(r): Path<String>,
) -> ApiResult<Response> {
    let role = role(&r)?;
    match c.join_token(role) {
        Some(token) => Ok(Json(ShownToken { role, token }).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("this node does not hold the current {role} join token (tokens are kept as hashes; the node that made it can show it): rotate it to get a new one") }),
        )),
    }
}

#[utoipa::path(post, path = "/v1/cluster/join-tokens/{role}/rotate", tag = "cluster", params(("role" = String, Path)),
    responses((status = 200, description = "the new token; the old one no longer joins", body = ShownToken),
              (status = 409, description = "this node serves no TLS", body = ErrorBody)))]
pub(super) async fn rotate_join_token(
    State(c): State<Cluster>,
    Path(r): Path<String>,
) -> ApiResult<Response> {
    let role = role(&r)?;
    let token = c.rotate_join_token(role).await?;
    Ok(Json(ShownToken {
        role,
        token: token.to_string(),
    })
    .into_response())
}

/// `POST /v1/cluster/gossip-keys` body.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGossipKey {
    /// The key, 32 bytes in standard base64; default: one made here.
    #[serde(default)]
    key: Option<String>,
}

/// An installed key's id.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct GossipKeyId {
    id: String,
}

#[utoipa::path(get, path = "/v1/cluster/gossip-keys", tag = "cluster",
    responses((status = 200, description = "the keyring's key ids, which one seals (never a key)", body = Vec<crate::gossip_keys::GossipKeyInfo>)))]
pub(super) async fn list_gossip_keys(State(c): State<Cluster>) -> ApiResult<Response> {
    Ok(Json(c.gossip_key_list()?).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/gossip-keys", tag = "cluster", request_body = NewGossipKey,
    responses((status = 201, description = "installed on every node (accepted, not yet sealing): its id", body = GossipKeyId),
              (status = 400, description = "not a 32-byte base64 key", body = ErrorBody),
              (status = 409, description = "clear-text gossip, or the keyring is full", body = ErrorBody)))]
pub(super) async fn install_gossip_key(
    State(c): State<Cluster>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewGossipKey = if body.is_empty() {
        NewGossipKey { key: None }
    } else {
        parse("gossip key", &body)?
    };
    let key = zeroize::Zeroizing::new(req.key.unwrap_or_else(crate::gossip_keys::generate));
    let id = c.install_gossip_key(&key).await?;
    Ok((StatusCode::CREATED, Json(GossipKeyId { id })).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/gossip-keys/{id}/use", tag = "cluster", params(("id" = String, Path)),
    responses((status = 204, description = "every node seals with it from now on"),
              (status = 404, description = "no such key", body = ErrorBody)))]
pub(super) async fn use_gossip_key(
    State(c): State<Cluster>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    c.use_gossip_key(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(delete, path = "/v1/cluster/gossip-keys/{id}", tag = "cluster", params(("id" = String, Path)),
    responses((status = 204, description = "removed: packets sealed with it are dropped"),
              (status = 404, description = "no such key", body = ErrorBody),
              (status = 409, description = "it is the primary", body = ErrorBody)))]
pub(super) async fn remove_gossip_key(
    State(c): State<Cluster>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    c.remove_gossip_key(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/cluster/ca/rotation", tag = "cluster",
    responses((status = 200, description = "the CA's rotation, its progress and the CA certificates to trust", body = crate::cluster::ca::CaStatus),
              (status = 409, description = "no CA record (insecure dev)", body = ErrorBody)))]
pub(super) async fn ca_rotation(State(c): State<Cluster>) -> ApiResult<Response> {
    Ok(Json(c.ca_status()?).into_response())
}

#[utoipa::path(post, path = "/v1/cluster/ca/rotate", tag = "cluster",
    responses((status = 202, description = "a new CA, cross-signed by the old, that every node now moves to", body = crate::cluster::ca::CaStatus),
              (status = 409, description = "a rotation is under way, or this node serves no TLS", body = ErrorBody)))]
pub(super) async fn rotate_ca(State(c): State<Cluster>) -> ApiResult<Response> {
    Ok((StatusCode::ACCEPTED, Json(c.rotate_ca().await?)).into_response())
}
