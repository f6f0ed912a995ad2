//! The cluster's gossip keyring as the replicated state keeps it: 32-byte
//! AES-256-GCM keys (base64), one of them the primary that seals outgoing
//! packets, all of them accepted on the way in (Nomad's `operator gossip
//! keyring` shape: install a new key everywhere, use it, then remove the old).
//!
//! The keyring is sealed under the cluster's data key like a secret (see
//! [`crate::secret`]), under a name no secret can have, so the Raft log and
//! snapshots never hold a gossip key in clear. Each node's gossip transport
//! (`orion_gossip::transport::EncryptedUdpTransport`) follows the committed
//! keyring; the core knows only its shape, not the transport.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::secret::{self, DataKey, Plaintext, SecretError, SecretVersion};

/// The name the keyring is sealed under: not DNS-safe, so no secret has it.
pub const SEALED_NAME: &str = "_gossip-keyring";

/// Most keys a keyring holds (a rotation needs two; a few more for overlap).
pub const MAX_KEYS: usize = 8;

/// A keyring: its keys (base64, 32 bytes each) and which one is primary.
/// `Debug` shows key ids only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeys {
    /// The primary key's id.
    pub primary: String,
    /// Every installed key, base64, in installation order.
    pub keys: Vec<String>,
}

impl fmt::Debug for GossipKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipKeys")
            .field("primary", &self.primary)
            .field("keys", &self.list())
            .finish()
    }
}

/// One key as answers show it: its id, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GossipKeyInfo {
    /// The key's id: the first 4 bytes of its BLAKE3 hash, hex (what the
    /// gossip transport puts in each packet's header).
    pub id: String,
    /// Whether it seals outgoing packets.
    pub primary: bool,
}

/// Why a keyring change is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The key is not 32 bytes of standard base64.
    #[error("a gossip key is 32 bytes in standard base64 (44 characters, as `orion-node cluster gossip-key generate` prints)")]
    Malformed,
    /// No installed key has this id.
    #[error("no gossip key with id {0}")]
    Unknown(String),
    /// The primary key cannot be removed.
    #[error("gossip key {0} is the primary: use another key first")]
    RemovePrimary(String),
    /// The keyring is full.
    #[error("the keyring holds {MAX_KEYS} keys already: remove one first")]
    Full,
}

/// The id of a base64 key, or why it is not one.
pub fn key_id(key: &str) -> Result<String, KeyringError> {
    let bytes = decode(key)?;
    let hash = blake3::hash(&bytes);
    Ok(hash.as_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn decode(key: &str) -> Result<[u8; 32], KeyringError> {
    base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyringError::Malformed)
}

/// A new random key, base64.
pub fn generate() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

impl GossipKeys {
    /// A keyring holding `primary` alone.
    pub fn new(primary: &str) -> Result<GossipKeys, KeyringError> {
        Ok(GossipKeys {
            primary: key_id(primary)?,
            keys: vec![primary.trim().to_string()],
        })
    }

    /// Its keys by id, without the keys.
    pub fn list(&self) -> Vec<GossipKeyInfo> {
        self.keys
            .iter()
            .filter_map(|k| key_id(k).ok())
            .map(|id| GossipKeyInfo {
                primary: id == self.primary,
                id,
            })
            .collect()
    }

    /// The primary key, base64.
    pub fn primary_key(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| key_id(k).ok().as_deref() == Some(&self.primary))
            .map(String::as_str)
    }

    /// Installs `key` (accepted on the way in from now on; not yet used to
    /// seal); returns its id. Installing a key already held changes nothing.
    pub fn install(&mut self, key: &str) -> Result<String, KeyringError> {
        let id = key_id(key)?;
        if !self.list().iter().any(|k| k.id == id) {
            if self.keys.len() >= MAX_KEYS {
                return Err(KeyringError::Full);
            }
            self.keys.push(key.trim().to_string());
        }
        Ok(id)
    }

    /// Makes the installed key `id` the primary.
    pub fn use_key(&mut self, id: &str) -> Result<(), KeyringError> {
        if !self.list().iter().any(|k| k.id == id) {
            return Err(KeyringError::Unknown(id.into()));
        }
        self.primary = id.to_string();
        Ok(())
    }

    /// Removes the key `id` (not the primary).
    pub fn remove(&mut self, id: &str) -> Result<(), KeyringError> {
        if id == self.primary {
            return Err(KeyringError::RemovePrimary(id.into()));
        }
        let before = self.keys.len();
        self.keys.retain(|k| key_id(k).ok().as_deref() != Some(id));
        if self.keys.len() == before {
            return Err(KeyringError::Unknown(id.into()));
        }
        Ok(())
    }

    /// Sealed as version `version` under `key`.
    pub fn seal(&self, key: &DataKey, version: u64) -> SecretVersion {
        let text = serde_json::to_vec(self).expect("a keyring serializes");
        secret::seal(
            key,
            SEALED_NAME,
            version,
            &Plaintext::new(text),
            crate::model::unix_ms(),
        )
    }

    /// Opens a sealed keyring.
    pub fn open(key: &DataKey, sealed: &SecretVersion) -> Result<GossipKeys, SecretError> {
        let plain = secret::open(key, SEALED_NAME, sealed)?;
        serde_json::from_slice(plain.expose()).map_err(|_| SecretError::Tampered {
            name: SEALED_NAME.into(),
            version: sealed.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_installs_uses_then_removes() {
        let (a, b) = (generate(), generate());
        let mut ring = GossipKeys::new(&a).unwrap();
        let ida = ring.primary.clone();
        assert_eq!(
            ring.remove(&ida),
            Err(KeyringError::RemovePrimary(ida.clone()))
        );
        let idb = ring.install(&b).unwrap();
        assert_eq!(
            ring.install(&b).unwrap(),
            idb,
            "installing twice is one key"
        );
        assert_eq!(ring.keys.len(), 2);
        ring.use_key(&idb).unwrap();
        assert_eq!(ring.primary_key(), Some(b.as_str()));
        ring.remove(&ida).unwrap();
        assert_eq!(
            ring.list(),
            [GossipKeyInfo {
                id: idb.clone(),
                primary: true
            }]
        );
        assert_eq!(
            ring.use_key("00000000"),
            Err(KeyringError::Unknown("00000000".into()))
        );
        assert_eq!(ring.remove(&ida), Err(KeyringError::Unknown(ida)));
    }

    #[test]
    fn bad_keys_are_refused_and_never_shown() {
        for bad in ["", "not base64!", "AAAA", &"A".repeat(88)] {
            assert_eq!(
                GossipKeys::new(bad),
                Err(KeyringError::Malformed),
                "{bad:?}"
            );
        }
        let mut ring = GossipKeys::new(&generate()).unwrap();
        for _ in 1..MAX_KEYS {
            ring.install(&generate()).unwrap();
        }
        assert_eq!(ring.install(&generate()), Err(KeyringError::Full));
        let shown = format!("{ring:?}");
        assert!(
            ring.keys.iter().all(|k| !shown.contains(k.as_str())),
            "{shown}"
        );
    }

    #[test]
    fn sealed_it_opens_only_under_its_key() {
        let ring = GossipKeys::new(&generate()).unwrap();
        let key = DataKey::generate();
        let sealed = ring.seal(&key, 1);
        assert!(!sealed.ciphertext.contains(&ring.keys[0]));
        assert_eq!(GossipKeys::open(&key, &sealed).unwrap(), ring);
        assert!(GossipKeys::open(&DataKey::generate(), &sealed).is_err());
    }
}
