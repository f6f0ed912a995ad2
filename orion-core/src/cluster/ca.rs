//! The cluster CA through the handle (see [`crate::tls::rotation`]): the
//! committed record, made at bootstrap with the CA key sealed under the data
//! key; a rotation started; and what this node must do to follow it.

use std::collections::BTreeSet;

use serde::Serialize;
use tracing::info;

use super::{Cluster, ClusterError};
use crate::command::Command;
use crate::model::{NodeRole, NodeStatus};
use crate::secret::{open, seal, Plaintext};
use crate::tls::rotation::{plan, CaAction, CaLocal, CaRecord, CA_KEY_SECRET};
use crate::tls::{fingerprint_pem, fingerprints, issued_by, parse_certs, CertAuthority};

/// Where a CA rotation stands, as `GET /v1/cluster/ca/rotation` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CaStatus {
    /// The rotation (0: the CA the cluster was made with).
    pub rotation: u64,
    /// Whether it is over.
    pub finished: bool,
    /// The signing CA's fingerprint.
    pub fingerprint: String,
    /// Fingerprints of the CAs every node is to trust.
    pub trusted: Vec<String>,
    /// Nodes done with the rotation under way.
    pub adopted: Vec<String>,
    /// Nodes it still waits for (those not marked down).
    pub waiting: Vec<String>,
    /// The CA certificates to trust, PEM (give them to the CLI as
    /// `--ca-cert`: while a rotation runs they hold old and new).
    pub roots_pem: String,
}

impl Cluster {
    /// The committed CA record, when the cluster has one.
    pub fn ca_record(&self) -> Option<CaRecord> {
        self.inner.store.replica().read(|s| s.ca.clone())
    }

    /// Where the CA stands, and a rotation's progress.
    pub fn ca_status(&self) -> Result<CaStatus, ClusterError> {
        let r = self.ca_record().ok_or_else(no_record)?;
        let must = self.must_adopt();
        Ok(CaStatus {
            rotation: r.rotation,
            finished: r.finished,
            fingerprint: fingerprint_pem(&r.cert_pem).unwrap_or_default(),
            trusted: fingerprints(&r.roots_pem),
            adopted: r.adopted.iter().cloned().collect(),
            waiting: if r.finished {
                Vec::new()
            } else {
                must.difference(&r.adopted).cloned().collect()
            },
            roots_pem: r.roots_pem,
        })
    }

    /// The nodes a rotation waits for: every registered node not marked down.
    fn must_adopt(&self) -> BTreeSet<String> {
        self.inner.store.replica().read(|s| {
            s.nodes
                .values()
                .filter(|n| n.status != NodeStatus::Down)
                .map(|n| n.info.id.clone())
                .collect()
        })
    }

    /// Commits the CA this node holds as the cluster's first record (its key
    /// sealed under the data key) when none is committed: at bootstrap, and
    /// at a later start of a cluster made before records existed.
    pub async fn ensure_ca_record(&self) -> Result<(), ClusterError> {
        self.sync().await?;
        if self.ca_record().is_some() {
            return Ok(());
        }
        let pki = self.pki_or_refuse()?;
        let ca = pki
            .ca()
            .ok_or_else(|| ClusterError::refused("this node holds no CA key (a worker)".into()))?;
        let record = self.record_for(0, &ca, ca.cert_pem.clone(), None, true)?;
        self.propose(Command::CaSet { record }).await?;
        Ok(())
    }

    fn record_for(
        &self,
        rotation: u64,
        ca: &CertAuthority,
        roots_pem: String,
        cross_pem: Option<String>,
        finished: bool,
    ) -> Result<CaRecord, ClusterError> {
        let key = self
            .inner
            .data_key
            .as_ref()
            .ok_or(ClusterError::NoDataKey)?;
        let sealed = seal(
            key,
            CA_KEY_SECRET,
            rotation + 1,
            &Plaintext::new(ca.key_pem.clone().into_bytes()),
            crate::model::unix_ms(),
        );
        Ok(CaRecord {
            rotation,
            roots_pem,
            name: ca.name.clone(),
            cert_pem: ca.cert_pem.clone(),
            key: sealed,
            cross_pem,
            adopted: BTreeSet::new(),
            finished,
        })
    }

    /// The record's signing CA with its key, opened with this node's data key.
    pub fn ca_signer(&self, record: &CaRecord) -> Result<CertAuthority, ClusterError> {
        let key = self
            .inner
            .data_key
            .as_ref()
            .ok_or(ClusterError::NoDataKey)?;
        let pem = open(key, CA_KEY_SECRET, &record.key)
            .map_err(|e| ClusterError::refused(format!("the CA key: {e}")))?;
        Ok(CertAuthority {
            name: record.name.clone(),
            cert_pem: record.cert_pem.clone(),
            key_pem: String::from_utf8_lossy(pem.expose()).into_owned(),
        })
    }

    /// Starts a CA rotation: makes a new CA, cross-signs it with the current
    /// one and commits a record trusting both and signing with the new. Every
    /// node then follows it (see [`crate::tls::rotation`]); refused while
    /// another rotation is under way.
    pub async fn rotate_ca(&self) -> Result<CaStatus, ClusterError> {
        self.pki_or_refuse()?;
        self.sync().await?;
        let cur = self.ca_record().ok_or_else(no_record)?;
        if !cur.finished {
            return Err(ClusterError::refused(format!(
                "CA rotation {} is still under way: wait for it to finish (cluster ca)",
                cur.rotation
            )));
        }
        let old = self.ca_signer(&cur)?;
        let cluster = self
            .inner
            .store
            .replica()
            .read(|s| s.cluster_id.clone())
            .unwrap_or_else(|| "orion".into());
        let cluster: String = cluster.chars().take(32).collect();
        let new = CertAuthority::generate(&cluster)?;
        let cross = old.cross_sign(&new)?;
        let roots = format!("{}\n{}", cur.cert_pem.trim_end(), new.cert_pem);
        let record = self.record_for(cur.rotation + 1, &new, roots, Some(cross), false)?;
        self.propose(Command::CaSet { record }).await?;
        info!(
            rotation = cur.rotation + 1,
            fingerprint = %new.fingerprint(),
            "CA rotation started"
        );
        self.ca_status()
    }

    /// What this node holds against the committed record.
    pub fn ca_local(&self) -> Option<CaLocal> {
        let pki = self.pki()?;
        let record = self.ca_record()?;
        let cert = pki.tls.cert();
        let presented = cert
            .as_ref()
            .and_then(|c| parse_certs(&c.cert_pem).ok())
            .map_or(0, |c| c.len());
        Some(CaLocal {
            node: self.node_id().clone(),
            manager: self.inner.node.role == NodeRole::Manager,
            roots: fingerprints(&pki.tls.roots_pem()),
            signer: pki.ca().map(|c| c.name),
            cert_from_signer: cert
                .as_ref()
                .is_some_and(|c| issued_by(&c.cert_pem, &record.cert_pem)),
            presents_cross: presented > 1,
        })
    }

    /// The steps this node has left to follow the committed CA record.
    pub fn ca_plan(&self) -> Vec<CaAction> {
        let (Some(record), Some(local)) = (self.ca_record(), self.ca_local()) else {
            return Vec::new();
        };
        plan(&record, &local, &self.must_adopt())
    }

    /// Commits that this node is done with rotation `rotation`.
    pub async fn ca_adopted(&self, rotation: u64) -> Result<(), ClusterError> {
        self.propose(Command::CaAdopted {
            node: self.node_id().clone(),
            rotation,
        })
        .await
        .map(drop)
    }

    /// Commits the end of rotation `rotation`.
    pub async fn ca_finished(&self, rotation: u64) -> Result<(), ClusterError> {
        self.propose(Command::CaFinished { rotation }).await?;
        info!(rotation, "CA rotation finished: only the new CA is trusted");
        Ok(())
    }
}

impl From<crate::tls::TlsError> for ClusterError {
    fn from(e: crate::tls::TlsError) -> Self {
        ClusterError::refused(e.to_string())
    }
}

fn no_record() -> ClusterError {
    ClusterError::refused(
        "this cluster has no CA record (insecure dev, or its first node has not committed it yet)"
            .into(),
    )
}
