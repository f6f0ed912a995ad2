//! `/v1/acl/…`: API tokens (see [`crate::acl`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, ApiResult, ErrorBody};
use crate::acl::{AclToken, Scope};
use crate::cluster::Cluster;

/// `POST /v1/acl/tokens` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    /// What it is for.
    name: String,
    /// What it may do.
    scopes: Vec<Scope>,
}

/// A token just made, with its secret: shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MadeToken {
    #[serde(flatten)]
    token: AclToken,
    /// The secret to send as `Authorization: Bearer <secret>`.
    secret: String,
}

#[utoipa::path(post, path = "/v1/acl/tokens", tag = "acl", request_body = NewToken,
    responses((status = 201, body = MadeToken), (status = 400, body = ErrorBody), (status = 409, description = "tokens not bootstrapped", body = ErrorBody)))]
pub(super) async fn create_token(
    State(c): State<Cluster>,
    caller: Option<Extension<AclToken>>,
    body: Bytes,
) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body).unwrap_or_default();
    let t: NewToken = crate::spec::parse_json_strict(text)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("token: {e}") }),
            )
        })?;
    let scopes = t.scopes.into_iter().collect();
    if caller.is_some_and(|Extension(me)| !me.may_grant(&scopes)) {
        return Err(cannot_grant());
    }
    let (token, secret) = c.create_token(&t.name, scopes).await?;
    Ok((StatusCode::CREATED, Json(MadeToken { token, secret })).into_response())
}

#[utoipa::path(get, path = "/v1/acl/tokens", tag = "acl",
    responses((status = 200, description = "every token, without secrets or hashes", body = Vec<AclToken>)))]
pub(super) async fn list_tokens(State(c): State<Cluster>) -> Json<Vec<AclToken>> {
    Json(c.tokens())
}

#[utoipa::path(delete, path = "/v1/acl/tokens/{accessor}", tag = "acl", params(("accessor" = String, Path)),
    responses((status = 200, description = "revoked on every node"), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(c): State<Cluster>,
    caller: Option<Extension<AclToken>>,
    Path(accessor): Path<String>,
) -> ApiResult<Response> {
    if let Some(Extension(me)) = caller {
        let target = c.tokens().into_iter().find(|t| t.accessor == accessor);
        if target.is_some_and(|t| !me.may_grant(&t.scopes)) {
            return Err(cannot_grant());
        }
    }
    c.revoke_token(&accessor).await?;
    Ok(Json(json!({ "revoked": accessor })).into_response())
}

#[utoipa::path(get, path = "/v1/acl/token/self", tag = "acl",
    responses((status = 200, description = "the caller's token", body = AclToken), (status = 400, description = "this node asks for no tokens", body = ErrorBody)))]
pub(super) async fn token_self(token: Option<Extension<AclToken>>) -> ApiResult<Response> {
    match token {
        Some(Extension(t)) => Ok(Json(t.public()).into_response()),
        None => Err(ApiError(
            StatusCode::BAD_REQUEST,
            json!({ "error": "this node asks for no API tokens (started with --insecure-dev)" }),
        )),
    }
}

/// A token may make or revoke only tokens whose scopes it holds.
fn cannot_grant() -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        json!({ "error": "a token can make or revoke only tokens of scopes it holds itself (management: any)" }),
    )
}
