//! Per-job counts of allocations, kept in step with every change (not
//! persisted), so the reconciler can skip jobs that are settled and a plan's
//! check finds a slot's live copy without walking the whole job.

use std::collections::BTreeMap;

use crate::model::Allocation;

/// What a job's allocations add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobTally {
    /// Live allocations per slot.
    live_slots: BTreeMap<u32, u32>,
    /// Live allocations.
    live: u32,
    /// Live allocations per job version.
    live_versions: BTreeMap<u64, u32>,
    /// Live allocations per slot and version: a new version's copy may join a
    /// slot the old one still holds (it runs until its replacement is placed).
    live_slot_versions: BTreeMap<(u32, u64), u32>,
    /// Live allocations not placed on a node.
    unplaced: u32,
    /// Live allocations that failed to start often enough to be replaced.
    failing: u32,
    /// Terminal allocations (kept for inspection until collected).
    terminal: u32,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u32>, key: K, up: bool) {
    if up {
        *map.entry(key).or_default() += 1;
    } else if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl JobTally {
    /// Counts an allocation in (`up`) or out.
    pub(crate) fn count(&mut self, a: &Allocation, up: bool) {
        let step = |n: &mut u32| {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        };
        if a.is_live() {
            step(&mut self.live);
            bump(&mut self.live_slots, a.slot, up);
            bump(&mut self.live_versions, a.job_version, up);
            bump(&mut self.live_slot_versions, (a.slot, a.job_version), up);
            if a.node.is_none() {
                step(&mut self.unplaced);
            }
            if a.should_reschedule() {
                step(&mut self.failing);
            }
        } else if a.state.is_terminal() {
            step(&mut self.terminal);
        }
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.live == 0 && self.terminal == 0
    }

    /// Live allocations.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// Live allocations not placed on a node.
    pub fn unplaced(&self) -> u32 {
        self.unplaced
    }

    /// Terminal allocations.
    pub fn terminal(&self) -> u32 {
        self.terminal
    }

    /// Whether a slot has a live allocation.
    pub fn slot_live(&self, slot: u32) -> bool {
        self.live_slots.contains_key(&slot)
    }

    /// Whether a slot has a live allocation of `version`.
    pub fn slot_live_at(&self, slot: u32, version: u64) -> bool {
        self.live_slot_versions.contains_key(&(slot, version))
    }

    /// Whether the job needs nothing from the reconciler, draining nodes aside:
    /// exactly one live allocation in each slot `0..replicas`, all of `version`
    /// and all placed.
    pub fn settled(&self, replicas: u32, version: u64) -> bool {
        self.live == replicas
            && self.live_slots.len() == replicas as usize
            && self
                .live_slots
                .last_key_value()
                .is_none_or(|(s, _)| *s < replicas)
            && self.unplaced == 0
            && self.failing == 0
            && self.live_versions.get(&version).copied().unwrap_or(0) == self.live
    }

    /// Whether the reconciler may stop something of the job, draining nodes
    /// aside: a slot with two live copies, a slot past `replicas`, or a live
    /// allocation of another version.
    pub fn may_stop(&self, replicas: u32, version: u64) -> bool {
        self.failing > 0
            || self.live as usize != self.live_slots.len()
            || self
                .live_slots
                .last_key_value()
                .is_some_and(|(s, _)| *s >= replicas)
            || self.live_versions.get(&version).copied().unwrap_or(0) != self.live
    }
}
