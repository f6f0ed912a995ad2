//! The free-capacity index: schedulable nodes in two tiers — nodes with something
//! reserved on them, then empty ones — each ordered by free CPU (in steps of an
//! eighth of a core), then by free memory.
//!
//! A walk visits only nodes with at least the asked CPU step and memory, so nodes
//! full on either dimension cost nothing however many there are. Bin-pack walks
//! nodes in use before empty ones, each tightest first (least CPU left, then least
//! memory), so a new node is opened only when few in use fit; spread walks empty
//! nodes first, each roomiest first. A walk costs one seek per tier, one more per
//! CPU step that has nodes short of memory, then one step per node.

use std::collections::btree_set::Range;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::spec::Resources;

/// CPU steps per core.
const STEPS_PER_CORE: f64 = 8.0;

/// Rounding slack, as in [`Resources::fits`].
const EPSILON: f64 = 1e-9;

/// Tier of nodes with something reserved.
const IN_USE: u8 = 0;
/// Tier of nodes with nothing reserved.
const EMPTY: u8 = 1;

/// Key of a node's free CPU.
fn free_key(cpu: f64) -> u32 {
    ((cpu + EPSILON).max(0.0) * STEPS_PER_CORE) as u32
}

/// Smallest key of a node that may have `cpu` free.
fn need_key(cpu: f64) -> u32 {
    ((cpu - EPSILON).max(0.0) * STEPS_PER_CORE) as u32
}

/// (tier, free CPU step, free memory, position).
type Entry = (u8, u32, u64, u32);

fn entry(free: &Resources, capacity: &Resources, i: usize) -> Entry {
    let tier = if free == capacity { EMPTY } else { IN_USE };
    (tier, free_key(free.cpu), free.memory_mb, i as u32)
}

/// Schedulable nodes by tier, free CPU step and free memory.
#[derive(Debug, Default)]
pub struct FreeIndex {
    set: BTreeSet<Entry>,
}

impl FreeIndex {
    /// An index of `(free, capacity, position)` triples.
    pub fn build(nodes: impl Iterator<Item = (Resources, Resources, usize)>) -> Self {
        let nodes = nodes.into_iter();
        let mut entries: Vec<Entry> = Vec::with_capacity(nodes.size_hint().1.unwrap_or(0));
        entries.extend(nodes.map(|(f, c, i)| entry(&f, &c, i)));
        entries.sort_unstable();
        FreeIndex {
            set: entries.into_iter().collect(),
        }
    }

    /// Moves node `i` (of `capacity`) from `old` free resources to `new`; false when
    /// it was not indexed (and so stays out).
    pub fn update(
        &mut self,
        i: usize,
        capacity: &Resources,
        old: &Resources,
        new: &Resources,
    ) -> bool {
        if !self.set.remove(&entry(old, capacity, i)) {
            return false;
        }
        self.set.insert(entry(new, capacity, i));
        true
    }

    /// How many nodes are indexed.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Positions of nodes that may fit `need` on CPU and memory, in bin-pack order
    /// (`binpack`) or spread order. Every node that fits is visited; a visited node
    /// may still fall short by less than a CPU step.
    pub fn walk(&self, need: &Resources, binpack: bool) -> Walk<'_> {
        let tiers = if binpack {
            [IN_USE, EMPTY]
        } else {
            [EMPTY, IN_USE]
        };
        let mut walk = Walk {
            set: &self.set,
            min_key: need_key(need.cpu),
            memory: need.memory_mb,
            ascending: binpack,
            tiers,
            tier: 0,
            range: None,
        };
        walk.range = Some(walk.tier_range(tiers[0]));
        walk
    }
}

/// A walk over the index; see [`FreeIndex::walk`].
///
/// It keeps one range over the current tier and steps through it, seeking past
/// a CPU step's nodes that are short of memory only when it meets one, so a step
/// where every node has the memory costs no seek at all.
#[derive(Debug)]
pub struct Walk<'s> {
    set: &'s BTreeSet<Entry>,
    min_key: u32,
    memory: u64,
    /// Tightest CPU step first (bin-pack) or roomiest first (spread).
    ascending: bool,
    /// Tiers in walk order.
    tiers: [u8; 2],
    /// Position in `tiers`; 2 when the walk is over.
    tier: usize,
    /// What is left of the current tier, in walk order from either end.
    range: Option<Range<'s, Entry>>,
}

impl<'s> Walk<'s> {
    /// Every node of tier `t` with at least the asked CPU step (the first step
    /// starting at the asked memory, when walking up).
    fn tier_range(&self, t: u8) -> Range<'s, Entry> {
        let top = (t, u32::MAX, u64::MAX, u32::MAX);
        let memory = if self.ascending { self.memory } else { 0 };
        self.set.range((t, self.min_key, memory, 0)..=top)
    }

    /// After meeting a node of CPU step `key` short of memory: the rest of the
    /// tier without that step's other short nodes.
    fn skip_short(&self, t: u8, key: u32) -> Range<'s, Entry> {
        if self.ascending {
            // Memory rises within a step: the short nodes come first.
            self.set
                .range((t, key, self.memory, 0)..=(t, u32::MAX, u64::MAX, u32::MAX))
        } else {
            // Memory falls within a step: the short nodes come last.
            self.set.range((
                Bound::Included((t, self.min_key, 0, 0)),
                Bound::Excluded((t, key, 0, 0)),
            ))
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.tier < self.tiers.len() {
            let t = self.tiers[self.tier];
            let range = self.range.as_mut()?;
            let e = if self.ascending {
                range.next()
            } else {
                range.next_back()
            };
            match e {
                Some(&(_, _, memory, i)) if memory >= self.memory => return Some(i as usize),
                Some(&(_, key, _, _)) => self.range = Some(self.skip_short(t, key)),
                None => {
                    self.tier += 1;
                    self.range = self.tiers.get(self.tier).map(|t| self.tier_range(*t));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: f64, memory_mb: u64) -> Resources {
        Resources {
            cpu,
            memory_mb,
            disk_mb: 0,
        }
    }

    #[test]
    fn walks_only_nodes_that_may_fit_in_strategy_order() {
        let cap = res(4.0, 8192);
        let nodes = [
            res(0.0, 8000), // 0: no CPU left
            res(1.0, 100),  // 1: no memory left
            res(1.0, 600),  // 2
            res(0.5, 2000), // 3
            res(4.0, 512),  // 4
            res(0.25, 600), // 5: CPU a step short
            cap,            // 6: empty
        ];
        let mut idx = FreeIndex::build(
            nodes
                .iter()
                .map(|f| (*f, cap))
                .zip(0..)
                .map(|((f, c), i)| (f, c, i)),
        );
        let need = res(0.5, 512);
        assert_eq!(idx.walk(&need, true).collect::<Vec<_>>(), [3, 2, 4, 6]);
        assert_eq!(idx.walk(&need, false).collect::<Vec<_>>(), [6, 4, 2, 3]);
        assert!(idx.update(4, &cap, &nodes[4], &res(0.5, 0)));
        assert_eq!(idx.walk(&need, true).collect::<Vec<_>>(), [3, 2, 6]);
        assert!(!idx.update(9, &cap, &nodes[0], &res(1.0, 1)), "not indexed");
        assert_eq!(idx.len(), 7);
        let zero = res(0.0, 0);
        assert_eq!(idx.walk(&zero, true).count(), 7);
        assert_eq!(idx.walk(&zero, false).count(), 7);
        assert_eq!(FreeIndex::default().walk(&zero, false).count(), 0);
    }
}
