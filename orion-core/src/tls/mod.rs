//! The cluster's PKI: a certificate authority made by the first node, node
//! certificates it issues, mutual TLS between nodes and TLS on the API, and
//! the join tokens that bind a new node to this CA.
//!
//! # Layout
//!
//! - [`ca`] — [`CertAuthority`]: the CA key and certificate (rcgen, ECDSA
//!   P-256) and [`CertAuthority::issue`] for node certificates.
//! - [`state`] — [`TlsState`]: a node's live material (trusted roots, its
//!   certificate and key) and the rustls configs over it, which read it at
//!   every handshake, so renewal needs no restart.
//! - this module — [`TlsError`], [`fingerprint`], [`PeerIdentity`] (who a
//!   verified certificate names) and [`JoinToken`].
//!
//! # Identity
//!
//! A node certificate carries the DNS name `<node id>.<role>.node.orion`;
//! [`PeerIdentity::from_cert`] reads it back from a certificate rustls has
//! already verified against the CA. Servers do not check names when nodes dial
//! each other (the CA is the cluster's own and addresses change); trust is the
//! CA's signature, identity is that name.

pub mod ca;
pub mod rotation;
pub mod state;

use std::time::Duration;

pub use ca::{CertAuthority, NodeKey, Subject};
pub use state::{
    ensure_default_provider, parse_certs, plain_client_config, unverified_client_config, NodeCert,
    TlsState,
};

use crate::model::NodeRole;

/// The suffix of the DNS name that carries a node's identity.
pub const IDENTITY_SUFFIX: &str = ".node.orion";

/// How long node certificates are valid by default: 90 days, as Swarm's.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// A TLS step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Input (a PEM text, a key, a token) is malformed.
    #[error("{0}")]
    BadInput(String),
    /// Making or signing a certificate failed.
    #[error("certificate: {0}")]
    Cert(String),
}

impl TlsError {
    fn rcgen(e: rcgen::Error) -> TlsError {
        TlsError::Cert(e.to_string())
    }
}

/// Whether the first certificate in `cert_pem` was issued by the CA whose
/// certificate is `ca_pem` (its issuer name is the CA's subject name). Not a
/// signature check: it tells which of a node's trusted CAs signed a
/// certificate the node already holds.
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (parse_certs(cert_pem), parse_certs(ca_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(ca)) = (
        webpki::EndEntityCert::try_from(&cert[0]),
        webpki::EndEntityCert::try_from(&ca[0]),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject()
}

/// The SHA-256 fingerprints of the certificates in a PEM bundle, in order
/// (none for text that is not one).
pub fn fingerprints(pem: &str) -> Vec<String> {
    parse_certs(pem)
        .map(|certs| certs.iter().map(|c| fingerprint(c.as_ref())).collect())
        .unwrap_or_default()
}

/// A certificate's SHA-256 digest over its DER, lowercase hex: what a join
/// token pins and what `openssl x509 -fingerprint -sha256` prints (without
/// the colons).
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of the first certificate in a PEM text.
pub fn fingerprint_pem(pem: &str) -> Result<String, TlsError> {
    let certs = parse_certs(pem)?;
    Ok(fingerprint(certs[0].as_ref()))
}

/// DER as one PEM `CERTIFICATE` block.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Who a verified node certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The node's id.
    pub node_id: String,
    /// Its role.
    pub role: NodeRole,
}

impl PeerIdentity {
    /// The identity in `der` (a certificate the TLS layer verified), if it
    /// carries one.
    pub fn from_cert(der: &[u8]) -> Option<PeerIdentity> {
        let der = rustls::pki_types::CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der).ok()?;
        let found = cert.valid_dns_names().find_map(|n| {
            let rest = n.strip_suffix(IDENTITY_SUFFIX)?;
            let (id, role) = rest.rsplit_once('.')?;
            let role = match role {
                "manager" => NodeRole::Manager,
                "worker" => NodeRole::Worker,
                _ => return None,
            };
            Some(PeerIdentity {
                node_id: id.to_string(),
                role,
            })
        });
        found
    }
}

/// The prefix of every join token.
pub const JOIN_TOKEN_PREFIX: &str = "ORN-1-";

/// A join token, `ORN-1-<CA digest>-<secret>` (Swarm's shape): the digest of
/// the CA a joining node must be shown before it trusts anything, and the
/// secret it then presents. Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The CA certificate's [`fingerprint`] (64 hex digits).
    pub ca_digest: String,
    /// The secret (32 hex digits).
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{JOIN_TOKEN_PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

impl JoinToken {
    /// A fresh token for the CA whose fingerprint is `ca_digest`.
    pub fn generate(ca_digest: &str) -> JoinToken {
        let secret: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        JoinToken {
            ca_digest: ca_digest.to_string(),
            secret,
        }
    }

    /// Reads a token; the error says what is wrong with it and never repeats it.
    pub fn parse(s: &str) -> Result<JoinToken, TlsError> {
        let rest = s.trim().strip_prefix(JOIN_TOKEN_PREFIX).ok_or_else(|| {
            TlsError::BadInput(format!(
                "not a join token: join tokens start with {JOIN_TOKEN_PREFIX} (`orion-node cluster join-token worker` prints one)"
            ))
        })?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match rest.split_once('-') {
            Some((digest, secret)) if hex(digest, 64) && hex(secret, 32) => Ok(JoinToken {
                ca_digest: digest.to_ascii_lowercase(),
                secret: secret.to_ascii_lowercase(),
            }),
            _ => Err(TlsError::BadInput(format!(
                "malformed join token: expected {JOIN_TOKEN_PREFIX}<64 hex digits>-<32 hex digits>"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_malformed_ones_are_named() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let s = t.to_string();
        assert!(s.starts_with("ORN-1-"));
        assert_eq!(JoinToken::parse(&s).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
        for bad in [
            "",
            "orn_00",
            "ORN-1-abc",
            &format!("ORN-1-{}-zz", "a".repeat(64)),
        ] {
            let e = JoinToken::parse(bad).unwrap_err().to_string();
            assert!(e.contains("join token"), "{e}");
            assert!(bad.len() < 8 || !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_node_certificate_names_its_node_and_chains_to_the_ca() {
        let ca = CertAuthority::generate("test").unwrap();
        let key = NodeKey::generate().unwrap();
        let pem = ca
            .issue(
                &Subject {
                    node_id: "n1".into(),
                    role: NodeRole::Worker,
                    ips: vec!["10.1.2.3".parse().unwrap()],
                    dns: vec![],
                },
                &key.public_key(),
                Duration::from_secs(60),
            )
            .unwrap();
        let der = parse_certs(&pem).unwrap();
        assert_eq!(
            PeerIdentity::from_cert(der[0].as_ref()),
            Some(PeerIdentity {
                node_id: "n1".into(),
                role: NodeRole::Worker
            })
        );
        // Usable as a node's material, trusted by the CA.
        let now = std::time::SystemTime::now();
        let state = TlsState::with_cert(
            &ca.cert_pem,
            NodeCert {
                cert_pem: pem,
                key_pem: key.to_pem(),
                issued: now,
                expires: now + Duration::from_secs(60),
            },
        )
        .unwrap();
        assert!(state.cert().is_some());
        assert_eq!(
            fingerprint_pem(&state.roots_pem()).unwrap(),
            ca.fingerprint()
        );
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        // A key that is not a P-256 point is refused.
        let subject = Subject {
            node_id: "n1".into(),
            role: NodeRole::Worker,
            ips: vec![],
            dns: vec![],
        };
        assert!(ca
            .issue(&subject, &[1, 2, 3], Duration::from_secs(1))
            .is_err());
    }
}
