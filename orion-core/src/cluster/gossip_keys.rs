//! The gossip keyring through the handle (see [`crate::gossip_keys`]): read
//! it, start it, install, use and remove keys, each change committed sealed
//! under the data key so that every node's transport follows it.

use super::{Cluster, ClusterError};
use crate::command::{Command, Refusal};
use crate::gossip_keys::{GossipKeyInfo, GossipKeys, KeyringError};
use crate::spec::SpecError;

/// How often a change whose version another writer took first is made again.
const ATTEMPTS: usize = 3;

impl From<KeyringError> for ClusterError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Malformed => SpecError::one("key", e.to_string()).into(),
            KeyringError::Unknown(id) => ClusterError::GossipKeyNotFound(id),
            other => ClusterError::refused(other.to_string()),
        }
    }
}

impl Cluster {
    /// The committed gossip keyring as this node's replica holds it, opened
    /// with this node's data key: `Ok(None)` for a cluster with clear-text
    /// gossip; an error when it is sealed and this node cannot open it.
    pub fn gossip_keys(&self) -> Result<Option<GossipKeys>, ClusterError> {
        let Some(sealed) = self
            .inner
            .store
            .replica()
            .read(|s| s.gossip_keyring.clone())
        else {
            return Ok(None);
        };
        let key = self
            .inner
            .data_key
            .as_ref()
            .ok_or(ClusterError::NoDataKey)?;
        GossipKeys::open(key, &sealed)
            .map(Some)
            .map_err(|e| ClusterError::refused(e.to_string()))
    }

    /// The keyring's key ids and which is primary (never a key); empty with
    /// clear-text gossip.
    pub fn gossip_key_list(&self) -> Result<Vec<GossipKeyInfo>, ClusterError> {
        Ok(self.gossip_keys()?.map(|k| k.list()).unwrap_or_default())
    }

    /// Commits `keys` as the keyring when the cluster has none yet (the first
    /// node, at bootstrap, with the key its gossip already uses); a keyring
    /// already committed is kept and returned.
    pub async fn ensure_gossip_keys(&self, keys: GossipKeys) -> Result<GossipKeys, ClusterError> {
        self.change_gossip_keys(|current| match current {
            Some(k) => Ok((k.clone(), false)),
            None => Ok((keys.clone(), true)),
        })
        .await
    }

    /// Installs `key` (base64, 32 bytes) on every node: accepted from now on,
    /// not yet sealing. Returns its id.
    pub async fn install_gossip_key(&self, key: &str) -> Result<String, ClusterError> {
        let id = crate::gossip_keys::key_id(key)?;
        self.change_gossip_keys(|current| {
            let mut k = current.cloned().ok_or_else(no_keyring)?;
            k.install(key)?;
            Ok((k, true))
        })
        .await?;
        Ok(id)
    }

    /// Makes the installed key `id` the one every node seals with.
    pub async fn use_gossip_key(&self, id: &str) -> Result<(), ClusterError> {
        self.change_gossip_keys(|current| {
            let mut k = current.cloned().ok_or_else(no_keyring)?;
            k.use_key(id)?;
            Ok((k, true))
        })
        .await
        .map(|_| ())
    }

    /// Removes the key `id` (not the primary): packets sealed with it are
    /// dropped from then on.
    pub async fn remove_gossip_key(&self, id: &str) -> Result<(), ClusterError> {
        self.change_gossip_keys(|current| {
            let mut k = current.cloned().ok_or_else(no_keyring)?;
            k.remove(id)?;
            Ok((k, true))
        })
        .await
        .map(|_| ())
    }

    /// Reads the committed keyring, applies `change` (which says whether
    /// anything changed), seals the result as the next version and proposes
    /// it; again when another writer took the version first.
    async fn change_gossip_keys(
        &self,
        change: impl Fn(Option<&GossipKeys>) -> Result<(GossipKeys, bool), ClusterError>,
    ) -> Result<GossipKeys, ClusterError> {
        let key = self
            .inner
            .data_key
            .as_ref()
            .ok_or(ClusterError::NoDataKey)?;
        for attempt in 1..=ATTEMPTS {
            self.sync().await?;
            let version = self
                .inner
                .store
                .replica()
                .read(|s| s.gossip_keyring.as_ref().map_or(0, |v| v.version));
            let current = self.gossip_keys()?;
            let (next, changed) = change(current.as_ref())?;
            if !changed {
                return Ok(next);
            }
            let sealed = next.seal(key, version + 1);
            match self.propose(Command::GossipKeyringSet { sealed }).await {
                Ok(_) => return Ok(next),
                Err(ClusterError::Refused {
                    kind: Refusal::Stale,
                    ..
                }) if attempt < ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }
}

fn no_keyring() -> ClusterError {
    ClusterError::refused(
        "this cluster gossips in clear text (insecure dev): it has no gossip keyring".into(),
    )
}
