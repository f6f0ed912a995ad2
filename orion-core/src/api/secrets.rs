//! `/v1/secrets…`: secrets are written here and never read back; answers
//! carry names, versions and times only (see [`crate::secret`]).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::{consistency, ApiError, ApiResult, ErrorBody, ReadParams};
use crate::cluster::{Cluster, ClusterError};
use crate::secret::{Plaintext, SecretMeta};

/// `POST /v1/secrets` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSecret {
    /// The secret's name (DNS-safe); an existing one gets a new version.
    name: String,
    /// Its value, base64 (standard alphabet, padded): at most 1 MiB once
    /// decoded.
    data_base64: String,
}

#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = NewSecret,
    responses((status = 201, description = "written: the secret's new version (never its value)", body = SecretMeta),
        (status = 400, description = "bad input (the field is named)", body = ErrorBody),
        (status = 409, description = "another write took the version", body = ErrorBody),
        (status = 413, description = "the value is over 1 MiB", body = ErrorBody),
        (status = 503, description = "this node holds no data key", body = ErrorBody)))]
pub(super) async fn create_secret(State(c): State<Cluster>, body: Bytes) -> ApiResult<Response> {
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, json!({ "error": e }));
    let text = std::str::from_utf8(&body).map_err(|_| bad("body is not UTF-8".into()))?;
    // serde's messages name fields and types, never a string's content.
    let s: NewSecret = crate::spec::parse_json_strict(text)
        .and_then(serde_json::from_value)
        .map_err(|e| bad(format!("secret: {e}")))?;
    let encoded = zeroize::Zeroizing::new(s.data_base64);
    let value = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map(Plaintext::new)
        // The decoder's message quotes a byte of the input: not repeated.
        .map_err(|_| bad("data_base64: not base64 (standard alphabet, with padding)".into()))?;
    drop(encoded);
    let meta = c.create_secret(&s.name, value).await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    params(("consistent" = Option<bool>, Query, description = "a linearizable read")),
    responses((status = 200, description = "every secret's names, versions and times, never a value", body = Vec<SecretMeta>)))]
pub(super) async fn list_secrets(
    State(c): State<Cluster>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    Ok((h, Json(c.secrets())).into_response())
}

#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path), ("consistent" = Option<bool>, Query)),
    responses((status = 200, description = "its versions and times, never its value", body = SecretMeta),
        (status = 404, body = ErrorBody)))]
pub(super) async fn get_secret(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> ApiResult<Response> {
    let h = consistency(&c, &p).await?;
    let s = c.secret(&name).ok_or(ClusterError::SecretNotFound(name))?;
    Ok((h, Json(s)).into_response())
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    responses((status = 200, description = "forgotten, with every version"), (status = 404, body = ErrorBody),
        (status = 409, description = "used by a running job", body = ErrorBody)))]
pub(super) async fn delete_secret(
    State(c): State<Cluster>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    c.delete_secret(&name).await?;
    Ok(Json(json!({ "secret": name, "deleted": true })).into_response())
}
