//! Secrets: small values (passwords, keys, certificates) that tasks read and
//! nobody else sees.
//!
//! A secret is written through the API (`POST /v1/secrets`) and encrypted
//! there, on the node that takes the request, with AES-256-GCM under the
//! cluster's [`DataKey`]: a fresh random 96-bit nonce per version, and the
//! secret's name and version number as associated data, so a ciphertext
//! cannot be passed off as another secret's or another version's. Only the
//! ciphertext is proposed, committed, replicated and snapshotted: the value in
//! clear never enters the Raft log.
//!
//! The node that runs a task using a secret decrypts it when it starts the
//! task, writes it to a per-allocation directory on a tmpfs, mounted read-only
//! into the container (see [`crate::agent`]), and removes it when the
//! allocation stops. The value in clear is a [`Plaintext`], whose `Debug` and
//! `Display` say only its length, so no log line, error or answer can carry it.
//!
//! | what | where |
//! |---|---|
//! | the value in clear | the request body, the API handler's memory until sealed; on a node that runs a task using it: the agent's memory while it starts the task, a file on tmpfs while the allocation lives (or the container's environment, for `env_from_secret`) |
//! | ciphertext, nonce, key id | [`crate::state::ClusterState::secrets`]: the Raft log, snapshots, every replica |
//! | the data key | each node's memory; `orion::Node` keeps it in `<data-dir>/data.key` (mode 0600; sealed under the unlock key with autolock, see [`crate::at_rest`]) |

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The largest secret value: 1 MiB, as Kubernetes' and Swarm's (a secret is a
/// credential or a certificate, not a file store; every replica keeps the last
/// [`KEPT_SECRET_VERSIONS`] of each).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Versions kept per secret; older ones are dropped when a new one is written.
pub const KEPT_SECRET_VERSIONS: usize = 5;

/// The cluster's key for secrets at rest: 32 bytes for AES-256-GCM.
///
/// Its `Debug` shows only its id ([`DataKey::id`]); its bytes are cleared when
/// it drops.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh key from the operating system's random source (through
    /// `rand`'s thread generator, a CSPRNG seeded by it).
    pub fn generate() -> DataKey {
        DataKey(Zeroizing::new(rand::random::<[u8; 32]>()))
    }

    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    /// Parses 64 hex digits (surrounding white space allowed), as
    /// [`DataKey::to_hex`] writes them.
    pub fn from_hex(text: &str) -> Result<DataKey, String> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a data key is 64 hex digits (32 bytes); this is {} characters",
                text.len()
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| "a data key is 64 hex digits".to_string())?;
        }
        Ok(DataKey(bytes))
    }

    /// The key as 64 hex digits, for its file (cleared when dropped).
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.0.iter() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// A public fingerprint of the key (16 hex digits, BLAKE3 key derivation,
    /// which tells nothing of the key): each secret version records the id of
    /// the key it was sealed with, and each node registers the id of the key
    /// it holds, so a task is placed only where its secrets can be opened.
    pub fn id(&self) -> String {
        let d = blake3::derive_key("orion 2026 data key id", self.0.as_slice());
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_slice()))
    }
}

impl PartialEq for DataKey {
    fn eq(&self, other: &DataKey) -> bool {
        // Compared in time that does not depend on where they differ.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(id {}, <redacted>)", self.id())
    }
}

/// A secret's value in clear. `Debug` and `Display` print only its length;
/// the bytes are cleared when it drops. Read them with [`Plaintext::expose`],
/// at the one place that must (sealing, writing the task's file).
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Wraps bytes in clear (taking them: no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Plaintext {
        Plaintext(Zeroizing::new(bytes))
    }

    /// The bytes in clear.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {} bytes>", self.0.len())
    }
}

impl fmt::Display for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One sealed version of a secret, as the replicated state keeps it.
/// `Debug` leaves out the nonce and ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// Its number: 1 for the first, one more for each new value.
    pub version: u64,
    /// When it was written (Unix ms, the clock of the node that sealed it).
    pub created_ms: u64,
    /// The [`DataKey::id`] of the key it was sealed with.
    pub key_id: String,
    /// The 96-bit nonce, base64.
    pub nonce: String,
    /// The AES-256-GCM ciphertext with its tag, base64.
    pub ciphertext: String,
}

impl fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVersion")
            .field("version", &self.version)
            .field("created_ms", &self.created_ms)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A secret as the replicated state keeps it: its last
/// [`KEPT_SECRET_VERSIONS`] versions, sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Its name (DNS-safe).
    pub name: String,
    /// Kept versions, oldest first; the last is the current one.
    pub versions: Vec<SecretVersion>,
    /// When its first version was written (Unix ms).
    pub created_ms: u64,
    /// Log index of its first version.
    pub create_index: u64,
    /// Log index of its last change.
    pub modify_index: u64,
}

impl Secret {
    /// Its current version number.
    pub fn version(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// Its current version.
    pub fn current(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }

    /// What answers show of it: never the value, sealed or not.
    pub fn meta(&self) -> SecretMeta {
        SecretMeta {
            name: self.name.clone(),
            version: self.version(),
            created_ms: self.created_ms,
            updated_ms: self
                .versions
                .last()
                .map_or(self.created_ms, |v| v.created_ms),
            versions: self
                .versions
                .iter()
                .map(|v| VersionMeta {
                    version: v.version,
                    created_ms: v.created_ms,
                    key_id: v.key_id.clone(),
                })
                .collect(),
        }
    }
}

/// A secret as `GET /v1/secrets` shows it: names, versions and times, never
/// the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretMeta {
    /// Its name.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// When its first version was written (Unix ms).
    pub created_ms: u64,
    /// When its current version was written (Unix ms).
    pub updated_ms: u64,
    /// The versions kept, oldest first.
    pub versions: Vec<VersionMeta>,
}

/// One kept version of a secret, without its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionMeta {
    /// Its number.
    pub version: u64,
    /// When it was written (Unix ms).
    pub created_ms: u64,
    /// The id of the data key it was sealed with.
    pub key_id: String,
}

/// Why a secret could not be sealed or opened. The messages never hold the
/// value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Sealed under another data key than this node's.
    #[error("secret {name:?} version {version} is sealed under data key {sealed}, and this node holds data key {held}")]
    WrongKey {
        /// The secret.
        name: String,
        /// The version.
        version: u64,
        /// The id of the key it was sealed with.
        sealed: String,
        /// The id of the key this node holds.
        held: String,
    },
    /// The ciphertext does not open: damaged, tampered with, or moved to
    /// another name or version.
    #[error("secret {name:?} version {version} does not decrypt: its ciphertext is damaged or was not made for this name and version")]
    Tampered {
        /// The secret.
        name: String,
        /// The version.
        version: u64,
    },
}

/// The associated data of a version: what its ciphertext is bound to.
fn aad(name: &str, version: u64) -> Vec<u8> {
    // Names are DNS labels (no NUL), so the encoding is unambiguous.
    format!("orion-secret\0{name}\0{version}").into_bytes()
}

/// Seals `value` as version `version` of secret `name` under `key`, with a
/// fresh random nonce.
pub fn seal(
    key: &DataKey,
    name: &str,
    version: u64,
    value: &Plaintext,
    created_ms: u64,
) -> SecretVersion {
    let nonce = rand::random::<[u8; 12]>();
    let aad = aad(name, version);
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: value.expose(),
                aad: &aad,
            },
        )
        // AES-GCM fails only past 64 GiB; values are capped at 1 MiB.
        .expect("AES-GCM seals a value under 64 GiB");
    let b64 = base64::engine::general_purpose::STANDARD;
    SecretVersion {
        version,
        created_ms,
        key_id: key.id(),
        nonce: b64.encode(nonce),
        ciphertext: b64.encode(ciphertext),
    }
}

/// Opens version `v` of secret `name` with `key`.
pub fn open(key: &DataKey, name: &str, v: &SecretVersion) -> Result<Plaintext, SecretError> {
    if v.key_id != key.id() {
        return Err(SecretError::WrongKey {
            name: name.to_string(),
            version: v.version,
            sealed: v.key_id.clone(),
            held: key.id(),
        });
    }
    let tampered = || SecretError::Tampered {
        name: name.to_string(),
        version: v.version,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce = b64.decode(&v.nonce).map_err(|_| tampered())?;
    let ciphertext = b64.decode(&v.ciphertext).map_err(|_| tampered())?;
    if nonce.len() != 12 {
        return Err(tampered());
    }
    let aad = aad(name, v.version);
    let mut clear = key
        .cipher()
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| tampered())?;
    let value = Plaintext::new(std::mem::take(&mut clear));
    clear.zeroize();
    Ok(value)
}

/// Checks a secret's name: a DNS label, so it is safe as a file name and in
/// a default mount path.
pub fn check_name(name: &str) -> Result<(), String> {
    crate::spec::check_dns_label(name).map_err(|p| format!("secret name {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Plaintext {
        Plaintext::new(s.as_bytes().to_vec())
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_name_and_version() {
        let key = DataKey::generate();
        let v = seal(&key, "db-password", 1, &value("hunter2"), 7);
        assert_eq!((v.version, v.created_ms), (1, 7));
        assert_eq!(v.key_id, key.id());
        assert!(!v.ciphertext.contains("hunter2"));
        assert_eq!(open(&key, "db-password", &v).unwrap(), value("hunter2"));
        // A fresh nonce each time: the same value seals differently.
        let again = seal(&key, "db-password", 1, &value("hunter2"), 7);
        assert_ne!(again.nonce, v.nonce);
        assert_ne!(again.ciphertext, v.ciphertext);
        let empty = seal(&key, "e", 1, &Plaintext::new(Vec::new()), 0);
        assert!(open(&key, "e", &empty).unwrap().is_empty());
    }

    #[test]
    fn another_key_does_not_open_it() {
        let key = DataKey::generate();
        let other = DataKey::generate();
        let v = seal(&key, "x", 1, &value("s3cret"), 0);
        let e = open(&other, "x", &v).unwrap_err();
        assert!(matches!(e, SecretError::WrongKey { .. }), "{e}");
        assert!(e.to_string().contains(&key.id()), "{e}");
        // Even with the key id forged, the cipher refuses it.
        let forged = SecretVersion {
            key_id: other.id(),
            ..v
        };
        let e = open(&other, "x", &forged).unwrap_err();
        assert!(matches!(e, SecretError::Tampered { .. }), "{e}");
    }

    #[test]
    fn a_tampered_ciphertext_or_nonce_does_not_open() {
        let key = DataKey::generate();
        let v = seal(&key, "x", 1, &value("s3cret"), 0);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&v.ciphertext).unwrap();
        ct[0] ^= 1;
        let flipped = SecretVersion {
            ciphertext: b64.encode(&ct),
            ..v.clone()
        };
        assert!(matches!(
            open(&key, "x", &flipped),
            Err(SecretError::Tampered { .. })
        ));
        let mut nonce = b64.decode(&v.nonce).unwrap();
        nonce[11] ^= 0x80;
        let renonced = SecretVersion {
            nonce: b64.encode(&nonce),
            ..v.clone()
        };
        assert!(open(&key, "x", &renonced).is_err());
        let cut = SecretVersion {
            ciphertext: b64.encode(&ct[..4]),
            ..v.clone()
        };
        assert!(open(&key, "x", &cut).is_err());
        let garbage = SecretVersion {
            nonce: "not base64!".into(),
            ..v
        };
        assert!(open(&key, "x", &garbage).is_err());
    }

    #[test]
    fn the_associated_data_binds_name_and_version() {
        let key = DataKey::generate();
        let v = seal(&key, "a", 3, &value("s3cret"), 0);
        // Moved to another secret, or passed off as another version.
        assert!(matches!(
            open(&key, "b", &v),
            Err(SecretError::Tampered { .. })
        ));
        let renumbered = SecretVersion {
            version: 4,
            ..v.clone()
        };
        assert!(open(&key, "a", &renumbered).is_err());
        assert!(open(&key, "a", &v).is_ok());
    }

    #[test]
    fn nothing_prints_a_value_or_a_key() {
        let key = DataKey::from_bytes([0xab; 32]);
        let p = value("hunter2-marker");
        assert_eq!(format!("{p:?}"), "<redacted: 14 bytes>");
        assert_eq!(format!("{p}"), "<redacted: 14 bytes>");
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains(&key.id()), "{shown}");
        let v = seal(&key, "x", 1, &p, 0);
        let shown = format!("{v:?}");
        assert!(!shown.contains(&v.ciphertext) && !shown.contains(&v.nonce));
        let e = open(&DataKey::generate(), "x", &v).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let key = DataKey::generate();
        let back = DataKey::from_hex(&format!("  {}\n", key.to_hex().as_str())).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.id(), key.id());
        assert_ne!(DataKey::generate(), key);
        assert!(DataKey::from_hex("abc").unwrap_err().contains("64 hex"));
        assert!(DataKey::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn versions_are_kept_and_shown_without_values() {
        let key = DataKey::generate();
        let s = Secret {
            name: "x".into(),
            versions: vec![
                seal(&key, "x", 1, &value("one"), 10),
                seal(&key, "x", 2, &value("two"), 20),
            ],
            created_ms: 10,
            create_index: 1,
            modify_index: 2,
        };
        let m = s.meta();
        assert_eq!((m.version, m.created_ms, m.updated_ms), (2, 10, 20));
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            !json.contains("ciphertext") && !json.contains("nonce"),
            "{json}"
        );
        assert!(check_name("db-password").is_ok());
        assert!(check_name("Db_Password")
            .unwrap_err()
            .starts_with("secret name"));
    }
}
