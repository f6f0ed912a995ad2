//! Secrets through the handle: seal and write, list, forget (see
//! [`crate::secret`]).

use super::{Cluster, ClusterError};
use crate::command::{Command, Refusal};
use crate::secret::{self, Plaintext, SecretMeta, MAX_SECRET_BYTES};
use crate::spec::SpecError;

/// How often a write whose version another writer took first is sealed again.
const SEAL_ATTEMPTS: usize = 3;

impl Cluster {
    /// The id of the data key this node holds, if it holds one.
    pub fn data_key_id(&self) -> Option<String> {
        self.inner.data_key.as_ref().map(secret::DataKey::id)
    }

    /// Writes `value` as the next version of secret `name` (version 1 for a
    /// new one), sealed here under the data key: only the ciphertext is
    /// proposed. Refused, writing nothing, for a name that is not DNS-safe
    /// ([`ClusterError::Spec`] naming `name`), a value over
    /// [`MAX_SECRET_BYTES`] ([`ClusterError::TooLarge`]), or a node without
    /// a data key ([`ClusterError::NoDataKey`]).
    pub async fn create_secret(
        &self,
        name: &str,
        value: Plaintext,
    ) -> Result<SecretMeta, ClusterError> {
        secret::check_name(name).map_err(|p| SpecError::one("name", p))?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(ClusterError::TooLarge {
                what: "secret data",
                size: value.len(),
                limit: MAX_SECRET_BYTES,
            });
        }
        let key = self
            .inner
            .data_key
            .as_ref()
            .ok_or(ClusterError::NoDataKey)?;
        let replica = self.inner.store.replica();
        for attempt in 1..=SEAL_ATTEMPTS {
            // The version is bound into the ciphertext: read the committed one.
            self.sync().await?;
            let next = replica.read(|s| s.secrets.get(name).map_or(0, |s| s.version())) + 1;
            let sealed = secret::seal(key, name, next, &value, crate::model::unix_ms());
            match self
                .propose(Command::PutSecret {
                    name: name.into(),
                    version: sealed,
                })
                .await
            {
                Ok(_) => {
                    return replica
                        .read(|s| s.secrets.get(name).map(|s| s.meta()))
                        .ok_or_else(|| ClusterError::refused(format!("secret {name:?} vanished")))
                }
                // Another writer took this version first: seal the next.
                Err(ClusterError::Refused {
                    kind: Refusal::Stale,
                    ..
                }) if attempt < SEAL_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Every secret's names, versions and times (never a value), from this
    /// node's replica, by name.
    pub fn secrets(&self) -> Vec<SecretMeta> {
        self.inner
            .store
            .replica()
            .read(|s| s.secrets.values().map(|s| s.meta()).collect())
    }

    /// One secret's versions and times (never its value).
    pub fn secret(&self, name: &str) -> Option<SecretMeta> {
        self.inner
            .store
            .replica()
            .read(|s| s.secrets.get(name).map(|s| s.meta()))
    }

    /// Forgets secret `name` and its versions; refused while a running job
    /// uses it. Tasks already running keep the files they were given.
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClusterError> {
        match self
            .propose(Command::DeleteSecret { name: name.into() })
            .await
        {
            Err(ClusterError::Refused {
                kind: Refusal::UnknownSecret,
                ..
            }) => Err(ClusterError::SecretNotFound(name.into())),
            other => other.map(|_| ()),
        }
    }
}
