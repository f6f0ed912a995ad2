//! Autolock (Swarm's): node-private files sealed under an [`UnlockKey`].
//!
//! A node started with autolock keeps the files that hold cluster-wide
//! secrets (the data key, the CA key, the join tokens, the gossip keyring)
//! sealed: AES-256-GCM under the unlock key, a fresh random 96-bit nonce per
//! write, the file's name as associated data (so one sealed file cannot be
//! passed off as another), in a JSON envelope that says it is locked:
//!
//! ```text
//! {"locked":1,"key_id":"<16 hex>","nonce":"<base64>","sealed":"<base64>"}
//! ```
//!
//! A restarted node needs the key to read them. The key is shown once, as
//! `ORNKEY-1-<43 characters of base64url>`; it is never logged (its `Debug`
//! shows only its id) and its bytes are cleared when it drops. [`read`] and
//! [`write`] are the one way such files are read and written.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The prefix of every unlock key.
pub const UNLOCK_KEY_PREFIX: &str = "ORNKEY-1-";

/// The key a restarted autolocked node needs: 32 bytes for AES-256-GCM.
#[derive(Clone)]
pub struct UnlockKey(Zeroizing<[u8; 32]>);

impl UnlockKey {
    /// A fresh key from the operating system's random source (through
    /// `rand`'s thread generator, a CSPRNG seeded by it).
    pub fn generate() -> UnlockKey {
        UnlockKey(Zeroizing::new(rand::random::<[u8; 32]>()))
    }

    /// Reads `ORNKEY-1-<base64url>` (surrounding white space allowed). The
    /// error says what is wrong and never repeats the input.
    pub fn parse(text: &str) -> Result<UnlockKey, AtRestError> {
        let bad = |why: &str| AtRestError::MalformedKey(why.to_string());
        let rest = text.trim().strip_prefix(UNLOCK_KEY_PREFIX).ok_or_else(|| {
            bad("unlock keys start with ORNKEY-1- (the node printed its key at its first start with --autolock)")
        })?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bytes = Zeroizing::new(
            b64.decode(rest)
                .map_err(|_| bad("expected ORNKEY-1- and 43 characters of base64url"))?,
        );
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("expected ORNKEY-1- and 43 characters of base64url (32 bytes)"))?;
        Ok(UnlockKey(Zeroizing::new(bytes)))
    }

    /// The key as `ORNKEY-1-…`, to show once (cleared when dropped).
    pub fn to_text(&self) -> Zeroizing<String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut s = Zeroizing::new(String::from(UNLOCK_KEY_PREFIX));
        s.push_str(&b64.encode(self.0.as_slice()));
        s
    }

    /// A public fingerprint (16 hex digits, BLAKE3 key derivation, which
    /// tells nothing of the key), recorded in each sealed file.
    pub fn id(&self) -> String {
        let d = blake3::derive_key("orion 2026 unlock key id", self.0.as_slice());
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_slice()))
    }
}

impl PartialEq for UnlockKey {
    fn eq(&self, other: &UnlockKey) -> bool {
        // Compared in time that does not depend on where they differ.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for UnlockKey {}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockKey(id {}, <redacted>)", self.id())
    }
}

/// Why a file at rest could not be read, or a key not taken. The messages
/// never hold a key or a file's contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AtRestError {
    /// The text given is not an unlock key.
    #[error("malformed unlock key: {0}")]
    MalformedKey(String),
    /// The file is sealed and no key was given.
    #[error(
        "{0} is sealed (autolock): the node needs its unlock key (`orion-node cluster unlock`)"
    )]
    Locked(PathBuf),
    /// The file is sealed under another key.
    #[error("the unlock key given is not the one {path} is sealed under (key id {sealed})")]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// The id of the key it is sealed under.
        sealed: String,
    },
    /// The envelope is damaged, or was moved from another file.
    #[error("{0} does not open: its sealed contents are damaged or were made for another file")]
    Damaged(PathBuf),
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A sealed file's contents.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// Always 1: says the file is locked (and the envelope's version).
    locked: u8,
    key_id: String,
    nonce: String,
    sealed: String,
}

fn aad(name: &str) -> Vec<u8> {
    format!("orion-at-rest\0{name}").into_bytes()
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `bytes` are a sealed envelope (not a file in clear).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("locked").is_some() && v.get("sealed").is_some())
}

/// Whether the file at `path` exists and is sealed.
pub fn is_sealed_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| is_sealed(&b))
}

/// `clear` sealed under `key` for the file named `name`.
pub fn seal(key: &UnlockKey, name: &str, clear: &[u8]) -> Vec<u8> {
    let nonce = rand::random::<[u8; 12]>();
    let aad = aad(name);
    let sealed = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: clear,
                aad: &aad,
            },
        )
        .expect("AES-GCM seals a file under 64 GiB");
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = Envelope {
        locked: 1,
        key_id: key.id(),
        nonce: b64.encode(nonce),
        sealed: b64.encode(sealed),
    };
    let mut out = serde_json::to_vec(&env).expect("an envelope serializes");
    out.push(b'\n');
    out
}

/// Opens the envelope `bytes` read from `path` with `key`.
pub fn open(key: &UnlockKey, path: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
    let damaged = || AtRestError::Damaged(path.to_path_buf());
    let env: Envelope = serde_json::from_slice(bytes).map_err(|_| damaged())?;
    if env.key_id != key.id() {
        return Err(AtRestError::WrongKey {
            path: path.to_path_buf(),
            sealed: env.key_id,
        });
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce = b64.decode(&env.nonce).map_err(|_| damaged())?;
    let sealed = b64.decode(&env.sealed).map_err(|_| damaged())?;
    if nonce.len() != 12 || env.locked != 1 {
        return Err(damaged());
    }
    let aad = aad(&name_of(path));
    key.cipher()
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| damaged())
}

/// The contents of `path` in clear: opened with `key` when sealed (refused
/// without one), as they are when in clear; none when there is no file.
pub fn read(
    path: &Path,
    key: Option<&UnlockKey>,
) -> Result<Option<Zeroizing<Vec<u8>>>, AtRestError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AtRestError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !is_sealed(&bytes) {
        return Ok(Some(bytes));
    }
    let key = key.ok_or_else(|| AtRestError::Locked(path.to_path_buf()))?;
    open(key, path, &bytes).map(Some)
}

/// Writes `clear` to `path`, mode 0600, atomically (a `.new` file, synced,
/// renamed over it, the directory synced): sealed under `key` when given, in
/// clear when not.
pub fn write(path: &Path, clear: &[u8], key: Option<&UnlockKey>) -> Result<(), AtRestError> {
    let io = |source| AtRestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let sealed;
    let bytes = match key {
        Some(k) => {
            sealed = seal(k, &name_of(path), clear);
            sealed.as_slice()
        }
        None => clear,
    };
    crate::cluster::pki::write_private(path, bytes).map_err(io)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename itself survives a crash once the directory is synced.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_malformed_ones_are_named_without_being_repeated() {
        let k = UnlockKey::generate();
        let text = k.to_text();
        assert!(
            text.starts_with("ORNKEY-1-") && text.len() == 9 + 43,
            "{}",
            text.len()
        );
        assert_eq!(
            UnlockKey::parse(&format!(" {}\n", text.as_str())).unwrap(),
            k
        );
        assert_ne!(UnlockKey::generate(), k);
        let shown = format!("{k:?}");
        assert!(
            !shown.contains(&text[9..]) && shown.contains(&k.id()),
            "{shown}"
        );
        let short = format!("ORNKEY-1-{}", &text[9..30]);
        let long = format!("{}AAAA", text.as_str());
        let bad_chars = format!("ORNKEY-1-{}", "!".repeat(43));
        for bad in ["", "SWMKEY-1-abc", &text[1..], &short, &long, &bad_chars] {
            let e = UnlockKey::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("malformed unlock key: "), "{e}");
            assert!(!e.contains(&text[9..30]), "{e}");
        }
    }

    #[test]
    fn a_sealed_file_opens_only_with_its_key_and_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let k = UnlockKey::generate();
        let path = dir.path().join("data.key");
        write(&path, b"marker-0b7e", Some(&k)).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(is_sealed(&raw) && is_sealed_file(&path));
        assert!(!String::from_utf8_lossy(&raw).contains("marker-0b7e"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read(&path, Some(&k)).unwrap().unwrap().as_slice(),
            b"marker-0b7e"
        );
        assert!(matches!(read(&path, None), Err(AtRestError::Locked(_))));
        let e = read(&path, Some(&UnlockKey::generate())).unwrap_err();
        assert!(matches!(e, AtRestError::WrongKey { .. }), "{e}");
        // Moved to another file's name: refused.
        let moved = dir.path().join("ca.json");
        std::fs::copy(&path, &moved).unwrap();
        assert!(matches!(
            read(&moved, Some(&k)),
            Err(AtRestError::Damaged(_))
        ));
        // In clear: read as is, with or without a key; absent: none.
        write(&moved, b"{\"clear\":1}", None).unwrap();
        assert!(!is_sealed_file(&moved));
        assert_eq!(
            read(&moved, Some(&k)).unwrap().unwrap().as_slice(),
            b"{\"clear\":1}"
        );
        assert!(read(&dir.path().join("none"), Some(&k)).unwrap().is_none());
        // A fresh nonce per write.
        write(&path, b"marker-0b7e", Some(&k)).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), raw);
    }
}
