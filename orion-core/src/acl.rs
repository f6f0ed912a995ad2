//! API tokens with scopes (Nomad's ACL tokens, cut to what Orion needs).
//!
//! A token is a secret (`orn_` and 64 hex digits: 32 random bytes) shown once,
//! when it is made; the cluster keeps only its keyed BLAKE3 hash (the key is
//! the cluster's, made at bootstrap) with a public accessor id, a name and
//! scopes. Tokens live in the replicated state, so one made or revoked on any
//! node holds on every node as soon as the command is committed.
//!
//! | scope | allows |
//! |---|---|
//! | `read` | every `GET` of jobs, allocations, nodes, services, events, metrics |
//! | `submit` | writing jobs: submit, plan, stop, scale, revert, deployment actions, periodic force |
//! | `exec` | a task's logs, exec and stats |
//! | `operator` | nodes (drain, remove), peers, volumes, gc, tokens, secrets (reading their list too) |
//! | `management` | everything |
//!
//! A scope allows its own routes only (a `submit` token that wants to read
//! what it submitted is given `read` too); `management` allows all. Health
//! (`/health*`) and the dashboard's files (`/ui`) need no token: probes and
//! the login page must answer. Which scope a route needs is
//! [`required_scope`], one table, checked over the router's whole route list
//! by a test so that a new route cannot be forgotten.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Whether a node's API asks for tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// Ask every caller for a token with the route's scope. Default off in
    /// the core builder, whose API an embedder may keep to itself;
    /// `orion::Node` and `orion-node agent` turn it on unless told
    /// `insecure_dev`.
    pub enforce: bool,
    /// Token checks were turned off on purpose (`--insecure-dev`): the node
    /// warns at start and in `/health`.
    pub insecure_dev: bool,
}

/// What a token may do (see the module docs for the routes).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read the cluster.
    Read,
    /// Write jobs.
    Submit,
    /// Logs, exec and stats of tasks.
    Exec,
    /// Nodes, peers, volumes, tokens.
    Operator,
    /// Everything.
    Management,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Submit,
        Scope::Exec,
        Scope::Operator,
        Scope::Management,
    ];

    /// Its name (`read`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Exec => "exec",
            Scope::Operator => "operator",
            Scope::Management => "management",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope {s:?}: one of read, submit, exec, operator, management")
            })
    }
}

/// What a route asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: health and the dashboard's files.
    Nothing,
    /// Any valid token (`GET /v1/acl/token/self`).
    AnyToken,
    /// A token with this scope (or `management`).
    Scope(Scope),
    /// A cluster member's certificate (`POST /v1/cluster/certificate`: a
    /// node renewing its own).
    Node,
}

/// Which scope `method` on `route` (the router's pattern, `/v1/jobs/{name}`)
/// needs. An unknown route needs `read`, so that without a token nothing
/// tells what exists.
pub fn required_scope(method: &axum::http::Method, route: &str) -> Need {
    let read_only = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let under = |p: &str| route == p || route.starts_with(&format!("{p}/"));
    match route {
        "/health" | "/health/live" | "/health/ready" | "/" | "/ui" | "/ui/" | "/ui/{file}" => {
            Need::Nothing
        }
        "/v1/acl/token/self" => Need::AnyToken,
        // A joining node has no token and no certificate yet: the join token
        // in the body is checked by the route.
        "/v1/cluster/ca" | "/v1/cluster/join" => Need::Nothing,
        // A locked node has no tokens open; the key in the body is checked.
        "/v1/cluster/unlock" => Need::Nothing,
        "/v1/cluster/certificate" => Need::Node,
        r if r.starts_with("/v1/allocations/{id}/")
            && ["logs", "exec", "stats"]
                .iter()
                .any(|x| r["/v1/allocations/{id}/".len()..].starts_with(x)) =>
        {
            Need::Scope(Scope::Exec)
        }
        _ if under("/v1/acl") || under("/v1/cluster") || under("/v1/secrets") => {
            Need::Scope(Scope::Operator)
        }
        _ if read_only => Need::Scope(Scope::Read),
        _ if under("/v1/jobs") || under("/v1/deployments") => Need::Scope(Scope::Submit),
        _ => Need::Scope(Scope::Operator),
    }
}

/// A token as the cluster keeps it: never its secret (and its `Debug` shows
/// no hash).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AclToken {
    /// Its public id (16 hex digits), for listing and revoking.
    pub accessor: String,
    /// What it is for, as its maker said.
    pub name: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// When it was made (Unix ms).
    pub created_ms: u64,
    /// The keyed BLAKE3 hash of its secret, hex (empty in answers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl std::fmt::Debug for AclToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclToken")
            .field("accessor", &self.accessor)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl AclToken {
    /// Whether it may do what `need` asks.
    pub fn allows(&self, need: Need) -> bool {
        match need {
            Need::Nothing | Need::AnyToken => true,
            // Only a node's certificate renews it.
            Need::Node => false,
            Need::Scope(s) => self.scopes.contains(&Scope::Management) || self.scopes.contains(&s),
        }
    }

    /// Whether it may make (or revoke) a token of `scopes`: `management`
    /// may do any; another only one whose scopes it holds itself, so an
    /// `operator` token never mints a `management` one.
    pub fn may_grant(&self, scopes: &BTreeSet<Scope>) -> bool {
        self.scopes.contains(&Scope::Management) || scopes.is_subset(&self.scopes)
    }

    /// The same without its hash, for answers.
    pub fn public(&self) -> AclToken {
        AclToken {
            hash: String::new(),
            ..self.clone()
        }
    }
}

/// The cluster's tokens and the key their hashes are made with (its `Debug`
/// shows neither key nor hashes).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// The hash key (64 hex digits); `None` until bootstrap.
    pub key: Option<String>,
    /// Tokens by accessor.
    pub tokens: BTreeMap<String, AclToken>,
    /// The secret cluster members send with every Raft RPC and forwarded
    /// call (`x-orion-raft-secret`), so that the Raft port answers only them;
    /// made at bootstrap. Until mutual TLS, it travels in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_secret: Option<String>,
    /// The keyed hash of the manager join token's secret (see
    /// [`crate::tls::JoinToken`]); `None` until made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_manager: Option<String>,
    /// The same for the worker join token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_worker: Option<String>,
}

/// The header carrying [`AclState::raft_secret`].
pub const RAFT_SECRET_HEADER: &str = "x-orion-raft-secret";

/// Whether `given` is `want`, in time that does not depend on where they differ.
pub fn same_secret(given: &str, want: &str) -> bool {
    given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl std::fmt::Debug for AclState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclState")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field(
                "raft_secret",
                &self.raft_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("join_manager", &self.join_manager.is_some())
            .field("join_worker", &self.join_worker.is_some())
            .field("tokens", &self.tokens.values().collect::<Vec<_>>())
            .finish()
    }
}

impl AclState {
    /// Whether nothing is set (not bootstrapped).
    pub fn is_empty(&self) -> bool {
        self.key.is_none()
            && self.tokens.is_empty()
            && self.raft_secret.is_none()
            && self.join_manager.is_none()
            && self.join_worker.is_none()
    }

    /// The stored hash of `role`'s join token.
    pub fn join_hash(&self, role: crate::model::NodeRole) -> Option<&str> {
        match role {
            crate::model::NodeRole::Manager => self.join_manager.as_deref(),
            crate::model::NodeRole::Worker => self.join_worker.as_deref(),
        }
    }

    /// Which role's join token has the secret `secret`, if either.
    pub fn join_role(&self, secret: &str) -> Option<crate::model::NodeRole> {
        let key = self.key.as_deref().and_then(parse_key)?;
        let hash = hash_secret(&key, secret);
        [
            crate::model::NodeRole::Manager,
            crate::model::NodeRole::Worker,
        ]
        .into_iter()
        .find(|r| self.join_hash(*r).is_some_and(|h| same_secret(h, &hash)))
    }

    /// The keyed hash of `secret` under this state's key (once bootstrapped).
    pub fn hash(&self, secret: &str) -> Option<String> {
        let key = self.key.as_deref().and_then(parse_key)?;
        Some(hash_secret(&key, secret))
    }

    /// The token whose secret is `secret`, if any (a linear scan: clusters
    /// hold tens of tokens, not millions).
    pub fn find(&self, secret: &str) -> Option<&AclToken> {
        let key = self.key.as_deref().and_then(parse_key)?;
        let hash = hash_secret(&key, secret);
        // Compared in constant time, so timing tells nothing of the hash.
        self.tokens.values().find(|t| same_secret(&t.hash, &hash))
    }
}

/// The prefix of every token secret.
pub const SECRET_PREFIX: &str = "orn_";

/// Whether `s` has a token secret's shape (`orn_` and 64 hex digits).
pub fn is_secret_shaped(s: &str) -> bool {
    s.strip_prefix(SECRET_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let bytes = from_hex(hex)?;
    bytes.try_into().ok()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The keyed BLAKE3 hash of `secret`, hex.
pub fn hash_secret(key: &[u8; 32], secret: &str) -> String {
    blake3::keyed_hash(key, secret.as_bytes())
        .to_hex()
        .to_string()
}

/// A fresh hash key (hex), for bootstrap.
pub fn new_key() -> String {
    to_hex(&rand::random::<[u8; 32]>())
}

/// A new token for `state`'s key (or `key`, at bootstrap) and its secret,
/// which is shown once and kept nowhere.
pub fn new_token(
    key_hex: &str,
    name: &str,
    scopes: BTreeSet<Scope>,
    now_ms: u64,
) -> Option<(AclToken, String)> {
    let key = parse_key(key_hex)?;
    let secret = format!("{SECRET_PREFIX}{}", to_hex(&rand::random::<[u8; 32]>()));
    let token = AclToken {
        accessor: to_hex(&rand::random::<[u8; 8]>()),
        name: name.to_string(),
        scopes,
        created_ms: now_ms,
        hash: hash_secret(&key, &secret),
    };
    Some((token, secret))
}

/// Checks a token's name: 1–64 printable characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "token name {name:?} must be 1 to 64 printable characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn routes_need_the_scope_the_table_says() {
        let cases = [
            (Method::GET, "/health", Need::Nothing),
            (Method::GET, "/ui/{file}", Need::Nothing),
            (Method::GET, "/v1/jobs", Need::Scope(Scope::Read)),
            (Method::POST, "/v1/jobs", Need::Scope(Scope::Submit)),
            (Method::POST, "/v1/jobs/plan", Need::Scope(Scope::Submit)),
            (
                Method::DELETE,
                "/v1/jobs/{name}",
                Need::Scope(Scope::Submit),
            ),
            (
                Method::GET,
                "/v1/allocations/{id}",
                Need::Scope(Scope::Read),
            ),
            (
                Method::GET,
                "/v1/allocations/{id}/logs",
                Need::Scope(Scope::Exec),
            ),
            (
                Method::GET,
                "/v1/allocations/{id}/logs/ws",
                Need::Scope(Scope::Exec),
            ),
            (
                Method::POST,
                "/v1/allocations/{id}/exec",
                Need::Scope(Scope::Exec),
            ),
            (
                Method::GET,
                "/v1/allocations/{id}/stats",
                Need::Scope(Scope::Exec),
            ),
            (
                Method::POST,
                "/v1/nodes/{id}/drain",
                Need::Scope(Scope::Operator),
            ),
            (Method::GET, "/v1/nodes", Need::Scope(Scope::Read)),
            (
                Method::POST,
                "/v1/cluster/peers",
                Need::Scope(Scope::Operator),
            ),
            (Method::GET, "/v1/acl/tokens", Need::Scope(Scope::Operator)),
            (Method::GET, "/v1/acl/token/self", Need::AnyToken),
            (Method::POST, "/v1/gc", Need::Scope(Scope::Operator)),
            (Method::POST, "/v1/volumes", Need::Scope(Scope::Operator)),
            (Method::POST, "/v1/secrets", Need::Scope(Scope::Operator)),
            (Method::GET, "/v1/secrets", Need::Scope(Scope::Operator)),
            (
                Method::GET,
                "/v1/secrets/{name}",
                Need::Scope(Scope::Operator),
            ),
            (
                Method::DELETE,
                "/v1/secrets/{name}",
                Need::Scope(Scope::Operator),
            ),
            (
                Method::GET,
                "/v1/cluster/gossip-keys",
                Need::Scope(Scope::Operator),
            ),
            (
                Method::POST,
                "/v1/cluster/gossip-keys/{id}/use",
                Need::Scope(Scope::Operator),
            ),
            (
                Method::POST,
                "/v1/cluster/ca/rotate",
                Need::Scope(Scope::Operator),
            ),
            (Method::GET, "/v1/nowhere", Need::Scope(Scope::Read)),
        ];
        for (m, r, want) in cases {
            assert_eq!(required_scope(&m, r), want, "{m} {r}");
        }
    }

    #[test]
    fn a_token_is_found_by_its_secret_only() {
        let key = new_key();
        let (t, secret) = new_token(&key, "ci", [Scope::Read].into(), 1).unwrap();
        assert!(is_secret_shaped(&secret), "{secret}");
        assert!(!t.hash.contains(&secret[4..]));
        let mut s = AclState {
            key: Some(key),
            ..AclState::default()
        };
        s.tokens.insert(t.accessor.clone(), t.clone());
        assert_eq!(s.find(&secret), Some(&t));
        assert_eq!(s.find(&format!("{secret}0")), None);
        assert_eq!(s.find(&t.hash), None);
        assert!(t.allows(Need::Scope(Scope::Read)));
        assert!(!t.allows(Need::Scope(Scope::Submit)));
        assert!(t.may_grant(&[Scope::Read].into()));
        assert!(!t.may_grant(&[Scope::Read, Scope::Submit].into()));
        assert!(!t.may_grant(&[Scope::Management].into()));
        assert!(!format!("{s:?}").contains(&t.hash), "Debug shows no hash");
        let mut m = t.clone();
        m.scopes = [Scope::Management].into();
        assert!(m.may_grant(&[Scope::Management].into()));
        assert!(Scope::ALL.iter().all(|s| m.allows(Need::Scope(*s))));
        assert_eq!("operator".parse::<Scope>(), Ok(Scope::Operator));
        assert!("root"
            .parse::<Scope>()
            .unwrap_err()
            .contains("unknown scope"));
    }
}
