//! The cluster CA in the replicated state and its rotation, as a plan each
//! node follows.
//!
//! The committed [`CaRecord`] holds the CA certificates every node trusts,
//! the CA that signs (its key sealed under the cluster's data key, so the
//! Raft log and snapshots never hold it in clear), and — while a rotation
//! runs — the new CA cross-signed by the old one and the nodes done with it.
//!
//! A rotation (`cluster ca rotate`, [`crate::Cluster::rotate_ca`]) commits a
//! record trusting old and new, signing with the new. Each node then, at its
//! own pace ([`plan`]): trusts both; a manager takes the new signer; the node
//! renews its certificate under the new CA and presents it with the
//! cross-signed certificate after it, so a peer or client that still trusts
//! only the old CA verifies it (old root → cross-signed new CA → node); then
//! it commits that it is done ([`crate::Command::CaAdopted`]). When every
//! node not marked down is done, a manager commits the end
//! ([`crate::Command::CaFinished`]): only the new CA is trusted, and nodes
//! drop the cross-signed certificate from what they present. No connection
//! is refused on the way: every certificate in use verifies under the roots
//! of every node at every step.
//!
//! A node down for the whole rotation comes back with a certificate from the
//! old CA, which no one trusts any more: it joins again with a join token.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::NodeId;
use crate::secret::SecretVersion;

/// The name the CA key is sealed under (see [`crate::secret::seal`]).
pub const CA_KEY_SECRET: &str = "_cluster-ca";

/// The cluster's CA as committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    /// Which rotation this is: 0 for the CA the cluster was made with.
    pub rotation: u64,
    /// The CA certificates every node trusts, PEM: one, or old and new while
    /// a rotation runs.
    pub roots_pem: String,
    /// The signing CA's name ([`super::CertAuthority::name`]).
    pub name: String,
    /// The signing CA's certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM, sealed under the data key.
    pub key: SecretVersion,
    /// While a rotation runs: the signing CA's certificate signed by the old
    /// CA, presented after each node certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_pem: Option<String>,
    /// Nodes that trust the new CA and hold a certificate from it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub adopted: BTreeSet<NodeId>,
    /// The rotation is over (always true for rotation 0).
    pub finished: bool,
}

/// What a node holds, as [`plan`] needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaLocal {
    /// This node's id.
    pub node: NodeId,
    /// Whether it is a manager (holds the signer, may commit the end).
    pub manager: bool,
    /// Fingerprints of the CA certificates it trusts now.
    pub roots: Vec<String>,
    /// The name of the CA it signs with, when it holds one.
    pub signer: Option<String>,
    /// Whether its certificate was issued by the record's signing CA.
    pub cert_from_signer: bool,
    /// Whether it presents a CA certificate after its own.
    pub presents_cross: bool,
}

/// One step a node takes toward the committed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaAction {
    /// Trust exactly the record's roots.
    Trust,
    /// Sign with the record's CA (managers).
    HoldSigner,
    /// Renew this node's certificate now, under the record's CA.
    Renew,
    /// Present the certificate alone (the rotation is over).
    DropCross,
    /// Commit that this node is done with the rotation.
    Adopt,
    /// Commit the rotation's end: every node that counts is done.
    Finish,
}

/// The steps that bring a node holding `local` to `record`, in order, given
/// the nodes that must adopt a rotation before it ends (those not down).
/// Pure: the follower loop takes the first steps it can and looks again.
pub fn plan(record: &CaRecord, local: &CaLocal, must_adopt: &BTreeSet<NodeId>) -> Vec<CaAction> {
    let mut steps = Vec::new();
    let want = super::fingerprints(&record.roots_pem);
    let trusts = !want.is_empty() && local.roots == want;
    if !trusts {
        steps.push(CaAction::Trust);
    }
    if local.manager && local.signer.as_deref() != Some(record.name.as_str()) {
        steps.push(CaAction::HoldSigner);
    }
    if !local.cert_from_signer {
        steps.push(CaAction::Renew);
    }
    if record.finished {
        if local.presents_cross {
            steps.push(CaAction::DropCross);
        }
        return steps;
    }
    let done = record.adopted.contains(&local.node);
    if !done && steps.is_empty() {
        steps.push(CaAction::Adopt);
    }
    let everyone = must_adopt.iter().all(|n| record.adopted.contains(n));
    if local.manager && done && everyone {
        steps.push(CaAction::Finish);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertAuthority;

    fn record(
        old: &CertAuthority,
        new: &CertAuthority,
        adopted: &[&str],
        finished: bool,
    ) -> CaRecord {
        CaRecord {
            rotation: 1,
            roots_pem: if finished {
                new.cert_pem.clone()
            } else {
                format!("{}{}", old.cert_pem, new.cert_pem)
            },
            name: new.name.clone(),
            cert_pem: new.cert_pem.clone(),
            key: crate::secret::seal(
                &crate::secret::DataKey::generate(),
                CA_KEY_SECRET,
                2,
                &crate::secret::Plaintext::new(new.key_pem.clone().into_bytes()),
                0,
            ),
            cross_pem: (!finished).then(|| old.cross_sign(new).unwrap()),
            adopted: adopted.iter().map(|s| s.to_string()).collect(),
            finished,
        }
    }

    #[test]
    fn a_rotation_is_followed_step_by_step_and_ends_when_everyone_is_done() {
        use CaAction::*;
        let old = CertAuthority::generate("t").unwrap();
        let new = CertAuthority::generate("t").unwrap();
        let both = vec![old.fingerprint(), new.fingerprint()];
        let all: BTreeSet<NodeId> = ["m1", "w1"].map(String::from).into();
        let m1_before = CaLocal {
            node: "m1".into(),
            manager: true,
            roots: vec![old.fingerprint()],
            signer: Some(old.name.clone()),
            cert_from_signer: false,
            presents_cross: false,
        };
        let w1_before = CaLocal {
            node: "w1".into(),
            manager: false,
            signer: None,
            ..m1_before.clone()
        };
        let m1_done = CaLocal {
            roots: both.clone(),
            signer: Some(new.name.clone()),
            cert_from_signer: true,
            presents_cross: true,
            ..m1_before.clone()
        };
        let w1_done = CaLocal {
            roots: both.clone(),
            cert_from_signer: true,
            presents_cross: true,
            ..w1_before.clone()
        };
        let cases: Vec<(&str, CaRecord, &CaLocal, Vec<CaAction>)> = vec![
            (
                "a manager starts",
                record(&old, &new, &[], false),
                &m1_before,
                vec![Trust, HoldSigner, Renew],
            ),
            (
                "a worker starts",
                record(&old, &new, &[], false),
                &w1_before,
                vec![Trust, Renew],
            ),
            (
                "a manager renewed",
                record(&old, &new, &[], false),
                &m1_done,
                vec![Adopt],
            ),
            (
                "the manager waits for the worker",
                record(&old, &new, &["m1"], false),
                &m1_done,
                vec![],
            ),
            (
                "the worker renewed",
                record(&old, &new, &["m1"], false),
                &w1_done,
                vec![Adopt],
            ),
            (
                "everyone done: the manager ends it",
                record(&old, &new, &["m1", "w1"], false),
                &m1_done,
                vec![Finish],
            ),
            (
                "a worker never ends it",
                record(&old, &new, &["m1", "w1"], false),
                &w1_done,
                vec![],
            ),
            (
                "over: trust the new CA alone, drop the cross",
                record(&old, &new, &["m1", "w1"], true),
                &w1_done,
                vec![Trust, DropCross],
            ),
        ];
        for (what, rec, local, want) in cases {
            assert_eq!(plan(&rec, local, &all), want, "{what}");
        }
        // A node marked down does not hold the rotation up.
        let only_m1: BTreeSet<NodeId> = ["m1"].map(String::from).into();
        assert_eq!(
            plan(&record(&old, &new, &["m1"], false), &m1_done, &only_m1),
            vec![Finish]
        );
        // The record at rest, for a node in step with it: nothing to do.
        let settled = CaLocal {
            roots: vec![new.fingerprint()],
            presents_cross: false,
            ..m1_done.clone()
        };
        assert!(plan(&record(&old, &new, &["m1", "w1"], true), &settled, &all).is_empty());
    }

    #[test]
    fn the_cross_signed_ca_links_the_old_root_to_the_new_ca() {
        let old = CertAuthority::generate("t").unwrap();
        let new = CertAuthority::generate("t").unwrap();
        let cross = old.cross_sign(&new).unwrap();
        assert!(crate::tls::issued_by(&cross, &old.cert_pem));
        assert!(!crate::tls::issued_by(&cross, &new.cert_pem));
        assert!(crate::tls::issued_by(&new.cert_pem, &new.cert_pem));
    }
}
