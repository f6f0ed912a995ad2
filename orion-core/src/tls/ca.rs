//! The cluster's certificate authority: an ECDSA P-256 key and a self-signed
//! certificate, made by the first node, that issues every node's certificate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
    PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};

use super::{fingerprint_pem, TlsError, IDENTITY_SUFFIX};
use crate::model::NodeRole;

/// How long a cluster CA is valid: ten years, as Swarm's root. Node
/// certificates are short-lived and renewed; the root is rotated by hand
/// (`cluster ca rotate`) when it must be.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Clock skew a certificate tolerates at its start: it is valid from this long
/// before it was issued, so a node whose clock trails the issuer's by less
/// accepts it at once.
const SKEW: Duration = Duration::from_secs(60);

/// The cluster CA with its signing key. Serializable (it is kept in the data
/// dir of the managers, mode 0600); its `Debug` shows no key.
#[derive(Clone, Serialize, Deserialize)]
pub struct CertAuthority {
    /// The CA's common name (`orion cluster CA <random>`): part of every
    /// issued certificate's issuer, so the signer is rebuilt from it.
    pub name: String,
    /// The self-signed CA certificate, PEM.
    pub cert_pem: String,
    /// Its PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("name", &self.name)
            .field("fingerprint", &fingerprint_pem(&self.cert_pem).ok())
            .finish_non_exhaustive()
    }
}

/// Whom a node certificate names: the node's id and role (in a DNS name,
/// `<id>.<role>.node.orion`, that peers read back as its identity) and the
/// addresses it is reached at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The node's id (a DNS label).
    pub node_id: String,
    /// Manager or worker.
    pub role: NodeRole,
    /// IP addresses it serves on (its HTTP and Raft addresses' hosts).
    pub ips: Vec<IpAddr>,
    /// Host names it serves on.
    pub dns: Vec<String>,
}

/// A node's key pair, made on the node (the private key never leaves it).
pub struct NodeKey {
    key: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

impl NodeKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<NodeKey, TlsError> {
        Ok(NodeKey {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::rcgen)?,
        })
    }

    /// The public key as the uncompressed point (what a join request sends).
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key_raw().to_vec()
    }

    /// The private key, PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// A P-256 public key received from a node, as rcgen's signer input.
struct P256Public<'a>(&'a [u8]);

impl PublicKeyData for P256Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl CertAuthority {
    /// A new CA named after `cluster` and a random suffix.
    pub fn generate(cluster: &str) -> Result<CertAuthority, TlsError> {
        let name = format!("orion cluster CA {cluster} {:08x}", rand::random::<u32>());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(TlsError::rcgen)?;
        let mut params = ca_params(&name);
        let now = SystemTime::now();
        params.not_before = (now - SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(TlsError::rcgen)?;
        Ok(CertAuthority {
            name,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// `newer`'s certificate signed by this CA (a cross-signed intermediate):
    /// presented after a node certificate from `newer` while the cluster
    /// rotates its CA, it lets a peer or client that still trusts only this
    /// CA verify that certificate (this root → the cross-signed `newer` →
    /// the node).
    pub fn cross_sign(&self, newer: &CertAuthority) -> Result<String, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(TlsError::rcgen)?;
        let issuer = Issuer::new(ca_params(&self.name), key);
        let newer_key = KeyPair::from_pem(&newer.key_pem).map_err(TlsError::rcgen)?;
        let mut params = ca_params(&newer.name);
        // Below the cross-signed certificate come node certificates only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert = params
            .signed_by(&newer_key, &issuer)
            .map_err(TlsError::rcgen)?;
        Ok(cert.pem())
    }

    /// The CA certificate's SHA-256 fingerprint (see [`super::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint_pem(&self.cert_pem).unwrap_or_default()
    }

    /// A certificate for `subject` over its `public_key` (an uncompressed
    /// P-256 point), valid for `validity` from now, for both ends of a TLS
    /// connection. Returns it as PEM.
    pub fn issue(
        &self,
        subject: &Subject,
        public_key: &[u8],
        validity: Duration,
    ) -> Result<String, TlsError> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(TlsError::BadInput(
                "the public key is not an uncompressed P-256 point (65 bytes)".into(),
            ));
        }
        crate::spec::check_dns_label(&subject.node_id)
            .map_err(|p| TlsError::BadInput(format!("node id: {p}")))?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(TlsError::rcgen)?;
        let issuer = Issuer::new(ca_params(&self.name), key);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.node_id.as_str());
        dn.push(DnType::OrganizationalUnitName, subject.role.to_string());
        params.distinguished_name = dn;
        let identity = format!("{}.{}{IDENTITY_SUFFIX}", subject.node_id, subject.role);
        let mut names = vec![identity, "localhost".to_string()];
        names.extend(subject.dns.iter().cloned());
        names.sort();
        names.dedup();
        for n in names {
            params
                .subject_alt_names
                .push(SanType::DnsName(n.try_into().map_err(|_| {
                    TlsError::BadInput("a host name is not ASCII".into())
                })?));
        }
        let mut ips = subject.ips.clone();
        ips.push(IpAddr::from([127, 0, 0, 1]));
        ips.sort();
        ips.dedup();
        params
            .subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - SKEW.min(validity / 4)).into();
        params.not_after = (now + validity).into();
        let cert = params
            .signed_by(&P256Public(public_key), &issuer)
            .map_err(TlsError::rcgen)?;
        Ok(cert.pem())
    }
}

/// The CA's parameters: the same for making it and for signing with it (rcgen
/// rebuilds the issuer's name and key identifier from them).
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Orion");
    params.distinguished_name = dn;
    // One CA may stand between a root and a node: the cross-signed next
    // root while the CA rotates (see [`CertAuthority::cross_sign`]).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}
