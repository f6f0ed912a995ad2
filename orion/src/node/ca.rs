//! Following the committed cluster CA (see [`orion_core::tls::rotation`]):
//! a loop on every secure node that takes the steps [`Cluster::ca_plan`]
//! names — trust the record's CAs, hold its signer (managers), renew under
//! it, commit that the node is done, end the rotation when everyone is, and
//! present the certificate alone once it is over — and keeps what changes in
//! `<data_dir>/tls/` (`ca.pem`, `ca.json`, `node.json`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_core::cluster::pki::Pki;
use orion_core::tls::rotation::CaAction;
use orion_core::tls::{der_to_pem, parse_certs};
use orion_core::Cluster;
use tracing::{info, warn};

use super::{error_text, tls};

/// How often the loop looks at the record.
const EVERY: Duration = Duration::from_millis(500);

/// How long a renewal asked for by a rotation gets before it is asked again
/// (a worker's manager may not hold the new CA yet).
const RENEW_AGAIN: Duration = Duration::from_secs(2);

/// Runs the loop until the node stops. `cluster` should be a background
/// handle (it must not keep the node alive).
pub(crate) fn spawn_follow(cluster: Cluster, pki: Arc<Pki>, dir: PathBuf) {
    tokio::spawn(async move {
        let stop = cluster.on_shutdown();
        tokio::pin!(stop);
        let mut asked: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = &mut stop => return,
            }
            let Some(record) = cluster.ca_record() else {
                continue;
            };
            // Certificates issued here carry the cross-signed CA while the
            // rotation runs, once this node signs with the new CA.
            let signs_new = pki.ca().is_some_and(|c| c.name == record.name);
            pki.set_cross(if signs_new && !record.finished {
                record.cross_pem.clone()
            } else {
                None
            });
            for step in cluster.ca_plan() {
                match step {
                    CaAction::Trust => {
                        if let Err(e) = pki.tls.set_roots(&record.roots_pem) {
                            warn!(error = %e, "the committed CA certificates are not usable");
                            break;
                        }
                        if let Err(e) = tls::save_roots(&dir, &record.roots_pem) {
                            warn!(error = %error_text(&e), "the trusted CA certificates could not be kept on disk");
                        }
                        if record.finished {
                            if let Err(e) = pki.retag_join_tokens() {
                                warn!(error = %e, "the join tokens could not be kept on disk");
                            }
                        }
                        info!(
                            rotation = record.rotation,
                            finished = record.finished,
                            trusted = orion_core::tls::fingerprints(&record.roots_pem).len(),
                            "trusting the cluster's CA certificates"
                        );
                    }
                    CaAction::HoldSigner => match cluster.ca_signer(&record) {
                        Ok(ca) => {
                            if let Err(e) = tls::save_ca(&dir, &ca, pki.unlock_key()) {
                                warn!(error = %error_text(&e), "the new CA could not be kept on disk");
                            }
                            pki.set_ca(ca);
                            pki.set_cross(record.cross_pem.clone().filter(|_| !record.finished));
                            info!(
                                rotation = record.rotation,
                                "signing with the cluster's new CA"
                            );
                        }
                        Err(e) => {
                            warn!(error = %error_text(&e), "the committed CA key cannot be opened here");
                            break;
                        }
                    },
                    CaAction::Renew => {
                        if asked.is_none_or(|t| t.elapsed() >= RENEW_AGAIN) {
                            asked = Some(Instant::now());
                            pki.renew_now.notify_one();
                        }
                    }
                    CaAction::DropCross => {
                        let Some(mut cert) = pki.tls.cert() else {
                            break;
                        };
                        let Some(first) = parse_certs(&cert.cert_pem)
                            .ok()
                            .and_then(|c| c.into_iter().next())
                        else {
                            break;
                        };
                        cert.cert_pem = der_to_pem(first.as_ref());
                        if pki.tls.set_cert(cert.clone()).is_ok() {
                            if let Err(e) = tls::save_cert(&dir, &cert) {
                                warn!(error = %error_text(&e), "the certificate could not be kept on disk");
                            }
                        }
                    }
                    CaAction::Adopt => {
                        if let Err(e) = cluster.ca_adopted(record.rotation).await {
                            warn!(error = %error_text(&e), "could not report this node done with the CA rotation; trying again");
                        } else {
                            info!(
                                rotation = record.rotation,
                                "this node is done with the CA rotation"
                            );
                        }
                    }
                    CaAction::Finish => {
                        if let Err(e) = cluster.ca_finished(record.rotation).await {
                            warn!(error = %error_text(&e), "could not end the CA rotation; trying again");
                        }
                    }
                }
            }
        }
    });
}
