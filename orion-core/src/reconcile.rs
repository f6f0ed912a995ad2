//! The reconciler: compares desired state with observed state and plans the
//! difference. Pure: it reads a [`ClusterState`] and returns a [`Plan`].
//!
//! ```text
//!   jobs (priority, age, version,     allocations (slot, version, node,
//!         deployment, update block)     state, deploy verdict)
//!              └──────────────┬───────────────┘
//!                             ▼
//!     per job in fair order (priority, then age; a share of the pass each),
//!     per slot (a system job: per eligible node): keep one live copy
//!    missing slot / lost / draining node / failed here ──► request placement
//!    old version ──► replace, paced by the deployment (max_parallel in
//!                    flight; stop first, start first, canaries, paused/failed)
//!    extra slot / duplicate / ineligible node ──► stop
//!    stop of an old copy ──► only if its replacement is placed
//!                             │
//!                             ▼
//!            scheduler (requests, minus what the stops free) ──► Plan
//!            (with a one-line summary per job that is not all placed)
//! ```
//!
//! Only the leader runs it; the state machine re-checks every placement when the
//! plan commits, so a plan made on stale state is refused, not applied.

use std::collections::BTreeMap;

use crate::command::{Plan, SlotRef, StopAlloc};
use crate::model::{AllocId, AllocState, Allocation, Job, JobStatus};
use crate::scheduler::Scheduler;
use crate::spec::JobKind;
use crate::state::{ClusterState, NodeUsage};

/// What the reconciler wants before the scheduler has placed anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Intent {
    /// Allocations to stop.
    pub stops: Vec<StopAlloc>,
    /// Slots that need a node.
    pub requests: Vec<SlotRef>,
    /// Stopped allocations whose resources the scheduler must still count as
    /// taken in this pass (replacements of tasks that failed to start).
    pub keep_reserved: Vec<AllocId>,
    /// Stops of running copies that a new version replaces, each made only if
    /// its slot's replacement is placed in the same plan: an update that cannot
    /// be placed never stops the version that runs.
    pub conditional: Vec<(SlotKey, StopAlloc)>,
}

/// A job's slot: what a conditional stop waits on.
pub type SlotKey = (String, u32);

/// Compares jobs with their allocations; returns what to stop and what to place.
///
/// At most `max_requests` placement requests are returned, so one pass stays
/// bounded however much is missing; the next pass carries on. Stops are never
/// held back.
///
/// Cost: jobs whose [`crate::state::JobTally`] says they are settled (one live, placed,
/// current copy per slot, none on a draining node) are skipped without reading
/// their allocations. A pass over a converged cluster of a million allocations
/// is a walk (and a sort) of its job list.
///
/// Fairness: jobs are visited by priority, then age; one job takes at most
/// half of `max_requests`, and every job that needs placements gets at least
/// [`MIN_REQUESTS_PER_JOB`] even when the pass is full — so a huge job that
/// fits nowhere delays no other. Slots not requested in a pass have no record;
/// the plan's per-job summary (`Job::unplaced`) counts them with the reason.
pub fn intent(state: &ClusterState, max_requests: usize) -> Intent {
    intent_at(state, max_requests, None)
}

/// [`intent`] judged at `now_ms` (see [`plan_at`]).
pub fn intent_at(state: &ClusterState, max_requests: usize, now_ms: Option<u64>) -> Intent {
    let mut out = Intent::default();
    let draining: Vec<&NodeUsage> = state
        .nodes
        .values()
        .filter(|n| n.draining)
        .filter_map(|n| state.usage_ref(n.id()))
        .collect();
    for job in fair_order(state) {
        // A job waiting for (or failed by) its dependencies starts nothing.
        if state.gate(job) != crate::state::Gate::Open {
            continue;
        }
        let limit = request_limit(out.requests.len(), max_requests);
        if job.spec.kind == JobKind::System {
            system_intent(state, job, limit, now_ms, &mut out);
            continue;
        }
        let (name, replicas) = (job.spec.name.as_str(), job.spec.replicas);
        let on_draining = draining.iter().any(|u| u.per_job.contains_key(name));
        let needed = match state.job_tally(name) {
            _ if on_draining => true,
            None => replicas > 0,
            Some(t) => !t.settled(replicas, job.version),
        };
        if needed {
            job_intent(state, job, limit, now_ms, &mut out);
        }
    }
    out
}

/// Placement requests every job that needs some gets in a pass, however full
/// the pass is.
pub const MIN_REQUESTS_PER_JOB: usize = 16;

/// The running jobs in the order a pass serves them: higher priority first,
/// then older jobs.
pub(crate) fn fair_order(state: &ClusterState) -> Vec<&Job> {
    let mut jobs: Vec<&Job> = state
        .jobs
        .values()
        // A periodic job runs nothing itself: its runs are jobs of their own.
        .filter(|j| j.status == JobStatus::Running && j.spec.schedule.is_none())
        .collect();
    jobs.sort_by_key(|j| (std::cmp::Reverse(j.spec.priority), j.create_index));
    jobs
}

/// How many requests the pass may hold once the next job has had its share:
/// at most half the pass for one job, and a few even once the pass is full,
/// so a job that cannot be placed never holds up the others.
pub(crate) fn request_limit(used: usize, max_requests: usize) -> usize {
    let per_job = (max_requests / 2).max(MIN_REQUESTS_PER_JOB);
    used + per_job
        .min(max_requests.saturating_sub(used))
        .max(MIN_REQUESTS_PER_JOB)
}

/// New copies of the current version its deployment waits on (placed or
/// pending, not yet counted as healthy), among `live`.
fn in_flight<'a>(live: impl Iterator<Item = &'a Allocation>, job: &Job, rollout: &Rollout) -> u32 {
    live.filter(|a| a.job_version == job.version && a.deployment.is_some() && !rollout.counts(a))
        .count() as u32
}

/// How a job's deployment, if it has one for its current version, paces the
/// replacement of older copies.
struct Rollout {
    /// A deployment governs the rollout (else older copies are replaced at once).
    governed: bool,
    /// Paused or failed: no older copy is replaced.
    halted: bool,
    /// Canaries not promoted yet: slots below this get a new copy beside the
    /// old one, the rest wait.
    gated: u32,
    start_first: bool,
    max_parallel: u32,
    /// The deployment, to tell its allocations.
    deployment: Option<crate::model::Deployment>,
    /// The leader's clock, when it gave one.
    now_ms: Option<u64>,
}

impl Rollout {
    fn of(state: &ClusterState, job: &Job, now_ms: Option<u64>) -> Rollout {
        let update = job.spec.update_policy();
        let d = state
            .deployment_of_current(&job.spec.name)
            .filter(|d| d.status != crate::model::DeploymentStatus::Cancelled);
        Rollout {
            governed: d.is_some(),
            halted: d.is_some_and(|d| {
                !matches!(
                    d.status,
                    crate::model::DeploymentStatus::Running
                        | crate::model::DeploymentStatus::Successful
                )
            }),
            gated: d
                .filter(|d| d.status.is_active() && !d.promoted)
                .map_or(0, |d| d.canaries),
            start_first: update.order == crate::spec::UpdateOrder::StartFirst,
            max_parallel: update.max_parallel.max(1),
            deployment: d.cloned(),
            now_ms,
        }
    }

    /// Whether new allocation `a` counts as healthy for the rollout.
    fn counts(&self, a: &Allocation) -> bool {
        match &self.deployment {
            Some(d) => crate::state::counts_for(a, d),
            None => a.state == AllocState::Running,
        }
    }
}

/// The intent for one job, appended to `out`.
///
/// Per slot, the live copies split into the current version's (new) and older
/// ones (old). Without a deployment an old copy is replaced at once (stopped
/// only when its replacement is placed). Under one, at most `max_parallel`
/// new copies are in flight (placed but not yet counted as healthy); with
/// `stop_first` the old copy stops as its replacement is placed, with
/// `start_first` (and for canaries) only once the replacement counts, and for
/// canaries only once promoted. A paused or failed deployment replaces
/// nothing more; a slot with no copy at all is always filled.
fn job_intent(
    state: &ClusterState,
    job: &Job,
    max_requests: usize,
    now_ms: Option<u64>,
    out: &mut Intent,
) {
    let spec = &job.spec;
    let rollout = Rollout::of(state, job, now_ms);
    let mut by_slot: BTreeMap<u32, Vec<&Allocation>> = BTreeMap::new();
    let mut done_slots = Vec::new();
    for a in state.allocs_of_job(&spec.name) {
        if a.is_live() {
            by_slot.entry(a.slot).or_default().push(a);
        } else if a.state == AllocState::Complete && a.job_version == job.version {
            done_slots.push(a.slot);
        }
    }
    let mut in_flight = in_flight(
        by_slot
            .iter()
            .filter(|(s, _)| **s < spec.replicas)
            .flat_map(|(_, v)| v.iter().copied()),
        job,
        &rollout,
    );
    // Batch `parallelism`: new runs start only while fewer than that many live.
    let mut starts_left = spec
        .parallelism
        .filter(|_| spec.kind == JobKind::Batch)
        .map(|p| p.saturating_sub(by_slot.values().map(|v| v.len() as u32).sum()));
    for slot in 0..spec.replicas {
        let live = by_slot.remove(&slot).unwrap_or_default();
        let done = spec.kind == JobKind::Batch && done_slots.contains(&slot);
        if live.is_empty() && !done {
            match starts_left.as_mut() {
                Some(0) => continue,
                Some(n) => *n -= 1,
                None => {}
            }
        }
        let room = out.requests.len() < max_requests;
        let ctx = SlotCtx {
            state,
            job,
            rollout: &rollout,
            slot,
            pin: None,
            room,
        };
        slot_intent(&ctx, live, done, &mut in_flight, out);
    }
    // Slots past the replica count: the job was scaled down.
    for a in by_slot.into_values().flatten() {
        out.stops.push(stop(a, "job scaled down"));
    }
}

/// What deciding one slot needs to know.
struct SlotCtx<'a> {
    state: &'a ClusterState,
    job: &'a Job,
    rollout: &'a Rollout,
    slot: u32,
    /// The node a system job's slot belongs to.
    pin: Option<&'a crate::model::NodeId>,
    /// Whether this pass may still request placements.
    room: bool,
}

/// The intent for one slot with its live copies (see [`job_intent`]); `done`:
/// a batch slot that completed, to be left alone.
fn slot_intent(
    ctx: &SlotCtx<'_>,
    live: Vec<&Allocation>,
    done: bool,
    in_flight: &mut u32,
    out: &mut Intent,
) {
    let (state, job, rollout, slot, room) = (ctx.state, ctx.job, ctx.rollout, ctx.slot, ctx.room);
    let spec = &job.spec;
    let replaced = |a: &Allocation| stop(a, &format!("replaced by version {}", job.version));
    let (new, old): (Vec<&Allocation>, Vec<&Allocation>) =
        live.iter().partition(|a| a.job_version == job.version);
    let keep_new = pick_keeper(&new, job.version);
    let keep_old = pick_keeper(&old, job.version);
    for a in new.iter().chain(old.iter()).filter(|a| {
        let id = Some(a.id.as_str());
        id != keep_new.map(|k| k.id.as_str()) && id != keep_old.map(|k| k.id.as_str())
    }) {
        out.stops.push(stop(a, "duplicate of its slot"));
    }
    let key = || (spec.name.clone(), slot);
    let request = |existing| SlotRef {
        job: spec.name.clone(),
        version: job.version,
        slot,
        existing,
        replaces: None,
        pin: ctx.pin.cloned(),
    };
    let canary = slot < rollout.gated;
    match (keep_new, keep_old) {
        (None, None) if done => {}
        (None, None) => {
            if room {
                out.requests.push(request(None));
            }
        }
        (Some(n), old) => {
            if let Some(o) = old {
                let wait_for_new = rollout.governed && (rollout.start_first || canary);
                if n.node.is_none() {
                    // Not placed yet: the old copy runs on until it is.
                    if !wait_for_new {
                        out.conditional.push((key(), replaced(o)));
                    }
                } else if !wait_for_new || (rollout.counts(n) && !canary) {
                    out.stops.push(replaced(o));
                }
            }
            tend_current(state, spec, n, room, rollout.now_ms, request, out);
        }
        (None, Some(o)) if o.node.is_none() => {
            out.stops.push(replaced(o));
            if room {
                out.requests.push(request(None));
            }
        }
        (None, Some(o)) if on_draining_node(state, o) => {
            // A drain moves it whatever the rollout says.
            out.stops.push(stop(o, "node is draining"));
            if room {
                out.requests.push(request(None));
            }
        }
        (None, Some(_)) if !room => {}
        (None, Some(o)) if !rollout.governed => {
            out.conditional.push((key(), replaced(o)));
            out.requests.push(request(None));
        }
        (None, Some(_)) if rollout.halted => {}
        (None, Some(_)) if canary => out.requests.push(request(None)),
        (None, Some(_)) if rollout.gated > 0 => {}
        (None, Some(o)) if *in_flight < rollout.max_parallel => {
            *in_flight += 1;
            if !rollout.start_first {
                out.conditional.push((key(), replaced(o)));
            }
            out.requests.push(request(None));
        }
        (None, Some(_)) => {}
    }
}

/// A system job: one allocation per eligible node (schedulable, its tags
/// matching the job's selectors and constraints), in the slot numbered by the
/// node ([`crate::model::Node::seq`]) and pinned to it; rolled out node by
/// node under the same `update` block. A node that stops being eligible
/// (drained, down, tags changed) loses its allocation; one that joins or
/// starts to match gets one.
fn system_intent(
    state: &ClusterState,
    job: &Job,
    max_requests: usize,
    now_ms: Option<u64>,
    out: &mut Intent,
) {
    let spec = &job.spec;
    let mut rollout = Rollout::of(state, job, now_ms);
    // `stagger`: after a node's new allocation came to count, the next node
    // waits this long.
    let stagger = spec.update_policy().stagger.as_millis() as u64;
    if let (Some(now), Some(d)) = (now_ms, rollout.deployment.as_ref()) {
        if d.progress_ms > 0 && now < d.progress_ms.saturating_add(stagger) {
            rollout.halted = true;
        }
    }
    let constraints = spec.all_constraints();
    let mut by_slot: BTreeMap<u32, Vec<&Allocation>> = BTreeMap::new();
    for a in state.allocs_of_job(&spec.name).filter(|a| a.is_live()) {
        by_slot.entry(a.slot).or_default().push(a);
    }
    let mut in_flight = in_flight(by_slot.values().flatten().copied(), job, &rollout);
    for node in state.nodes.values() {
        let live = by_slot.remove(&node.seq).unwrap_or_default();
        let eligible = crate::state::system_eligible(node, &constraints);
        if !eligible {
            let why = if node.draining {
                "node is draining".to_string()
            } else if !node.schedulable() {
                format!("node {} is {}", node.id(), node.status)
            } else {
                format!("node {} no longer matches the job's constraints", node.id())
            };
            for a in live {
                out.stops.push(stop(a, &why));
            }
            continue;
        }
        let ctx = SlotCtx {
            state,
            job,
            rollout: &rollout,
            slot: node.seq,
            pin: Some(node.id()),
            room: out.requests.len() < max_requests,
        };
        slot_intent(&ctx, live, false, &mut in_flight, out);
    }
    // Slots of nodes that are gone.
    for a in by_slot.into_values().flatten() {
        out.stops.push(stop(a, "its node is gone"));
    }
}

/// Looks after a slot's current-version copy: place it if pending, move it
/// off a draining node, replace it once it failed on its node (restarts spent,
/// or repeated failed starts) — unless the job's `reschedule` policy is spent
/// too, when it stays failed with its reason.
fn tend_current(
    state: &ClusterState,
    spec: &crate::spec::JobSpec,
    a: &Allocation,
    room: bool,
    now_ms: Option<u64>,
    request: impl Fn(Option<AllocId>) -> SlotRef,
    out: &mut Intent,
) {
    if a.node.is_none() {
        if room {
            out.requests.push(request(Some(a.id.clone())));
        }
    } else if on_draining_node(state, a) {
        out.stops.push(stop(a, "node is draining"));
        if room {
            out.requests.push(request(None));
        }
    } else if a.should_reschedule() {
        let policy = spec.reschedule_policy();
        // Reschedules within the interval, by the leader's clock (all of them
        // without one).
        let window = policy.interval.as_millis() as u64;
        let recent = match now_ms {
            Some(now) => a
                .reschedule_times_ms
                .iter()
                .filter(|t| now.saturating_sub(**t) < window)
                .count() as u32,
            None => a.reschedules,
        };
        if !policy.unlimited && recent >= policy.attempts {
            // Spent: the slot stays failed, its allocation says why.
            return;
        }
        let why = a.message.as_deref().unwrap_or("no reason given");
        let reason = if a.gave_up {
            format!("replaced: {why}")
        } else {
            format!("replaced after {} failed starts: {why}", a.failures)
        };
        out.stops.push(stop(a, &reason));
        // Its resources stay counted in this plan, so the replacement does not
        // get the same host ports on the same node.
        out.keep_reserved.push(a.id.clone());
        if room {
            out.requests.push(SlotRef {
                replaces: Some(a.id.clone()),
                ..request(None)
            });
        }
    }
}

/// The copy of a slot to keep: current version first, then placed, then running,
/// then the oldest.
fn pick_keeper<'a>(live: &[&'a Allocation], version: u64) -> Option<&'a Allocation> {
    live.iter().copied().max_by_key(|a| {
        (
            a.job_version == version,
            a.node.is_some(),
            a.state == AllocState::Running,
            std::cmp::Reverse(a.create_index),
        )
    })
}

fn on_draining_node(state: &ClusterState, a: &Allocation) -> bool {
    a.node
        .as_ref()
        .and_then(|n| state.nodes.get(n))
        .is_some_and(|n| n.draining)
}

fn stop(a: &Allocation, why: &str) -> StopAlloc {
    StopAlloc {
        id: a.id.clone(),
        reason: why.to_string(),
    }
}

/// One reconcile pass: the intent, scheduled. Unplaced slots whose pending
/// allocation already carries the same reason are left out, so a pass that changes
/// nothing yields an empty plan (and no write).
pub fn plan(
    state: &ClusterState,
    scheduler: &dyn Scheduler,
    max_requests: usize,
    seed: u64,
) -> Plan {
    plan_at(state, scheduler, max_requests, seed, None)
}

/// [`plan`] with the leader's clock (unix ms): what is paced in time — the
/// reschedule policy's `interval`, a system job's `stagger` — is judged by it
/// and the plan carries it. Without one, every reschedule ever made counts
/// and nothing staggers.
pub fn plan_at(
    state: &ClusterState,
    scheduler: &dyn Scheduler,
    max_requests: usize,
    seed: u64,
    now_ms: Option<u64>,
) -> Plan {
    let mut intent = intent_at(state, max_requests, now_ms);
    // The scheduler may count what conditional stops free: a stop is kept
    // below only when its slot's replacement was placed.
    let stopping: Vec<_> = intent
        .stops
        .iter()
        .chain(intent.conditional.iter().map(|(_, s)| s))
        .filter(|s| !intent.keep_reserved.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    let schedule = scheduler.schedule(state, &intent.requests, &stopping, seed);
    let placed: std::collections::HashSet<(&str, u32)> = schedule
        .placements
        .iter()
        .map(|p| (p.slot.job.as_str(), p.slot.slot))
        .collect();
    for ((job, slot), stop) in std::mem::take(&mut intent.conditional) {
        if placed.contains(&(job.as_str(), slot)) {
            intent.stops.push(stop);
        }
    }
    let job_unplaced = job_summaries(state, &schedule);
    let unplaced = schedule
        .unplaced
        .into_iter()
        .filter(|u| {
            let current = u.slot.existing.as_ref().and_then(|id| state.allocs.get(id));
            current.is_none_or(|a| a.message.as_deref() != Some(u.reason.as_str()))
        })
        .collect();
    Plan {
        stops: intent.stops,
        placements: schedule.placements,
        unplaced,
        job_unplaced,
        now_ms: now_ms.unwrap_or(0),
    }
}

/// The one-line summary of each job whose replicas are not all placed after
/// this pass (`12 of 100000 replicas placed; 99988 not: 0/3 nodes: …`), and a
/// clearing for each job that had one and is now placed; only what changes.
fn job_summaries(
    state: &ClusterState,
    schedule: &crate::scheduler::Schedule,
) -> Vec<(String, u64, Option<String>)> {
    let mut placed_now: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &schedule.placements {
        *placed_now.entry(p.slot.job.as_str()).or_default() += 1;
    }
    let mut reasons: BTreeMap<&str, &str> = BTreeMap::new();
    for u in &schedule.unplaced {
        reasons
            .entry(u.slot.job.as_str())
            .or_insert(u.reason.as_str());
    }
    let mut out = Vec::new();
    for job in state.jobs.values() {
        let name = job.spec.name.as_str();
        let want = match reasons.get(name) {
            Some(reason) if job.spec.kind != JobKind::System => {
                let placed = state
                    .job_tally(name)
                    .map_or(0, |t| (t.live() - t.unplaced()) as usize)
                    + placed_now.get(name).copied().unwrap_or(0);
                let replicas = job.spec.replicas as usize;
                let missing = replicas.saturating_sub(placed);
                Some(format!(
                    "{placed} of {replicas} replicas placed; {missing} not: {reason}"
                ))
            }
            Some(reason) => Some(format!("not placed on every eligible node: {reason}")),
            None => None,
        };
        if job.unplaced != want {
            out.push((name.to_string(), job.version, want));
        }
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod deploy_tests;
