//! A secure node's gossip keyring: where its keys come from at start, and
//! how its transport follows the committed keyring while it runs.
//!
//! At start, in this order: the keyring committed in the local replica
//! (opened with the data key), the copy kept in `<data_dir>/tls/gossip-keys.json`
//! (0600: a node restarted before its replica caught up), the one the join
//! grant carried, or, for the first node of a new cluster, a new key. The
//! first node commits its keyring at bootstrap; from then on `cluster
//! gossip-key install | use | remove` commit changes, and every node's loop
//! here applies them to its transport (install first, then the primary, then
//! removals) and keeps the file current. The same loop copies the transport's
//! packet counters into `/metrics`. With autolock the file is sealed under
//! the unlock key (see [`super::autolock`]).

use std::path::Path;
use std::time::Duration;

use orion_core::at_rest::{self, UnlockKey};
use orion_core::gossip_keys::GossipKeys;
use orion_core::secret::DataKey;
use orion_core::{Cluster, Store as _};
use orion_gossip::keyring::{GossipKey, KeyId};
use orion_gossip::transport::DropReason;
use orion_gossip::{ChitchatMembership, Keyring};
use orion_store::RaftStore;
use tracing::{info, warn};

use super::NodeError;

/// The keyring's file under the TLS dir.
const FILE: &str = "gossip-keys.json";

fn bad(path: &Path, what: impl std::fmt::Display) -> NodeError {
    NodeError::DataDir {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
    }
}

/// The keyring this node starts its gossip with (see the module docs), or
/// none: a node that joined before the cluster sealed its gossip.
pub(crate) fn initial(
    tls_dir: &Path,
    store: &RaftStore,
    data_key: Option<&DataKey>,
    granted: Option<GossipKeys>,
    first: bool,
    sealed: Option<&UnlockKey>,
) -> Result<Option<GossipKeys>, NodeError> {
    let path = tls_dir.join(FILE);
    let kept: Option<GossipKeys> = match at_rest::read(&path, sealed)? {
        Some(text) => Some(serde_json::from_slice(&text).map_err(|e| bad(&path, e))?),
        None => None,
    };
    let committed = store
        .replica()
        .read(|s| s.gossip_keyring.clone())
        .and_then(|sealed| {
            let key = data_key?;
            GossipKeys::open(key, &sealed)
                .map_err(|e| warn!(error = %e, "the committed gossip keyring does not open here"))
                .ok()
        });
    let keys = match (committed, kept.clone(), granted) {
        (Some(k), _, _) | (None, Some(k), _) | (None, None, Some(k)) => Some(k),
        (None, None, None) if first => {
            let k = GossipKeys::new(&orion_core::gossip_keys::generate())
                .expect("a made key is well formed");
            info!(key_id = %k.primary, "made the cluster's gossip key");
            Some(k)
        }
        (None, None, None) => None,
    };
    if let Some(k) = keys.as_ref().filter(|k| kept.as_ref() != Some(*k)) {
        save(tls_dir, k, sealed)?;
    }
    Ok(keys)
}

/// Keeps `keys` in the TLS dir (0600), sealed under `sealed` when given.
fn save(tls_dir: &Path, keys: &GossipKeys, sealed: Option<&UnlockKey>) -> Result<(), NodeError> {
    let path = tls_dir.join(FILE);
    let text = zeroize::Zeroizing::new(serde_json::to_vec_pretty(keys).map_err(|e| bad(&path, e))?);
    Ok(at_rest::write(&path, &text, sealed)?)
}

fn key(b64: &str) -> Option<GossipKey> {
    GossipKey::from_base64(b64).ok()
}

/// A transport keyring holding `keys`.
pub(crate) fn keyring(keys: &GossipKeys) -> Result<Keyring, NodeError> {
    let malformed = || NodeError::Join("the gossip keyring holds a malformed key".into());
    let primary = keys.primary_key().and_then(key).ok_or_else(malformed)?;
    let ring = Keyring::new(primary);
    for k in &keys.keys {
        ring.install(key(k).ok_or_else(malformed)?)
            .map_err(|e| NodeError::Join(e.to_string()))?;
    }
    Ok(ring)
}

/// Makes `ring` hold exactly `keys`: installs new keys, then switches the
/// primary, then removes the rest, so no packet in flight is refused for a
/// key it was sealed with a moment ago by a node ahead of this one.
fn apply(ring: &Keyring, keys: &GossipKeys) {
    let wanted: Vec<GossipKey> = keys.keys.iter().filter_map(|k| key(k)).collect();
    for k in &wanted {
        if let Err(e) = ring.install(k.clone()) {
            warn!(error = %e, "a gossip key could not be installed");
        }
    }
    if let Some(p) = keys.primary_key().and_then(key) {
        if let Err(e) = ring.use_key(p.id()) {
            warn!(error = %e, "the primary gossip key could not be used");
        }
    }
    let keep: Vec<KeyId> = wanted.iter().map(GossipKey::id).collect();
    for info in ring.list() {
        if !keep.contains(&info.id) {
            if let Err(e) = ring.remove(info.id) {
                warn!(error = %e, "a gossip key could not be removed");
            }
        }
    }
}

/// How often the loop looks at the committed keyring and the counters.
const EVERY: Duration = Duration::from_secs(1);

/// Follows the committed keyring into `ring` and the transport's counters
/// into `/metrics`, until the node shuts down.
pub(crate) fn spawn_follow(
    cluster: Cluster,
    membership: ChitchatMembership,
    ring: Keyring,
    mut last: GossipKeys,
    tls_dir: std::path::PathBuf,
    sealed: Option<UnlockKey>,
) {
    let stop = cluster.on_shutdown();
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = &mut stop => return,
            }
            match cluster.gossip_keys() {
                Ok(Some(k)) if k != last => {
                    apply(&ring, &k);
                    if let Err(e) = save(&tls_dir, &k, sealed.as_ref()) {
                        warn!(error = %e, "the gossip keyring could not be kept on disk");
                    }
                    info!(primary = %k.primary, keys = k.keys.len(), "gossip keyring changed");
                    last = k;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "the committed gossip keyring is not readable here"),
            }
            if let Some(p) = membership.packet_stats() {
                let dropped: Vec<(&str, u64)> = DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), p.dropped_by(*r)))
                    .collect();
                cluster.metrics().scrape_gossip(
                    &[
                        ("sent", p.sent),
                        ("received", p.received),
                        ("delivered", p.delivered),
                        ("fragmented", p.fragmented),
                    ],
                    &dropped,
                );
            }
        }
    });
}
