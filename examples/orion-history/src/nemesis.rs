//! Faults, one at a time or two at once, on a seeded schedule: SIGKILL (and a
//! restart with the node's data a few seconds later), SIGSTOP/SIGCONT, a
//! graceful restart, and partitions (the leader isolated, a majority/minority
//! split, a bridge). Every fault is healed before the next round, and all of
//! them before the run's final checks.

use std::time::Duration;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::cluster::Cluster;
use crate::history::Recorder;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a node (the leader half the time); start it again with its
    /// data when the fault heals.
    Kill,
    /// SIGSTOP a node (the leader half the time); SIGCONT when it heals.
    Pause,
    /// SIGTERM a node, wait for it to exit, start it again.
    Restart,
    /// Cut the leader off from every other node.
    IsolateLeader,
    /// Split the nodes into a majority and a minority at random.
    Split,
    /// Two sides that cannot reach each other and one node that reaches
    /// both.
    Bridge,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 6] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Restart,
        Fault::IsolateLeader,
        Fault::Split,
        Fault::Bridge,
    ];

    /// Its name on the command line and in the schedule.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Restart => "restart",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
        }
    }

    /// The fault with this name.
    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    fn is_partition(self) -> bool {
        matches!(self, Fault::IsolateLeader | Fault::Split | Fault::Bridge)
    }
}

/// What a fault left to undo.
enum Undo {
    Start(usize),
    Cont(usize),
    Heal,
    Nothing,
}

/// Runs faults from `faults` until `until` (time since the recorder's start):
/// a quiet spell, one fault (or two at once, a quarter of the time), held for
/// a while, healed. Counts the faults it made in `made`. A node found not
/// running that no fault stopped (it exited on its own: a crash) goes into
/// `crashes` with its exit state and whole log, and is started again.
pub async fn run(
    cluster: &mut Cluster,
    faults: &[Fault],
    seed: u64,
    until: Duration,
    rec: &Recorder,
    made: &mut usize,
    crashes: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e656d65736973);
    if faults.is_empty() {
        tokio::time::sleep(until.saturating_sub(rec.now())).await;
        return Ok(());
    }
    loop {
        let quiet = Duration::from_millis(rng.random_range(1500..4000));
        if rec.now() + quiet + Duration::from_secs(3) > until {
            break;
        }
        tokio::time::sleep(quiet).await;
        for i in 0..cluster.nodes.len() {
            if !cluster.is_running(i).await? {
                let id = cluster.nodes[i].id.clone();
                let state = cluster.exit_state(i).await;
                rec.event(format!(
                    "{id} is not running and no fault stopped it: {state}"
                ));
                crashes.push((id, state, cluster.full_log(i).await));
                cluster.start_node(i).await?;
            }
        }
        let mut now: Vec<Fault> = vec![*faults.choose(&mut rng).unwrap()];
        if faults.len() > 1 && rng.random_bool(0.25) {
            let second = *faults.choose(&mut rng).unwrap();
            // One partition at a time: a second one would merge with the first.
            if !(second.is_partition() && now[0].is_partition()) {
                now.push(second);
            }
        }
        let mut undo = Vec::new();
        let mut touched = Vec::new();
        for f in now {
            undo.push(inject(cluster, f, &mut rng, &mut touched, rec).await?);
            *made += 1;
        }
        let hold = Duration::from_millis(rng.random_range(1000..6000));
        tokio::time::sleep(hold).await;
        for u in undo {
            heal(cluster, u, rec).await?;
        }
    }
    Ok(())
}

async fn pick_target(cluster: &Cluster, rng: &mut StdRng, touched: &[usize]) -> usize {
    let leader = if rng.random_bool(0.5) {
        cluster.leader().await
    } else {
        None
    };
    match leader.filter(|l| !touched.contains(l)) {
        Some(l) => l,
        None => loop {
            let i = rng.random_range(0..cluster.nodes.len());
            if !touched.contains(&i) {
                break i;
            }
        },
    }
}

async fn inject(
    cluster: &mut Cluster,
    fault: Fault,
    rng: &mut StdRng,
    touched: &mut Vec<usize>,
    rec: &Recorder,
) -> Result<Undo> {
    let n = cluster.nodes.len();
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let name = |i: usize| ids[i].clone();
    match fault {
        Fault::Kill => {
            let i = pick_target(cluster, rng, touched).await;
            touched.push(i);
            rec.event(format!("nemesis: SIGKILL {}", name(i)));
            cluster.signal(i, "KILL").await?;
            Ok(Undo::Start(i))
        }
        Fault::Pause => {
            let i = pick_target(cluster, rng, touched).await;
            touched.push(i);
            rec.event(format!("nemesis: SIGSTOP {}", name(i)));
            cluster.signal(i, "STOP").await?;
            Ok(Undo::Cont(i))
        }
        Fault::Restart => {
            let i = pick_target(cluster, rng, touched).await;
            touched.push(i);
            rec.event(format!("nemesis: restart {} (SIGTERM, start)", name(i)));
            cluster.restart(i).await?;
            rec.event(format!("nemesis: {} started again", name(i)));
            Ok(Undo::Nothing)
        }
        Fault::IsolateLeader => {
            let Some(l) = cluster.leader().await else {
                rec.event("nemesis: isolate-leader skipped (no agreed leader)");
                return Ok(Undo::Nothing);
            };
            let rest: Vec<usize> = (0..n).filter(|i| *i != l).collect();
            rec.event(format!("nemesis: isolate the leader {}", name(l)));
            cluster.partition(&[vec![l], rest]).await?;
            Ok(Undo::Heal)
        }
        Fault::Split => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(rng);
            let minority = all.split_off(n.div_ceil(2));
            rec.event(format!(
                "nemesis: split {:?} | {:?}",
                all.iter().map(|i| name(*i)).collect::<Vec<_>>(),
                minority.iter().map(|i| name(*i)).collect::<Vec<_>>()
            ));
            cluster.partition(&[all, minority]).await?;
            Ok(Undo::Heal)
        }
        Fault::Bridge => {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(rng);
            let bridge = all.pop().unwrap();
            let right = all.split_off(all.len() / 2);
            rec.event(format!(
                "nemesis: bridge {} between {:?} and {:?}",
                name(bridge),
                all.iter().map(|i| name(*i)).collect::<Vec<_>>(),
                right.iter().map(|i| name(*i)).collect::<Vec<_>>()
            ));
            cluster.partition(&[all, right]).await?;
            Ok(Undo::Heal)
        }
    }
}

async fn heal(cluster: &mut Cluster, undo: Undo, rec: &Recorder) -> Result<()> {
    match undo {
        Undo::Start(i) => {
            rec.event(format!(
                "nemesis: start {} with its data",
                cluster.nodes[i].id
            ));
            cluster.start_node(i).await
        }
        Undo::Cont(i) => {
            rec.event(format!("nemesis: SIGCONT {}", cluster.nodes[i].id));
            cluster.signal(i, "CONT").await
        }
        Undo::Heal => {
            rec.event("nemesis: heal the partition");
            cluster.heal().await
        }
        Undo::Nothing => Ok(()),
    }
}
