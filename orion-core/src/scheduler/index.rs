//! The free-capacity index: schedulable nodes in two tiers — nodes with something
//! reserved on them, then empty ones — each ordered by free CPU (in steps of an
//! eighth of a core), then by free memory.
//!
//! A walk visits only nodes with at least the asked CPU step and memory, so nodes
//! full on either dimension cost nothing however many there are. Bin-pack walks
//! nodes in use before empty ones, each tightest first (least CPU left, then least
//! memory), so a new node is opened only when few in use fit; spread walks empty
//! nodes first, each roomiest first. One seek per CPU step that has nodes, then one
//! step per node.

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
        let mut entries: Vec<Entry> = nodes.map(|(f, c, i)| entry(&f, &c, i)).collect();
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
        Walk {
            set: &self.set,
            min_key: need_key(need.cpu),
            memory: need.memory_mb,
            ascending: binpack,
            tiers: if binpack {
                [IN_USE, EMPTY]
            } else {
                [EMPTY, IN_USE]
            },
            tier: 0,
            key: None,
            range: None,
        }
    }
}

/// A walk over the index; see [`FreeIndex::walk`].
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
    /// The CPU step being walked.
    key: Option<u32>,
    /// Its nodes with enough memory, in walk order.
    range: Option<Range<'s, Entry>>,
}

impl Walk<'_> {
    /// The next CPU step of tier `t` that has nodes, or none.
    fn next_key(&self, t: u8) -> Option<u32> {
        let found = if self.ascending {
            let from = match self.key {
                None => (t, self.min_key, 0, 0),
                Some(k) => (t, k.checked_add(1)?, 0, 0),
            };
            self.set.range(from..).next()
        } else {
            let to = match self.key {
                None => Bound::Included((t, u32::MAX, u64::MAX, u32::MAX)),
                Some(k) => Bound::Excluded((t, k, 0, 0)),
            };
            self.set.range((Bound::Unbounded, to)).next_back()
        };
        found
            .filter(|e| e.0 == t && e.1 >= self.min_key)
            .map(|e| e.1)
    }
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.tier < self.tiers.len() {
            if let Some(range) = self.range.as_mut() {
                let e = if self.ascending {
                    range.next()
                } else {
                    range.next_back()
                };
                if let Some(e) = e {
                    return Some(e.3 as usize);
                }
            }
            let t = self.tiers[self.tier];
            match self.next_key(t) {
                Some(k) => {
                    self.key = Some(k);
                    let (lo, hi) = ((t, k, self.memory, 0), (t, k, u64::MAX, u32::MAX));
                    self.range = Some(self.set.range(lo..=hi));
                }
                None => {
                    self.tier += 1;
                    self.key = None;
                    self.range = None;
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
