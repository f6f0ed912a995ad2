//! The PRD's `weight × free resource`, read one way for spread and the other for
//! bin-pack.

use super::Scorer;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::spec::Strategy;

/// Weighted share of the node left free after placing the task: spread prefers more
/// (`score = Σ wᵣ·freeᵣ/capᵣ / Σ wᵣ`), bin-pack prefers less (`1 − that`).
#[derive(Debug, Clone)]
pub struct FreeResources {
    /// Weight of CPU.
    pub cpu: f64,
    /// Weight of memory.
    pub memory: f64,
    /// Weight of disk.
    pub disk: f64,
}

impl Default for FreeResources {
    /// CPU and memory count equally; disk is rarely the binding constraint for
    /// containers, so it counts a quarter.
    fn default() -> Self {
        FreeResources {
            cpu: 1.0,
            memory: 1.0,
            disk: 0.25,
        }
    }
}

impl FreeResources {
    /// Weighted free share after placing `ask` on `c`, in `[0, 1]`.
    pub fn free_share(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        let cap = &c.node.info.capacity;
        let dims = [
            (self.cpu, c.free.cpu - ask.need.cpu, cap.cpu),
            (
                self.memory,
                c.free.memory_mb as f64 - ask.need.memory_mb as f64,
                cap.memory_mb as f64,
            ),
            (
                self.disk,
                c.free.disk_mb as f64 - ask.need.disk_mb as f64,
                cap.disk_mb as f64,
            ),
        ];
        let (mut sum, mut weights) = (0.0, 0.0);
        for (w, free, cap) in dims {
            if cap > 0.0 && w > 0.0 {
                sum += w * (free / cap).clamp(0.0, 1.0);
                weights += w;
            }
        }
        if weights == 0.0 {
            0.0
        } else {
            sum / weights
        }
    }
}

impl Scorer for FreeResources {
    fn name(&self) -> &'static str {
        "free-resources"
    }

    fn score(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        let free = self.free_share(c, ask);
        match ask.strategy {
            Strategy::Spread => free,
            Strategy::Binpack => 1.0 - free,
        }
    }
}
