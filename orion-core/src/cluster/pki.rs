//! The node's part in the cluster PKI through the handle: join tokens (made,
//! rotated, checked), admitting a joining node (its certificate, and for a
//! manager the CA), and renewing members' certificates (see [`crate::tls`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Cluster, ClusterError};
use crate::command::Command;
use crate::model::NodeRole;
use crate::tls::{fingerprint_pem, CertAuthority, JoinToken, PeerIdentity, Subject, TlsState};

/// A node's PKI: its live TLS material, the CA when it holds it (managers),
/// how long the certificates it issues last, and the join tokens it made.
pub struct Pki {
    /// The material its listeners and clients use.
    pub tls: TlsState,
    ca: RwLock<Option<CertAuthority>>,
    /// How long certificates issued here are valid.
    pub cert_validity: Duration,
    /// Join tokens this node made, by role: they are stored only as hashes,
    /// so only the node that made one can show it again.
    known: Mutex<BTreeMap<NodeRole, String>>,
    /// Where `known` is kept (mode 0600), if anywhere.
    tokens_file: Option<PathBuf>,
    /// While the CA rotates: the new CA cross-signed by the old, sent after
    /// each certificate issued here (see [`crate::tls::rotation`]).
    cross: RwLock<Option<String>>,
    /// Wakes the node's renewal at once (a CA rotation asks for it).
    pub renew_now: tokio::sync::Notify,
    /// Autolock: the key this node's private files are sealed under (the
    /// tokens file among them); a manager joining is handed it.
    unlock_key: Option<crate::at_rest::UnlockKey>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("tls", &self.tls)
            .field("holds_ca", &self.ca.read().is_some())
            .field("cert_validity", &self.cert_validity)
            .field("autolock", &self.unlock_key.is_some())
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// A PKI over `tls`, holding `ca` if given, issuing certificates for
    /// `cert_validity`, keeping the join tokens it makes in `tokens_file`
    /// (read now when it exists).
    pub fn new(
        tls: TlsState,
        ca: Option<CertAuthority>,
        cert_validity: Duration,
        tokens_file: Option<PathBuf>,
    ) -> Pki {
        let known = read_known(tokens_file.as_deref(), None);
        Pki {
            tls,
            ca: RwLock::new(ca),
            cert_validity,
            known: Mutex::new(known),
            tokens_file,
            cross: RwLock::new(None),
            renew_now: tokio::sync::Notify::new(),
            unlock_key: None,
        }
    }

    /// Sends `cross` (a cross-signed CA certificate, PEM) after each
    /// certificate issued here from now on; `None` stops.
    pub fn set_cross(&self, cross: Option<String>) {
        *self.cross.write() = cross;
    }

    /// The cross-signed CA certificate sent after issued certificates.
    pub fn cross(&self) -> Option<String> {
        self.cross.read().clone()
    }

    /// Whether `digest` is the fingerprint of a CA this node trusts (a join
    /// token made before a CA rotation names the old CA while both are
    /// trusted).
    pub fn trusts_digest(&self, digest: &str) -> bool {
        crate::tls::fingerprints(&self.tls.roots_pem())
            .iter()
            .any(|f| f == digest)
    }

    /// Re-forms the join tokens this node made with the CA it trusts now
    /// (after a CA rotation): the secrets, and so the committed hashes, stay.
    pub fn retag_join_tokens(&self) -> std::io::Result<()> {
        let digest = self.ca_fingerprint();
        let mut known = self.known.lock();
        let mut changed = false;
        for t in known.values_mut() {
            if let Ok(mut parsed) = JoinToken::parse(t) {
                if parsed.ca_digest != digest {
                    parsed.ca_digest = digest.clone();
                    *t = parsed.to_string();
                    changed = true;
                }
            }
        }
        if changed {
            self.save_known(&known)?;
        }
        Ok(())
    }

    /// Autolock: keeps the tokens file sealed under `key` (reading it back
    /// with it) and hands `key` to managers that join, so one key unlocks
    /// every manager of the cluster.
    pub fn sealed_under(mut self, key: crate::at_rest::UnlockKey) -> Pki {
        self.known = Mutex::new(read_known(self.tokens_file.as_deref(), Some(&key)));
        self.unlock_key = Some(key);
        self
    }

    /// The unlock key this node's files are sealed under (autolock), if any.
    pub fn unlock_key(&self) -> Option<&crate::at_rest::UnlockKey> {
        self.unlock_key.as_ref()
    }

    /// The CA, when this node holds it.
    pub fn ca(&self) -> Option<CertAuthority> {
        self.ca.read().clone()
    }

    /// Holds `ca` from now on (a manager given it at join).
    pub fn set_ca(&self, ca: CertAuthority) {
        *self.ca.write() = Some(ca);
    }

    /// The fingerprint of the CA this node trusts first.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint_pem(&self.tls.roots_pem()).unwrap_or_default()
    }

    fn save_known(&self, known: &BTreeMap<NodeRole, String>) -> std::io::Result<()> {
        let Some(path) = &self.tokens_file else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(known).map_err(std::io::Error::other)?;
        crate::at_rest::write(path, text.as_bytes(), self.unlock_key.as_ref())
            .map_err(std::io::Error::other)
    }
}

/// The join tokens kept in `path` (opened with `key` when sealed); none when
/// there is no file or it does not read.
fn read_known(
    path: Option<&std::path::Path>,
    key: Option<&crate::at_rest::UnlockKey>,
) -> BTreeMap<NodeRole, String> {
    path.and_then(|p| crate::at_rest::read(p, key).ok().flatten())
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

/// Writes `bytes` to `path`, readable by this user only: to a `.new` file,
/// synced, then renamed over it.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut pending = path.as_os_str().to_owned();
    pending.push(".new");
    let pending = PathBuf::from(pending);
    write_synced_private(&pending, bytes)?;
    std::fs::rename(&pending, path)
}

/// Writes `bytes` to `path` in place, mode 0600 (also over an old file of
/// another mode), synced before it returns.
pub fn write_synced_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An old file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What a joining node sends (`POST /v1/cluster/join`).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The join token (`ORN-1-…`).
    pub token: String,
    /// The joining node's id.
    pub node_id: String,
    /// The role it asks for: the token must be that role's.
    pub role: NodeRole,
    /// Its public key, an uncompressed P-256 point, base64.
    pub public_key: String,
    /// Hosts (IPs or names) it serves on, for its certificate.
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A certificate renewal request (`POST /v1/cluster/certificate`), made
/// over mutual TLS with the certificate being renewed.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// The new public key, an uncompressed P-256 point, base64.
    pub public_key: String,
    /// Hosts (IPs or names) it serves on.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A certificate issued to a node, with the CA to trust.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertGrant {
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// The CA certificates to trust, PEM.
    pub ca_pem: String,
    /// When it was issued, Unix ms.
    pub issued_ms: u64,
    /// When it expires, Unix ms.
    pub expires_ms: u64,
    /// For a manager at join: the CA with its key (so any manager can issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ca: Option<CertAuthority>,
    /// At join: the cluster's data key (hex), which secrets and the gossip
    /// keyring are sealed under, when the admitting node holds one. It
    /// travels only here, inside the TLS session the joiner checked against
    /// its token's CA digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key: Option<String>,
    /// At join: the cluster's gossip keyring, when gossip is sealed (the
    /// joiner's gossip must speak it from its first packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub gossip_keys: Option<crate::gossip_keys::GossipKeys>,
    /// At a manager's join into an autolocked cluster: the cluster's unlock
    /// key (`ORNKEY-1-…`), which the joiner seals its own files under, so
    /// one key unlocks every manager. Workers are not given it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_key: Option<String>,
}

impl std::fmt::Debug for CertGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertGrant")
            .field("issued_ms", &self.issued_ms)
            .field("expires_ms", &self.expires_ms)
            .field("ca", &self.ca)
            .field("data_key", &self.data_key.as_ref().map(|_| "…"))
            .field("unlock_key", &self.unlock_key.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn subject(node_id: &str, role: NodeRole, hosts: &[String]) -> Subject {
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for h in hosts {
        match h.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) if !h.is_empty() && h.len() <= 253 && h.is_ascii() => dns.push(h.clone()),
            Err(_) => {}
        }
    }
    Subject {
        node_id: node_id.to_string(),
        role,
        ips,
        dns,
    }
}

fn public_key(b64: &str) -> Result<Vec<u8>, ClusterError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ClusterError::Config {
            field: "public_key",
            problem: "not base64".into(),
        })
}

impl Cluster {
    /// This node's PKI, when it serves TLS.
    pub fn pki(&self) -> Option<&Arc<Pki>> {
        self.inner.pki.as_ref()
    }

    pub(super) fn pki_or_refuse(&self) -> Result<&Arc<Pki>, ClusterError> {
        self.pki().ok_or_else(|| {
            ClusterError::refused("this node serves no TLS (started with --insecure-dev)".into())
        })
    }

    /// Makes a new join token for `role` and commits its hash: the old one
    /// stops working for new joins at once. The token is kept on this node
    /// (its tokens file) before the hash is committed, so it is never lost.
    pub async fn rotate_join_token(&self, role: NodeRole) -> Result<JoinToken, ClusterError> {
        let pki = self.pki_or_refuse()?;
        let token = JoinToken::generate(&pki.ca_fingerprint());
        let hash = self
            .inner
            .store
            .replica()
            .read(|s| s.acl.hash(&token.secret))
            .ok_or_else(|| ClusterError::refused("API tokens are not bootstrapped".into()))?;
        {
            let mut known = pki.known.lock();
            known.insert(role, token.to_string());
            pki.save_known(&known)?;
        }
        self.propose(Command::JoinTokenSet { role, hash }).await?;
        info!(%role, "join token made");
        Ok(token)
    }

    /// Makes the join tokens the cluster lacks (at bootstrap, and after a
    /// crash between bootstrap and making them).
    pub async fn ensure_join_tokens(&self) -> Result<(), ClusterError> {
        for role in [NodeRole::Manager, NodeRole::Worker] {
            if self
                .inner
                .store
                .replica()
                .read(|s| s.acl.join_hash(role).is_none())
            {
                self.rotate_join_token(role).await?;
            }
        }
        Ok(())
    }

    /// `role`'s current join token, if this node made it (tokens are kept as
    /// hashes only: another node cannot show it; rotate to get a new one).
    pub fn join_token(&self, role: NodeRole) -> Option<String> {
        let pki = self.pki()?;
        let t = pki.known.lock().get(&role).cloned()?;
        let parsed = JoinToken::parse(&t).ok()?;
        let current = self.inner.store.replica().read(|s| {
            let h = s.acl.hash(&parsed.secret)?;
            Some(s.acl.join_hash(role) == Some(h.as_str()))
        });
        (current == Some(true)).then_some(t)
    }

    /// Admits a joining node: checks its token against this cluster's CA and
    /// the stored hash for the role it asks for, then issues its certificate
    /// (and hands a manager the CA). Membership comes after, through
    /// `POST /v1/cluster/peers` with that certificate. A refusal is logged
    /// with the node and the reason, never the token.
    pub fn admit(&self, req: &JoinRequest) -> Result<CertGrant, ClusterError> {
        let pki = self.pki_or_refuse()?;
        let refuse = |reason: String| {
            warn!(node = %req.node_id, role = %req.role, %reason, "join refused");
            ClusterError::Forbidden(reason)
        };
        let token = JoinToken::parse(&req.token).map_err(|e| refuse(e.to_string()))?;
        if !pki.trusts_digest(&token.ca_digest) {
            return Err(refuse(
                "the join token is for another cluster (its CA digest is not this cluster's)"
                    .into(),
            ));
        }
        let found = self
            .inner
            .store
            .replica()
            .read(|s| s.acl.join_role(&token.secret));
        match found {
            Some(r) if r == req.role => {}
            Some(r) => {
                return Err(refuse(format!(
                    "this is the {r} join token: a {} joins with the {} token",
                    req.role, req.role
                )))
            }
            None => {
                return Err(refuse(
                    "the join token is not valid (rotated, or never made)".into(),
                ))
            }
        }
        let key = public_key(&req.public_key)?;
        let mut grant = self.issue(pki, &subject(&req.node_id, req.role, &req.hosts), &key)?;
        if req.role == NodeRole::Manager {
            grant.ca = pki.ca();
            grant.unlock_key = pki.unlock_key().map(|k| k.to_text().to_string());
        }
        grant.data_key = self.inner.data_key.as_ref().map(|k| k.to_hex().to_string());
        grant.gossip_keys = self.gossip_keys()?;
        info!(node = %req.node_id, role = %req.role, "join admitted: certificate issued");
        Ok(grant)
    }

    /// Renews the certificate of the member `who` (named by the certificate
    /// it connected with) over a new public key.
    pub fn renew_certificate(
        &self,
        who: &PeerIdentity,
        req: &RenewRequest,
    ) -> Result<CertGrant, ClusterError> {
        let pki = self.pki_or_refuse()?;
        let key = public_key(&req.public_key)?;
        self.issue(pki, &subject(&who.node_id, who.role, &req.hosts), &key)
    }

    fn issue(&self, pki: &Pki, subject: &Subject, key: &[u8]) -> Result<CertGrant, ClusterError> {
        let ca = pki.ca().ok_or_else(|| {
            ClusterError::refused("this node holds no CA key (a worker): ask a manager".into())
        })?;
        let issued = SystemTime::now();
        let mut cert_pem =
            ca.issue(subject, key, pki.cert_validity)
                .map_err(|e| ClusterError::Config {
                    field: "public_key",
                    problem: e.to_string(),
                })?;
        if let Some(cross) = pki.cross() {
            cert_pem.push_str(&cross);
        }
        Ok(CertGrant {
            cert_pem,
            ca_pem: pki.tls.roots_pem(),
            issued_ms: unix_ms(issued),
            expires_ms: unix_ms(issued + pki.cert_validity),
            ca: None,
            data_key: None,
            gossip_keys: None,
            unlock_key: None,
        })
    }
}
