//! The events between two live sets: pure, no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use orion_core::membership::{Member, MembershipEvent};
use orion_core::model::NodeId;

/// What changed from `previous` to `current`, both live members by id, in id
/// order:
///
/// - an id only in `current` → `Joined`;
/// - an id in both with a different generation → `Joined` (the node restarted;
///   its previous incarnation is gone);
/// - an id in both, same generation, other metadata → `Updated`;
/// - an id only in `previous` → `Dead`.
pub(crate) fn diff(
    previous: &BTreeMap<NodeId, Member>,
    current: &BTreeMap<NodeId, Member>,
) -> Vec<MembershipEvent> {
    let ids: BTreeSet<&NodeId> = previous.keys().chain(current.keys()).collect();
    ids.into_iter()
        .filter_map(|id| match (previous.get(id), current.get(id)) {
            (Some(_), None) => Some(MembershipEvent::Dead(id.clone())),
            (None, Some(new)) => Some(MembershipEvent::Joined(new.clone())),
            (Some(old), Some(new)) => changed(old, new),
            (None, None) => None,
        })
        .collect()
}

/// The event for a member live in both sets, if it changed.
fn changed(old: &Member, new: &Member) -> Option<MembershipEvent> {
    if old.generation != new.generation {
        Some(MembershipEvent::Joined(new.clone()))
    } else if old != new {
        Some(MembershipEvent::Updated {
            previous: old.clone(),
            updated: new.clone(),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use orion_core::model::{NodeAddrs, NodeRole};
    use orion_core::spec::Resources;

    use super::*;
    use MembershipEvent::{Dead, Joined, Updated};

    fn member(id: &str, generation: u64, used_mb: u64) -> Member {
        Member {
            id: id.into(),
            generation,
            addrs: NodeAddrs::default(),
            role: NodeRole::Worker,
            capacity: Resources::default(),
            used: Resources {
                cpu: 0.0,
                memory_mb: used_mb,
                disk_mb: 0,
            },
            tags: Default::default(),
            load: Default::default(),
            suspects: Default::default(),
            starved: false,
        }
    }

    fn set(members: &[Member]) -> BTreeMap<NodeId, Member> {
        members.iter().map(|m| (m.id.clone(), m.clone())).collect()
    }

    #[test]
    fn table() {
        let a1 = member("a", 1, 0);
        let a1_busy = member("a", 1, 512);
        let a2 = member("a", 2, 0);
        let b1 = member("b", 1, 0);
        let c1 = member("c", 1, 0);
        type Case = (&'static str, Vec<Member>, Vec<Member>, Vec<MembershipEvent>);
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![], vec![]),
            ("unchanged", vec![a1.clone()], vec![a1.clone()], vec![]),
            (
                "first sight",
                vec![],
                vec![a1.clone(), b1.clone()],
                vec![Joined(a1.clone()), Joined(b1.clone())],
            ),
            (
                "metadata change",
                vec![a1.clone()],
                vec![a1_busy.clone()],
                vec![Updated {
                    previous: a1.clone(),
                    updated: a1_busy.clone(),
                }],
            ),
            (
                "restart with a new generation",
                vec![a1.clone()],
                vec![a2.clone()],
                vec![Joined(a2.clone())],
            ),
            (
                "death",
                vec![a1.clone(), b1.clone()],
                vec![b1.clone()],
                vec![Dead("a".into())],
            ),
            (
                "interleaved, in id order",
                vec![a1.clone(), c1.clone()],
                vec![a1_busy.clone(), b1.clone()],
                vec![
                    Updated {
                        previous: a1.clone(),
                        updated: a1_busy.clone(),
                    },
                    Joined(b1.clone()),
                    Dead("c".into()),
                ],
            ),
        ];
        for (name, before, after, expected) in cases {
            assert_eq!(diff(&set(&before), &set(&after)), expected, "{name}");
        }
    }
}
