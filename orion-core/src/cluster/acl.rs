//! API tokens through the handle: bootstrap, make, list, revoke (see
//! [`crate::acl`]).

use std::collections::BTreeSet;

use super::{Cluster, ClusterError};
use crate::acl::{self, AclToken, Scope};
use crate::command::{Command, Refusal};
use crate::spec::SpecError;

impl Cluster {
    /// Whether this node's API asks every caller for a token
    /// ([`ClusterConfig::acl`](super::ClusterConfig::acl)).
    pub fn acl_enforced(&self) -> bool {
        self.inner.acl_enforced
    }

    /// Whether token checks were turned off on purpose (`--insecure-dev`).
    pub fn insecure_dev(&self) -> bool {
        self.inner.insecure_dev
    }

    /// Turns API tokens on for the cluster, once: makes the hash key, the
    /// Raft port's secret and a `management` token named `bootstrap`, hands its secret to `keep`
    /// (which must put it somewhere durable: it is the only time anyone sees
    /// it), and only then commits them, so a secret is never committed and
    /// lost. `Ok(false)` when the cluster was bootstrapped already (by this
    /// call earlier, or by another node); `keep` is then not called. An error
    /// from `keep` commits nothing.
    pub async fn bootstrap_acl(
        &self,
        keep: impl FnOnce(&str) -> std::io::Result<()>,
    ) -> Result<bool, ClusterError> {
        if self.inner.store.replica().read(|s| s.acl.key.is_some()) {
            return Ok(false);
        }
        let key = acl::new_key();
        let (token, secret) = acl::new_token(
            &key,
            "bootstrap",
            [Scope::Management].into(),
            crate::model::unix_ms(),
        )
        .ok_or_else(|| ClusterError::refused("a fresh key did not parse".into()))?;
        keep(&secret)?;
        let raft_secret = Some(acl::new_key());
        match self
            .propose(Command::AclBootstrap {
                key,
                token,
                raft_secret,
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(ClusterError::Refused {
                kind: Refusal::Conflict,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes a token named `name` with `scopes`; the token and its secret,
    /// which is shown this once and kept nowhere.
    pub async fn create_token(
        &self,
        name: &str,
        scopes: BTreeSet<Scope>,
    ) -> Result<(AclToken, String), ClusterError> {
        acl::check_name(name).map_err(|p| SpecError::one("name", p))?;
        if scopes.is_empty() {
            return Err(SpecError::one(
                "scopes",
                "a token needs at least one scope: read, submit, exec, operator or management",
            )
            .into());
        }
        let key = self
            .inner
            .store
            .replica()
            .read(|s| s.acl.key.clone())
            .ok_or_else(|| ClusterError::refused("API tokens are not bootstrapped".into()))?;
        let (token, secret) = acl::new_token(&key, name, scopes, crate::model::unix_ms())
            .ok_or_else(|| ClusterError::refused("the cluster's token key is damaged".into()))?;
        self.propose(Command::AclUpsertToken {
            token: token.clone(),
        })
        .await?;
        Ok((token.public(), secret))
    }

    /// The cluster's tokens (never their secrets or hashes), oldest first.
    pub fn tokens(&self) -> Vec<AclToken> {
        let mut all: Vec<AclToken> = self
            .inner
            .store
            .replica()
            .read(|s| s.acl.tokens.values().map(AclToken::public).collect());
        all.sort_by(|a, b| (a.created_ms, &a.accessor).cmp(&(b.created_ms, &b.accessor)));
        all
    }

    /// Revokes the token `accessor`: committed, so refused on every node from
    /// then on.
    pub async fn revoke_token(&self, accessor: &str) -> Result<(), ClusterError> {
        match self
            .propose(Command::AclRevokeToken {
                accessor: accessor.into(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(ClusterError::Refused {
                kind: Refusal::UnknownToken,
                ..
            }) => Err(ClusterError::TokenNotFound(accessor.into())),
            Err(e) => Err(e),
        }
    }

    /// The token whose secret is `secret`, if it is valid now.
    pub fn token_for(&self, secret: &str) -> Option<AclToken> {
        self.inner
            .store
            .replica()
            .read(|s| s.acl.find(secret).cloned())
    }
}
