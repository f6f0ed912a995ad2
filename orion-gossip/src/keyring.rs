//! `Keyring`: a cluster's gossip keys, which of them are installed and which one seals.
//!
//! The shape is Nomad's (`nomad operator gossip keyring`): every node holds the
//! same set of 32-byte keys; one of them, the *primary*, seals every packet the
//! node sends; a packet opens under any installed key. So a key is rotated
//! without a partition in three cluster-wide steps:
//!
//! ```text
//! 1. install(new) on every node   every node opens old and new, seals with old
//! 2. use_key(new) on every node   every node seals with new, still opens old
//! 3. remove(old)  on every node   old packets (and old-key holders) are dropped
//! ```
//!
//! A [`Keyring`] is a cheap handle: clones share one set of keys, and a change
//! made through any clone applies to the very next packet a running
//! [`EncryptedUdpTransport`](crate::transport::EncryptedUdpTransport) seals or
//! opens.
//!
//! Key bytes never appear in `Debug` output, errors or logs: a key is shown by
//! its [`KeyId`], a short digest of it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::STANDARD;
use base64::{DecodeError, Engine as _};
use parking_lot::RwLock;
use zeroize::Zeroize;

/// Length of a gossip key, in bytes: an AES-256 key.
pub const KEY_LEN: usize = 32;

/// Length of a [`KeyId`] on the wire, in bytes (8 hex characters as text).
pub const KEY_ID_LEN: usize = 4;

/// One 32-byte gossip key (AES-256-GCM).
///
/// Parses from and prints as standard base64 with padding (44 characters), the
/// form operators pass around. There is deliberately no `Display`: a key is
/// printed only by an explicit [`to_base64`](Self::to_base64), never by a
/// stray `{}` in a log line. `Debug` shows the [`KeyId`] only, and the bytes
/// are wiped when the key is dropped.
///
/// ```
/// use orion_gossip::keyring::GossipKey;
///
/// let key = GossipKey::generate();
/// let text = key.to_base64();
/// assert_eq!(text.parse::<GossipKey>().unwrap(), key);
/// assert!(!format!("{key:?}").contains(&text));
/// ```
#[derive(Clone)]
pub struct GossipKey([u8; KEY_LEN]);

impl GossipKey {
    /// A new random key, from the thread-local CSPRNG (ChaCha seeded by the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::fill(&mut bytes);
        GossipKey(bytes)
    }

    /// The key made of exactly these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        GossipKey(bytes)
    }

    /// Parses standard base64 (padded); surrounding whitespace, such as the
    /// newline at the end of a key file, is ignored.
    ///
    /// Errors say what is wrong without echoing the text: a key that is almost
    /// right is still almost a secret.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|err| KeyError::NotBase64(describe(&err)))?;
        let key = <[u8; KEY_LEN]>::try_from(decoded.as_slice())
            .map(GossipKey)
            .map_err(|_| KeyError::WrongLength(decoded.len()));
        decoded.zeroize();
        key
    }

    /// The key as standard base64 (44 characters): what
    /// [`from_base64`](Self::from_base64) reads. This is the secret itself.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key's id: the first [`KEY_ID_LEN`] bytes of its BLAKE3 hash, so
    /// that `b3sum` of the raw key starts with the same 8 hex characters.
    pub fn id(&self) -> KeyId {
        let hash = blake3::hash(&self.0);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hash.as_bytes()[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// The AES-256-GCM cipher keyed with this key.
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

impl FromStr for GossipKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GossipKey::from_base64(text)
    }
}

/// Compares in constant time, so that equality checks do not leak how much of
/// a guess is right.
impl PartialEq for GossipKey {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for GossipKey {}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKey({})", self.id())
    }
}

impl Drop for GossipKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// What a base64 decoding error says, without the offending character (which
/// would be a character of the secret).
fn describe(err: &DecodeError) -> String {
    match err {
        DecodeError::InvalidByte(offset, _) | DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        DecodeError::InvalidLength(len) => format!("{len} symbols is not a valid base64 length"),
        DecodeError::InvalidPadding => "invalid padding".to_string(),
    }
}

/// A short, stable name for a [`GossipKey`]: the first 4 bytes of its BLAKE3
/// hash, shown as 8 lowercase hex characters. It travels in every packet so
/// that the receiver knows which installed key opens it; it names a key
/// without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// The id as it travels on the wire.
    pub fn to_bytes(self) -> [u8; KEY_ID_LEN] {
        self.0
    }

    /// The id read from the wire.
    pub fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        KeyId(bytes)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Parses the 8 hex characters that [`Display`](fmt::Display) prints (either case).
impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || KeyError::InvalidId(text.to_string());
        let text_bytes = text.as_bytes();
        if text_bytes.len() != 2 * KEY_ID_LEN || !text.is_ascii() {
            return Err(invalid());
        }
        let mut id = [0u8; KEY_ID_LEN];
        for (byte, pair) in id.iter_mut().zip(text_bytes.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(KeyId(id))
    }
}

/// Why a key or key id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not base64.
    #[error("gossip key must be 32 bytes of base64, got text that is not base64 ({0})")]
    NotBase64(String),
    /// The text is base64, of the wrong number of bytes.
    #[error("gossip key must be 32 bytes of base64, got {0} bytes")]
    WrongLength(usize),
    /// A key id is not 8 hex characters.
    #[error("gossip key id must be 8 hex characters, got {0:?}")]
    InvalidId(String),
}

/// Why a [`Keyring`] refused a change. Callers match the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// No installed key has this id.
    #[error("gossip key {0} is not installed")]
    NotInstalled(KeyId),
    /// The primary key seals every outgoing packet and cannot be removed.
    #[error("gossip key {0} is the primary key: make another key primary before removing it")]
    RemovePrimary(KeyId),
    /// A different installed key has the same id (a 1-in-4-billion chance for
    /// random keys): packets could not say which of the two opens them.
    #[error("gossip key id {0} is already taken by a different installed key")]
    IdCollision(KeyId),
}

/// An installed key as [`Keyring::list`] shows it: its id, and whether it is
/// the primary. Never the key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's id.
    pub id: KeyId,
    /// Whether outgoing packets are sealed with it.
    pub primary: bool,
}

/// A cluster's gossip keys: any number installed (packets open under any of
/// them), one primary (packets are sealed with it).
///
/// Cheap to clone; clones share the keys, behind a lock, so changes are seen
/// at once by every transport holding a clone. A keyring always has a primary
/// key, so it is always usable.
///
/// ```
/// use orion_gossip::keyring::{Keyring, KeyringError};
///
/// let old = Keyring::generate();
/// let keyring = Keyring::new(old.clone());
/// let new = keyring.install(Keyring::generate()).unwrap();
/// assert_eq!(
///     keyring.remove(old.id()),
///     Err(KeyringError::RemovePrimary(old.id()))
/// );
/// keyring.use_key(new).unwrap();
/// keyring.remove(old.id()).unwrap();
/// assert_eq!(keyring.primary(), new);
/// ```
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<RwLock<Ring>>,
}

/// What a keyring's clones share.
struct Ring {
    /// Installed keys, in installation order (the order `list` shows).
    keys: Vec<Installed>,
    /// The id of the key outgoing packets are sealed with; always installed.
    primary: KeyId,
}

/// One installed key, with its cipher ready (AES key expansion done once, not
/// per packet).
struct Installed {
    id: KeyId,
    /// Kept for [`Keyring`]'s equality.
    key: GossipKey,
    cipher: Aes256Gcm,
}

impl Installed {
    fn new(key: GossipKey) -> Self {
        Installed {
            id: key.id(),
            cipher: key.cipher(),
            key,
        }
    }
}

impl Ring {
    fn find(&self, id: KeyId) -> Option<&Installed> {
        self.keys.iter().find(|installed| installed.id == id)
    }
}

impl Keyring {
    /// A keyring holding `primary` alone, as its primary key.
    pub fn new(primary: GossipKey) -> Self {
        let installed = Installed::new(primary);
        Keyring {
            inner: Arc::new(RwLock::new(Ring {
                primary: installed.id,
                keys: vec![installed],
            })),
        }
    }

    /// A new random key (see [`GossipKey::generate`]), to install on every node.
    pub fn generate() -> GossipKey {
        GossipKey::generate()
    }

    /// Installs `key` so that packets sealed with it open; returns its id.
    /// Installing a key already installed changes nothing.
    ///
    /// Errors: [`KeyringError::IdCollision`] if a different key has its id.
    pub fn install(&self, key: GossipKey) -> Result<KeyId, KeyringError> {
        let id = key.id();
        let mut ring = self.inner.write();
        match ring.find(id) {
            Some(installed) if installed.key == key => Ok(id),
            Some(_) => Err(KeyringError::IdCollision(id)),
            None => {
                ring.keys.push(Installed::new(key));
                Ok(id)
            }
        }
    }

    /// Makes the installed key `id` the primary: every packet sent from now
    /// on is sealed with it. Install it on every node first, or the nodes that
    /// lack it drop this node's packets.
    ///
    /// Errors: [`KeyringError::NotInstalled`].
    pub fn use_key(&self, id: KeyId) -> Result<(), KeyringError> {
        let mut ring = self.inner.write();
        if ring.find(id).is_none() {
            return Err(KeyringError::NotInstalled(id));
        }
        ring.primary = id;
        Ok(())
    }

    /// Uninstalls the key `id`: packets sealed with it are dropped from now on.
    ///
    /// Errors: [`KeyringError::RemovePrimary`] for the primary key (make
    /// another one primary first); [`KeyringError::NotInstalled`].
    pub fn remove(&self, id: KeyId) -> Result<(), KeyringError> {
        let mut ring = self.inner.write();
        if ring.primary == id {
            return Err(KeyringError::RemovePrimary(id));
        }
        let before = ring.keys.len();
        ring.keys.retain(|installed| installed.id != id);
        if ring.keys.len() == before {
            return Err(KeyringError::NotInstalled(id));
        }
        Ok(())
    }

    /// The installed keys' ids, in installation order, and which is primary.
    pub fn list(&self) -> Vec<KeyInfo> {
        let ring = self.inner.read();
        ring.keys
            .iter()
            .map(|installed| KeyInfo {
                id: installed.id,
                primary: installed.id == ring.primary,
            })
            .collect()
    }

    /// The primary key's id.
    pub fn primary(&self) -> KeyId {
        self.inner.read().primary
    }

    /// Whether a key with this id is installed.
    pub fn contains(&self, id: KeyId) -> bool {
        self.inner.read().find(id).is_some()
    }

    /// Runs `seal` with the primary key's id and cipher, under the read lock
    /// (a change waits for the packet being sealed, no longer).
    pub(crate) fn with_primary<T>(&self, seal: impl FnOnce(KeyId, &Aes256Gcm) -> T) -> T {
        let ring = self.inner.read();
        let primary = ring
            .find(ring.primary)
            .expect("the primary key is always installed");
        seal(primary.id, &primary.cipher)
    }

    /// Runs `open` with the cipher of the installed key `id`, if any.
    pub(crate) fn with_key<T>(&self, id: KeyId, open: impl FnOnce(&Aes256Gcm) -> T) -> Option<T> {
        let ring = self.inner.read();
        ring.find(id).map(|installed| open(&installed.cipher))
    }

    /// The installed keys, sorted by id, and the primary's id: what equality compares.
    fn contents(&self) -> (KeyId, Vec<(KeyId, GossipKey)>) {
        let ring = self.inner.read();
        let mut keys: Vec<(KeyId, GossipKey)> = ring
            .keys
            .iter()
            .map(|installed| (installed.id, installed.key.clone()))
            .collect();
        keys.sort_by_key(|(id, _)| *id);
        (ring.primary, keys)
    }
}

/// Two keyrings are equal when they hold the same keys with the same primary
/// (a handle is always equal to its clones). Each is read in turn, never both
/// locked at once.
impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.contents() == other.contents()
    }
}

impl Eq for Keyring {}

/// Ids only: `Keyring { primary: KeyId(1a2b3c4d), keys: [KeyId(1a2b3c4d), …] }`.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.inner.read();
        let ids: Vec<KeyId> = ring.keys.iter().map(|installed| installed.id).collect();
        f.debug_struct("Keyring")
            .field("primary", &ring.primary)
            .field("keys", &ids)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id the core shows for a committed key (`orion_core::gossip_keys`,
    /// which cannot depend on this crate) is the id this transport puts on
    /// the wire, so `gossip-key use ID` names the key that seals.
    #[test]
    fn the_cores_key_id_is_the_transports() {
        for _ in 0..16 {
            let text = orion_core::gossip_keys::generate();
            let key = GossipKey::from_base64(&text).unwrap();
            assert_eq!(
                orion_core::gossip_keys::key_id(&text).unwrap(),
                key.id().to_string()
            );
        }
    }

    #[test]
    fn base64_round_trip_and_id_is_the_blake3_prefix() {
        let key = GossipKey::from_bytes([7u8; KEY_LEN]);
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(GossipKey::from_base64(&format!("  {text}\n")).unwrap(), key);
        let hash = blake3::hash(&[7u8; KEY_LEN]).to_hex();
        assert_eq!(key.id().to_string(), hash[..8]);
        assert_eq!(key.id().to_string().parse::<KeyId>().unwrap(), key.id());
        assert_eq!(
            key.id().to_string().to_uppercase().parse::<KeyId>(),
            Ok(key.id())
        );
    }

    #[test]
    fn parsing_errors_say_what_is_wrong_without_echoing_the_text() {
        let short = STANDARD.encode([1u8; 31]);
        assert_eq!(
            short.parse::<GossipKey>().unwrap_err().to_string(),
            "gossip key must be 32 bytes of base64, got 31 bytes"
        );
        let long = STANDARD.encode([1u8; 33]);
        assert_eq!(
            GossipKey::from_base64(&long),
            Err(KeyError::WrongLength(33))
        );
        let mut bad = STANDARD.encode([1u8; 32]);
        bad.replace_range(5..6, "!");
        let err = GossipKey::from_base64(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gossip key must be 32 bytes of base64, got text that is not base64 \
             (invalid character at offset 5)"
        );
        assert!(!err.to_string().contains(&bad));
        assert!(matches!(
            GossipKey::from_base64("abc"),
            Err(KeyError::NotBase64(_))
        ));
        assert_eq!(
            GossipKey::from_base64(""),
            Err(KeyError::WrongLength(0)),
            "empty text decodes to no bytes"
        );
        for bad_id in ["1234567", "123456789", "1234567g", "12345é7"] {
            assert_eq!(
                bad_id.parse::<KeyId>(),
                Err(KeyError::InvalidId(bad_id.into()))
            );
        }
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(Keyring::generate(), Keyring::generate());
    }

    #[test]
    fn debug_shows_ids_never_key_bytes() {
        let key = GossipKey::from_bytes([0xab; KEY_LEN]);
        let keyring = Keyring::new(key.clone());
        keyring
            .install(GossipKey::from_bytes([0xcd; KEY_LEN]))
            .unwrap();
        let id = key.id().to_string();
        for shown in [
            format!("{key:?}"),
            format!("{keyring:?}"),
            format!("{keyring:#?}"),
        ] {
            assert!(shown.contains(&id), "{shown}");
            assert!(!shown.contains(&key.to_base64()), "{shown}");
            assert!(!shown.to_lowercase().contains("abab"), "{shown}");
            assert!(!shown.contains("171, 171"), "{shown}"); // 0xab as decimal
        }
    }

    #[test]
    fn install_use_remove() {
        let first = GossipKey::from_bytes([1; KEY_LEN]);
        let second = GossipKey::from_bytes([2; KEY_LEN]);
        let keyring = Keyring::new(first.clone());
        assert_eq!(
            keyring.list(),
            [KeyInfo {
                id: first.id(),
                primary: true
            }]
        );

        // Installing twice changes nothing; installing does not switch the primary.
        assert_eq!(keyring.install(second.clone()), Ok(second.id()));
        assert_eq!(keyring.install(second.clone()), Ok(second.id()));
        assert_eq!(keyring.primary(), first.id());
        assert_eq!(keyring.list().len(), 2);

        // The primary cannot be removed; an unknown key cannot be used or removed.
        assert_eq!(
            keyring.remove(first.id()),
            Err(KeyringError::RemovePrimary(first.id()))
        );
        let stranger = GossipKey::from_bytes([3; KEY_LEN]).id();
        assert_eq!(
            keyring.use_key(stranger),
            Err(KeyringError::NotInstalled(stranger))
        );
        assert_eq!(
            keyring.remove(stranger),
            Err(KeyringError::NotInstalled(stranger))
        );

        // A clone sees the change at once.
        let clone = keyring.clone();
        clone.use_key(second.id()).unwrap();
        assert_eq!(keyring.primary(), second.id());
        keyring.remove(first.id()).unwrap();
        assert!(!clone.contains(first.id()));
        assert_eq!(
            clone.list(),
            [KeyInfo {
                id: second.id(),
                primary: true
            }]
        );
        assert_eq!(
            keyring.remove(first.id()),
            Err(KeyringError::NotInstalled(first.id()))
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let id: KeyId = "0badc0de".parse().unwrap();
        assert_eq!(
            KeyringError::RemovePrimary(id).to_string(),
            "gossip key 0badc0de is the primary key: make another key primary before removing it"
        );
        assert_eq!(
            KeyringError::NotInstalled(id).to_string(),
            "gossip key 0badc0de is not installed"
        );
    }

    #[test]
    fn equality_is_by_contents_and_primary() {
        let a = GossipKey::from_bytes([1; KEY_LEN]);
        let b = GossipKey::from_bytes([2; KEY_LEN]);
        let one = Keyring::new(a.clone());
        let other = Keyring::new(a.clone());
        assert_eq!(one, one.clone());
        assert_eq!(one, other);
        one.install(b.clone()).unwrap();
        assert_ne!(one, other);
        other.install(b.clone()).unwrap();
        assert_eq!(one, other);
        other.use_key(b.id()).unwrap();
        assert_ne!(one, other);
    }
}
