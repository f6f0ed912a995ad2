//! The sealed packet: `[version][key id][nonce][ciphertext + tag]`, AES-256-GCM.
//!
//! ```text
//!  0        1             5                     17                       len-16     len
//!  +--------+-------------+---------------------+------------------------+----------+
//!  | 0x01   | key id (4)  | nonce (12, random)  | ciphertext of a frame  | tag (16) |
//!  +--------+-------------+---------------------+------------------------+----------+
//!  \________ header: associated data ___________/
//! ```
//!
//! The header is authenticated as associated data, so a packet whose key id or
//! version was changed in flight fails like one whose ciphertext was. The
//! nonce is fresh from the CSPRNG for every packet; with 96-bit random nonces
//! the chance that two packets under one key share a nonce stays below 2⁻³²
//! for the first 2³² packets sealed with that key cluster-wide (NIST SP
//! 800-38D's bound), which is one reason to rotate keys (see
//! [`keyring`](crate::keyring)).
//!
//! Opening checks, in this order and without touching the ciphertext before
//! the tag verifies: length, version, key id, tag. Each failure is a
//! [`DropReason`].

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};

use crate::keyring::{KeyId, Keyring, KEY_ID_LEN};
use crate::transport::stats::DropReason;

/// The only packet version this build reads and writes.
pub(crate) const VERSION: u8 = 1;
/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Version, key id and nonce.
pub(crate) const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes sealing adds to a plaintext: header and tag (33).
pub(crate) const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Seals `plaintext` with the keyring's primary key, under a fresh nonce.
pub(crate) fn seal(keyring: &Keyring, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    keyring.with_primary(|id, cipher| {
        let mut packet = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        packet.push(VERSION);
        packet.extend_from_slice(&id.to_bytes());
        packet.extend_from_slice(&nonce);
        packet.extend_from_slice(plaintext);
        let (header, body) = packet.split_at_mut(HEADER_LEN);
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), header, body)
            .expect("AES-GCM seals any plaintext shorter than 64 GiB");
        packet.extend_from_slice(&tag);
        packet
    })
}

/// Opens `packet` under whichever installed key its id names; returns the
/// plaintext, or why the packet is dropped.
pub(crate) fn open(keyring: &Keyring, packet: &[u8]) -> Result<Vec<u8>, DropReason> {
    match packet.first() {
        None => return Err(DropReason::TooShort),
        Some(&VERSION) => {}
        Some(_) => return Err(DropReason::BadVersion),
    }
    if packet.len() < SEAL_OVERHEAD {
        return Err(DropReason::TooShort);
    }
    let (header, rest) = packet.split_at(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&header[1..1 + KEY_ID_LEN]);
    let nonce = Nonce::from_slice(&header[1 + KEY_ID_LEN..]);
    let mut plaintext = ciphertext.to_vec();
    keyring
        .with_key(KeyId::from_bytes(id), |cipher| {
            cipher.decrypt_in_place_detached(nonce, header, &mut plaintext, Tag::from_slice(tag))
        })
        .ok_or(DropReason::UnknownKey)?
        .map_err(|_| DropReason::BadTag)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{GossipKey, KEY_LEN};

    fn keyring() -> Keyring {
        Keyring::new(GossipKey::from_bytes([9; KEY_LEN]))
    }

    #[test]
    fn round_trip_with_the_documented_layout() {
        let keyring = keyring();
        let packet = seal(&keyring, b"hello gossip");
        assert_eq!(packet.len(), b"hello gossip".len() + SEAL_OVERHEAD);
        assert_eq!(packet[0], VERSION);
        assert_eq!(packet[1..5], keyring.primary().to_bytes());
        assert!(
            !packet.windows(5).any(|w| w == b"hello"),
            "plaintext visible"
        );
        assert_eq!(open(&keyring, &packet).unwrap(), b"hello gossip");
        assert_eq!(open(&keyring, &seal(&keyring, b"")).unwrap(), b"");
    }

    #[test]
    fn every_packet_gets_a_fresh_nonce() {
        let keyring = keyring();
        let a = seal(&keyring, b"same");
        let b = seal(&keyring, b"same");
        assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn any_flipped_byte_fails_the_tag_or_the_header_checks() {
        let keyring = keyring();
        let packet = seal(&keyring, b"a chitchat envelope, say");
        for at in 0..packet.len() {
            let mut tampered = packet.clone();
            tampered[at] ^= 0x01;
            let expected = match at {
                0 => DropReason::BadVersion,
                1..=4 => DropReason::UnknownKey,
                _ => DropReason::BadTag,
            };
            assert_eq!(open(&keyring, &tampered), Err(expected), "byte {at}");
        }
    }

    #[test]
    fn short_unknown_and_wrong_version_packets_are_refused() {
        let keyring = keyring();
        let packet = seal(&keyring, b"payload");
        assert_eq!(open(&keyring, &[]), Err(DropReason::TooShort));
        assert_eq!(
            open(&keyring, &packet[..SEAL_OVERHEAD - 1]),
            Err(DropReason::TooShort)
        );
        // Cut inside the ciphertext: the tag no longer matches.
        assert_eq!(
            open(&keyring, &packet[..packet.len() - 1]),
            Err(DropReason::BadTag)
        );
        let mut version_2 = packet.clone();
        version_2[0] = 2;
        assert_eq!(open(&keyring, &version_2), Err(DropReason::BadVersion));
        // A clear-text chitchat packet starts with its magic number, 45139 LE.
        assert_eq!(
            open(&keyring, &[0x53, 0xb0, 0, 0, 0, 0]),
            Err(DropReason::BadVersion)
        );
        let stranger = Keyring::new(GossipKey::from_bytes([8; KEY_LEN]));
        assert_eq!(open(&stranger, &packet), Err(DropReason::UnknownKey));
    }

    #[test]
    fn opens_under_any_installed_key_until_removed() {
        let old = GossipKey::from_bytes([1; KEY_LEN]);
        let new = GossipKey::from_bytes([2; KEY_LEN]);
        let sender = Keyring::new(old.clone());
        let receiver = Keyring::new(old.clone());
        let sealed_old = seal(&sender, b"old");
        receiver.install(new.clone()).unwrap();
        receiver.use_key(new.id()).unwrap();
        assert_eq!(open(&receiver, &sealed_old).unwrap(), b"old");
        sender.install(new.clone()).unwrap();
        sender.use_key(new.id()).unwrap();
        let sealed_new = seal(&sender, b"new");
        assert_eq!(sealed_new[1..5], new.id().to_bytes());
        receiver.remove(old.id()).unwrap();
        assert_eq!(open(&receiver, &sealed_new).unwrap(), b"new");
        assert_eq!(open(&receiver, &sealed_old), Err(DropReason::UnknownKey));
    }
}
