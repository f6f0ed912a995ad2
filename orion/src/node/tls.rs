//! A secure node's TLS material on disk and how it gets it: made by the first
//! node (the cluster CA and its own certificate), fetched at join (the CA,
//! checked against the join token's digest, then a certificate for a key made
//! here), reloaded on a restart, and renewed while the node runs.
//!
//! Files, under `<data_dir>/tls/`:
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.pem` | the CA certificates this node trusts (give it to the CLI as `--ca-cert`) | 0644 |
//! | `node.json` | this node's certificate, key, issue and expiry times | 0600 |
//! | `ca.json` | the CA's key and certificate (managers only) | 0600 |
//! | `join-tokens.json` | the join tokens this node made | 0600 |
//!
//! With autolock, `ca.json` and `join-tokens.json` are sealed under the
//! unlock key (see [`super::autolock`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orion_core::at_rest::{self, UnlockKey};
use orion_core::cluster::pki::{write_private, CertGrant, JoinRequest, Pki, RenewRequest};
use orion_core::tls::{
    fingerprint, parse_certs, CertAuthority, JoinToken, NodeCert, NodeKey, Subject, TlsState,
};
use orion_core::NodeRole;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::config::strip_scheme;
use super::NodeError;

/// The directory under the data dir.
pub const TLS_DIR: &str = "tls";

/// A node's material as loaded or made.
pub(crate) struct Material {
    pub tls: TlsState,
    pub ca: Option<CertAuthority>,
    /// The cluster's data key, when this material came from a join that
    /// carried it (kept in the data dir by the caller, not here).
    pub data_key: Option<orion_core::secret::DataKey>,
    /// The cluster's gossip keyring, when this material came from a join
    /// that carried it.
    pub gossip_keys: Option<orion_core::gossip_keys::GossipKeys>,
    /// Autolock: the key the private files are sealed under (the cluster's,
    /// when a manager's join carried it).
    pub unlock_key: Option<UnlockKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredCert {
    cert_pem: String,
    key_pem: String,
    issued_ms: u64,
    expires_ms: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> NodeError {
    NodeError::DataDir {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn node_cert(s: StoredCert) -> NodeCert {
    NodeCert {
        cert_pem: s.cert_pem,
        key_pem: s.key_pem,
        issued: from_ms(s.issued_ms),
        expires: from_ms(s.expires_ms),
    }
}

/// Keeps `cert` as this node's (mode 0600).
pub(crate) fn save_cert(dir: &Path, cert: &NodeCert) -> Result<(), NodeError> {
    let path = dir.join("node.json");
    let text = serde_json::to_vec_pretty(&StoredCert {
        cert_pem: cert.cert_pem.clone(),
        key_pem: cert.key_pem.clone(),
        issued_ms: ms(cert.issued),
        expires_ms: ms(cert.expires),
    })
    .map_err(|e| bad(&path, e))?;
    write_private(&path, &text).map_err(io(&path))
}

pub(crate) fn save_roots(dir: &Path, pem: &str) -> Result<(), NodeError> {
    let path = dir.join("ca.pem");
    let tmp = dir.join("ca.pem.new");
    std::fs::write(&tmp, pem).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

pub(crate) fn save_ca(
    dir: &Path,
    ca: &CertAuthority,
    key: Option<&UnlockKey>,
) -> Result<(), NodeError> {
    let path = dir.join("ca.json");
    let text = zeroize::Zeroizing::new(serde_json::to_vec_pretty(ca).map_err(|e| bad(&path, e))?);
    Ok(at_rest::write(&path, &text, key)?)
}

/// This node's certificate and the CA certificates it trusts, if it has
/// been given some (never sealed: a locked node serves its unlock with them).
pub(crate) fn load_tls(dir: &Path) -> Result<Option<TlsState>, NodeError> {
    let cert_path = dir.join("node.json");
    if !cert_path.exists() {
        return Ok(None);
    }
    let roots_path = dir.join("ca.pem");
    let roots = std::fs::read_to_string(&roots_path).map_err(io(&roots_path))?;
    let text = std::fs::read(&cert_path).map_err(io(&cert_path))?;
    let stored: StoredCert = serde_json::from_slice(&text).map_err(|e| bad(&cert_path, e))?;
    let tls = TlsState::with_cert(&roots, node_cert(stored)).map_err(|e| bad(&cert_path, e))?;
    Ok(Some(tls))
}

/// The material kept in `dir`, if this node has been given some; `ca.json`
/// opened with `key` when it is sealed.
pub(crate) fn load(dir: &Path, key: Option<&UnlockKey>) -> Result<Option<Material>, NodeError> {
    let Some(tls) = load_tls(dir)? else {
        return Ok(None);
    };
    let ca_path = dir.join("ca.json");
    let ca = match at_rest::read(&ca_path, key)? {
        Some(text) => Some(serde_json::from_slice(&text).map_err(|e| bad(&ca_path, e))?),
        None => None,
    };
    Ok(Some(Material {
        tls,
        ca,
        data_key: None,
        gossip_keys: None,
        unlock_key: key.cloned(),
    }))
}

/// The first node of a cluster: makes the CA and its own certificate.
pub(crate) fn create(
    dir: &Path,
    cluster: &str,
    subject: &Subject,
    validity: Duration,
    sealed: Option<&UnlockKey>,
) -> Result<Material, NodeError> {
    let ca = CertAuthority::generate(cluster).map_err(|e| bad(dir, e))?;
    let key = NodeKey::generate().map_err(|e| bad(dir, e))?;
    let issued = SystemTime::now();
    let cert_pem = ca
        .issue(subject, &key.public_key(), validity)
        .map_err(|e| bad(dir, e))?;
    let cert = NodeCert {
        cert_pem,
        key_pem: key.to_pem(),
        issued,
        expires: issued + validity,
    };
    // The CA first: a crash after it leaves a node that makes its
    // certificate again on the next start (node.json is what counts).
    save_ca(dir, &ca, sealed)?;
    save_roots(dir, &ca.cert_pem)?;
    save_cert(dir, &cert)?;
    let tls = TlsState::with_cert(&ca.cert_pem, cert).map_err(|e| bad(dir, e))?;
    info!(fingerprint = %format!("SHA256:{}", ca.fingerprint()), "cluster CA made");
    Ok(Material {
        tls,
        ca: Some(ca),
        data_key: None,
        gossip_keys: None,
        unlock_key: sealed.cloned(),
    })
}

/// An HTTP client over `config`.
fn client(config: rustls::ClientConfig) -> Result<reqwest::Client, NodeError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .use_preconfigured_tls(config)
        .build()
        .map_err(|e| NodeError::Join(e.to_string()))
}

/// A TLS client presenting this node's certificate, trusting its CA.
pub(crate) fn member_client(tls: &TlsState) -> Result<reqwest::Client, NodeError> {
    client(tls.client_config())
}

/// Pause between rounds over the join addresses.
const RETRY: Duration = Duration::from_millis(500);

/// Joins a secure cluster's PKI through the first of `targets` that answers:
/// fetches its CA and checks it against the token's digest before trusting
/// anything, then presents the token's secret with a public key made here and
/// receives this node's certificate (and, for a manager, the CA). Keeps it
/// all in `dir`, the CA sealed under the cluster's unlock key when the grant
/// carries one, else under `own` (autolock) when given. A refusal ends the
/// attempt at once; no answer is retried until `limit`.
pub(crate) async fn join(
    dir: &Path,
    targets: &[String],
    token: &str,
    subject: &Subject,
    limit: Duration,
    own: Option<&UnlockKey>,
) -> Result<Material, NodeError> {
    let token = JoinToken::parse(token).map_err(|e| NodeError::Join(e.to_string()))?;
    let blind = client(orion_core::tls::unverified_client_config())?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut last = String::new();
        for target in targets {
            let base = format!("https://{}", strip_scheme(target));
            match attempt(&blind, &base, &token, subject).await {
                Ok(Attempt::Admitted(tls, grant)) => {
                    let grant = *grant;
                    let cert = NodeCert {
                        cert_pem: grant.cert_pem,
                        key_pem: grant.key_pem,
                        issued: from_ms(grant.issued_ms),
                        expires: from_ms(grant.expires_ms),
                    };
                    tls.set_cert(cert.clone())
                        .map_err(|e| NodeError::Join(format!("{target}: {e}")))?;
                    let unlock_key = match grant.unlock_key.as_deref() {
                        Some(k) => Some(UnlockKey::parse(k).map_err(|e| {
                            NodeError::Join(format!("{target}: its unlock key: {e}"))
                        })?),
                        None => own.cloned(),
                    };
                    if let Some(ca) = &grant.ca {
                        save_ca(dir, ca, unlock_key.as_ref())?;
                    }
                    save_roots(dir, &tls.roots_pem())?;
                    save_cert(dir, &cert)?;
                    info!(%target, role = %subject.role, "certificate received from the cluster");
                    let data_key = grant
                        .data_key
                        .as_deref()
                        .map(orion_core::secret::DataKey::from_hex)
                        .transpose()
                        .map_err(|e| NodeError::Join(format!("{target}: its data key: {e}")))?;
                    return Ok(Material {
                        tls,
                        ca: grant.ca,
                        data_key,
                        gossip_keys: grant.gossip_keys,
                        unlock_key,
                    });
                }
                Ok(Attempt::Refused(why)) => {
                    return Err(NodeError::Join(format!(
                        "{target} refused this node: {why}"
                    )))
                }
                Err(why) => last = format!("{target}: {why}"),
            }
            info!(reason = %last, "join not accepted yet; retrying");
        }
        if tokio::time::Instant::now() + RETRY > deadline {
            return Err(NodeError::Join(format!(
                "could not join the cluster through {} within {limit:?}: {last}",
                targets.join(", ")
            )));
        }
        tokio::time::sleep(RETRY).await;
    }
}

struct Granted {
    cert_pem: String,
    key_pem: String,
    issued_ms: u64,
    expires_ms: u64,
    ca: Option<CertAuthority>,
    data_key: Option<String>,
    gossip_keys: Option<orion_core::gossip_keys::GossipKeys>,
    unlock_key: Option<String>,
}

enum Attempt {
    Admitted(TlsState, Box<Granted>),
    Refused(String),
}

async fn attempt(
    blind: &reqwest::Client,
    base: &str,
    token: &JoinToken,
    subject: &Subject,
) -> Result<Attempt, String> {
    let pem = blind
        .get(format!("{base}/v1/cluster/ca"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| super::error_text(&e))?;
    if !pem.status().is_success() {
        return Err(format!("answered {} for its CA", pem.status()));
    }
    let pem = pem.text().await.map_err(|e| e.to_string())?;
    let certs = parse_certs(&pem).map_err(|e| format!("its CA: {e}"))?;
    if !certs
        .iter()
        .any(|c| fingerprint(c.as_ref()) == token.ca_digest)
    {
        return Ok(Attempt::Refused(format!(
            "it shows a CA with digest {}, not the {} in the join token: not trusted (a token for another cluster, or someone in between)",
            fingerprint(certs[0].as_ref()),
            token.ca_digest
        )));
    }
    // From here on the server must hold a certificate from that CA.
    let tls = TlsState::new(&pem).map_err(|e| e.to_string())?;
    let trusted = client(tls.client_config()).map_err(|e| e.to_string())?;
    let key = NodeKey::generate().map_err(|e| e.to_string())?;
    use base64::Engine;
    let req = JoinRequest {
        token: token.to_string(),
        node_id: subject.node_id.clone(),
        role: subject.role,
        public_key: base64::engine::general_purpose::STANDARD.encode(key.public_key()),
        hosts: hosts_of(subject),
    };
    let r = trusted
        .post(format!("{base}/v1/cluster/join"))
        .timeout(Duration::from_secs(10))
        .json(&req)
        .send()
        .await
        .map_err(|e| super::error_text(&e))?;
    if r.status().is_client_error() {
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let why = body["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_string();
        return Ok(Attempt::Refused(why));
    }
    if !r.status().is_success() {
        return Err(format!("answered {}", r.status()));
    }
    let grant: CertGrant = r.json().await.map_err(|e| e.to_string())?;
    Ok(Attempt::Admitted(
        tls,
        Box::new(Granted {
            cert_pem: grant.cert_pem,
            key_pem: key.to_pem(),
            issued_ms: grant.issued_ms,
            expires_ms: grant.expires_ms,
            ca: grant.ca,
            data_key: grant.data_key,
            gossip_keys: grant.gossip_keys,
            unlock_key: grant.unlock_key,
        }),
    ))
}

fn hosts_of(s: &Subject) -> Vec<String> {
    s.ips
        .iter()
        .map(ToString::to_string)
        .chain(s.dns.iter().cloned())
        .collect()
}

/// The subject of this node's certificate: its id and role, and the hosts of
/// the addresses it serves on.
pub(crate) fn subject(id: &str, role: NodeRole, addrs: &[&str]) -> Subject {
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for a in addrs {
        let a = strip_scheme(a);
        let host = match a.parse::<std::net::SocketAddr>() {
            Ok(sa) => {
                ips.push(sa.ip());
                continue;
            }
            Err(_) => a.rsplit_once(':').map_or(a, |(h, _)| h),
        };
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) if !host.is_empty() => dns.push(host.to_string()),
            Err(_) => {}
        }
    }
    ips.retain(|ip| !ip.is_unspecified());
    Subject {
        node_id: id.to_string(),
        role,
        ips,
        dns,
    }
}

/// When to renew a certificate issued at `issued` expiring at `expires`: at
/// a random point between 50% and 80% of its life (Swarm's), so a cluster's
/// nodes do not all renew at once.
pub(crate) fn renewal_at(issued: SystemTime, expires: SystemTime) -> SystemTime {
    let life = expires.duration_since(issued).unwrap_or_default();
    let at = life.mul_f64(rand::random_range(0.5..0.8));
    issued + at
}

/// Renews this node's certificate before it expires, for as long as the
/// node runs: from its own CA key when it holds one (a manager), else from a
/// manager over mutual TLS with the certificate being renewed.
pub(crate) fn spawn_renewal(
    pki: Arc<Pki>,
    dir: PathBuf,
    subject: Subject,
    managers: impl Fn() -> Vec<String> + Send + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let Some(cert) = pki.tls.cert() else { return };
            let at = renewal_at(cert.issued, cert.expires);
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A CA rotation wants a certificate from the new CA now.
                _ = pki.renew_now.notified() => {}
                _ = &mut stop => return,
            }
            match renew(&pki, &subject, &managers()).await {
                Ok(cert) => {
                    if let Err(e) = pki.tls.set_cert(cert.clone()) {
                        warn!(error = %e, "a renewed certificate is not usable; keeping the old one");
                    } else if let Err(e) = save_cert(&dir, &cert) {
                        warn!(error = %e, "the renewed certificate could not be kept on disk");
                    } else {
                        info!(expires_in = ?cert.expires.duration_since(SystemTime::now()).unwrap_or_default(), "node certificate renewed");
                    }
                }
                Err(e) => {
                    // Try again soon, but not in a hot loop.
                    let left = cert
                        .expires
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    let pause =
                        (left / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
                    warn!(error = %e, retry_in = ?pause, "certificate renewal failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = &mut stop => return,
                    }
                }
            }
        }
    });
}

async fn renew(pki: &Pki, subject: &Subject, managers: &[String]) -> Result<NodeCert, String> {
    let key = NodeKey::generate().map_err(|e| e.to_string())?;
    let issued = SystemTime::now();
    if let Some(ca) = pki.ca() {
        let mut cert_pem = ca
            .issue(subject, &key.public_key(), pki.cert_validity)
            .map_err(|e| e.to_string())?;
        if let Some(cross) = pki.cross() {
            cert_pem.push_str(&cross);
        }
        return Ok(NodeCert {
            cert_pem,
            key_pem: key.to_pem(),
            issued,
            expires: issued + pki.cert_validity,
        });
    }
    let http = member_client(&pki.tls).map_err(|e| e.to_string())?;
    use base64::Engine;
    let req = RenewRequest {
        public_key: base64::engine::general_purpose::STANDARD.encode(key.public_key()),
        hosts: hosts_of(subject),
    };
    let mut last = "no manager known".to_string();
    for m in managers {
        let r = http
            .post(format!(
                "https://{}/v1/cluster/certificate",
                strip_scheme(m)
            ))
            .timeout(Duration::from_secs(10))
            .json(&req)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let g: CertGrant = r.json().await.map_err(|e| e.to_string())?;
                return Ok(NodeCert {
                    cert_pem: g.cert_pem,
                    key_pem: key.to_pem(),
                    issued: from_ms(g.issued_ms),
                    expires: from_ms(g.expires_ms),
                });
            }
            Ok(r) => last = format!("{m} answered {}", r.status()),
            Err(e) => last = format!("{m}: {}", super::error_text(&e)),
        }
    }
    Err(last)
}
