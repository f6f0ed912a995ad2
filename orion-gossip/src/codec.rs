//! Members as chitchat key-values, and a live-node snapshot as members by id.
//!
//! A node publishes one key, [`MEMBER_KEY`], whose value is the JSON of its
//! addresses, role, capacity, used resources and tags. One value rather than a
//! key per field, so that a peer never sees half of an update (new `used`, old
//! `tags`). The id and the generation are not in it: chitchat's node id carries
//! them, and that is the only copy peers trust.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use chitchat::{ChitchatId, NodeState};
use orion_core::membership::Member;
use orion_core::model::{NodeAddrs, NodeId, NodeRole};
use orion_core::spec::Resources;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

/// The chitchat key holding a node's metadata.
pub const MEMBER_KEY: &str = "orion.member";

/// What a node publishes under [`MEMBER_KEY`]. Unknown fields are ignored, so
/// a newer node may add some.
#[derive(Debug, Serialize, Deserialize)]
struct MemberMeta {
    addrs: NodeAddrs,
    role: NodeRole,
    capacity: Resources,
    used: Resources,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    load: BTreeMap<String, orion_core::scaling::JobLoad>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    suspects: std::collections::BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    starved: bool,
}

/// Why a member cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A resource amount is NaN or infinite; JSON would carry it as `null`,
    /// which peers could not read back.
    #[error("{0} is not a finite number")]
    NotFinite(&'static str),
    /// Serialization failed.
    #[error("cannot serialize member metadata")]
    Json(#[source] serde_json::Error),
}

/// The value to publish under [`MEMBER_KEY`] for `member`.
pub(crate) fn encode(member: &Member) -> Result<String, EncodeError> {
    if !member.capacity.cpu.is_finite() {
        return Err(EncodeError::NotFinite("capacity.cpu"));
    }
    if !member.used.cpu.is_finite() {
        return Err(EncodeError::NotFinite("used.cpu"));
    }
    let meta = MemberMeta {
        addrs: member.addrs.clone(),
        role: member.role,
        capacity: member.capacity,
        used: member.used,
        tags: member.tags.clone(),
        load: member.load.clone(),
        suspects: member.suspects.clone(),
        starved: member.starved,
    };
    serde_json::to_string(&meta).map_err(EncodeError::Json)
}

/// The member a node's state describes; `None` while its metadata has not
/// arrived yet, and on a value this version cannot read (logged).
pub(crate) fn decode(id: &ChitchatId, state: &NodeState) -> Option<Member> {
    let Some(value) = state.get(MEMBER_KEY) else {
        debug!(node_id = %id.node_id, "live node has no metadata yet");
        return None;
    };
    match serde_json::from_str::<MemberMeta>(value) {
        Ok(meta) => Some(Member {
            id: id.node_id.to_string(),
            generation: id.generation_id,
            addrs: meta.addrs,
            role: meta.role,
            capacity: meta.capacity,
            used: meta.used,
            tags: meta.tags,
            load: meta.load,
            suspects: meta.suspects,
            starved: meta.starved,
        }),
        Err(error) => {
            warn!(node_id = %id.node_id, %error, "ignoring a node with unreadable metadata");
            None
        }
    }
}

/// The live members of a chitchat snapshot, by id.
///
/// - A node whose metadata has not arrived is left out: it appears, complete,
///   once it does.
/// - Of several live generations of one id (a node restarted before its old
///   incarnation was declared dead) the highest wins; the stale one is dropped.
/// - For the local id only `local` counts: another generation of our own id is
///   a previous incarnation (or a misconfigured twin), never us.
pub(crate) fn live_members(
    local: &ChitchatId,
    snapshot: &BTreeMap<ChitchatId, NodeState>,
) -> BTreeMap<NodeId, Member> {
    let mut members: BTreeMap<NodeId, Member> = BTreeMap::new();
    for (id, state) in snapshot {
        if id.node_id == local.node_id && id != local {
            debug!(node_id = %id.node_id, generation = id.generation_id, "ignoring another incarnation of the local node");
            continue;
        }
        let Some(member) = decode(id, state) else {
            continue;
        };
        match members.entry(member.id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(member);
            }
            Entry::Occupied(mut slot) => {
                if member.generation > slot.get().generation {
                    slot.insert(member);
                }
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            generation: 0,
            addrs: NodeAddrs {
                http: "127.0.0.1:8080".into(),
                raft: Some("127.0.0.1:7946".into()),
                gossip: Some("127.0.0.1:7947".into()),
            },
            role: NodeRole::Worker,
            capacity: Resources {
                cpu: 3.7,
                memory_mb: 4096,
                disk_mb: 10_000,
            },
            used: Resources {
                cpu: 0.1,
                memory_mb: 128,
                disk_mb: 0,
            },
            tags: [("disk".to_string(), "ssd".to_string())].into(),
            load: Default::default(),
            suspects: Default::default(),
            starved: false,
        }
    }

    fn chitchat_id(id: &str, generation: u64, port: u16) -> ChitchatId {
        ChitchatId::new(id, generation, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn state_with(value: Option<String>) -> NodeState {
        let mut state = NodeState::for_test();
        if let Some(value) = value {
            state.set(MEMBER_KEY, value);
        }
        state
    }

    #[test]
    fn round_trips_with_id_and_generation_from_chitchat() {
        let mut original = member("n1");
        original.generation = 99; // not published
        let id = chitchat_id("n1", 7, 7947);
        let decoded = decode(&id, &state_with(Some(encode(&original).unwrap()))).unwrap();
        assert_eq!(
            decoded,
            Member {
                generation: 7,
                ..original
            }
        );
    }

    #[test]
    fn missing_or_unreadable_metadata_is_no_member() {
        let id = chitchat_id("n1", 1, 7947);
        assert_eq!(decode(&id, &state_with(None)), None);
        assert_eq!(decode(&id, &state_with(Some("{not json".into()))), None);
    }

    #[test]
    fn non_finite_resources_are_refused() {
        let mut bad = member("n1");
        bad.used.cpu = f64::NAN;
        assert!(matches!(
            encode(&bad),
            Err(EncodeError::NotFinite("used.cpu"))
        ));
    }

    #[test]
    fn highest_generation_wins_and_local_twins_are_ignored() {
        let local = chitchat_id("me", 5, 1);
        let value = |id: &str| Some(encode(&member(id)).unwrap());
        let snapshot: BTreeMap<ChitchatId, NodeState> = [
            (local.clone(), state_with(value("me"))),
            (chitchat_id("me", 9, 9), state_with(value("me"))),
            (chitchat_id("a", 1, 2), state_with(value("a"))),
            (chitchat_id("a", 3, 3), state_with(value("a"))),
            (chitchat_id("b", 1, 4), state_with(None)),
        ]
        .into();
        let live = live_members(&local, &snapshot);
        let generations: Vec<(&str, u64)> = live
            .values()
            .map(|m| (m.id.as_str(), m.generation))
            .collect();
        assert_eq!(generations, vec![("a", 3), ("me", 5)]);
    }
}
