//! A three-manager cluster in one process, over the HTTP transport on 127.0.0.1.

use std::collections::BTreeSet;
use std::time::Instant;

use orion_core::{Command, JobSpec, Leadership, NodeRole, Store};
use orion_store::{Engine, RaftStore};

use crate::{init_tracing, start_node, start_single, state_of, wait_applied, WAIT};

fn upsert(name: &str) -> Command {
    Command::UpsertJob {
        spec: JobSpec::service(name, "nginx"),
    }
}

/// The voters' ids, sorted.
pub fn voter_ids(store: &RaftStore) -> BTreeSet<String> {
    store.voters().into_iter().map(|p| p.id).collect()
}

/// Waits until `store` sees a leadership matching `pred`.
pub async fn wait_leadership(store: &RaftStore, pred: impl Fn(&Leadership) -> bool) -> Leadership {
    let mut rx = store.leadership();
    let seen = tokio::time::timeout(WAIT, async {
        rx.wait_for(|l| pred(l)).await.map(|l| l.clone())
    })
    .await
    .unwrap_or_else(|_| panic!("{store:?}: leadership not reached within {WAIT:?}"));
    seen.expect("leadership watch open")
}

/// Managers elect a leader, replicate, forward a follower's writes and reads, keep
/// membership calls idempotent, survive the leader shutting down (a new leader takes
/// writes), and a worker added as a learner receives the whole state without voting.
/// Engines are mixed on purpose: they only differ below the Raft log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_replicate_forward_and_fail_over() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start_single("n1", &root.path().join("n1"), Engine::Sled, |_| {}).await;
    let n2 = start_node("n2", &root.path().join("n2"), Engine::Redb, |_| {}).await;
    let n3 = start_node("n3", &root.path().join("n3"), Engine::Sled, |_| {}).await;
    n1.store
        .add_peer(n2.peer(NodeRole::Manager))
        .await
        .expect("add n2");
    n1.store
        .add_peer(n3.peer(NodeRole::Manager))
        .await
        .expect("add n3");
    let all: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();
    assert_eq!(voter_ids(&n1.store), all);

    // Everyone agrees n1 leads, and knows its HTTP address.
    for n in [&n2, &n3] {
        let l = wait_leadership(&n.store, |l| l.leader.as_deref() == Some("n1")).await;
        assert_eq!(l.leader_http.as_deref(), Some(n1.config.http_addr.as_str()));
        assert!(!l.is_self);
    }

    // A leader's write reaches every replica.
    let a = n1
        .store
        .propose(upsert("web"))
        .await
        .expect("propose on leader");
    wait_applied(&n2.store, a.index).await;
    wait_applied(&n3.store, a.index).await;
    assert_eq!(state_of(&n2.store), state_of(&n1.store));

    // A follower's write is forwarded, and applied locally before propose returns.
    let b = n2
        .store
        .propose(upsert("api"))
        .await
        .expect("forwarded propose");
    assert!(b.index > a.index);
    assert!(n2.store.replica().read(|s| s.jobs.contains_key("api")));
    // A follower's read barrier makes its replica current.
    n3.store.read_barrier().await.expect("read barrier");
    assert!(n3.store.replica().read(|s| s.jobs.contains_key("api")));

    // Membership calls are idempotent, also when forwarded.
    n3.store
        .add_peer(n2.peer(NodeRole::Manager))
        .await
        .expect("re-add");
    assert_eq!(voter_ids(&n1.store), all);

    // The leader goes away; the other two elect a new one and take writes.
    let lost = Instant::now();
    n1.store.shutdown().await.expect("shutdown n1");
    println!("leader shutdown took {:?}", lost.elapsed());
    let l = wait_leadership(&n2.store, |l| {
        l.leader.as_deref().is_some_and(|x| x != "n1")
    })
    .await;
    println!(
        "failover: new leader {:?} after {:?}",
        l.leader,
        lost.elapsed()
    );
    let (leader, follower) = if l.leader.as_deref() == Some("n2") {
        (&n2, &n3)
    } else {
        (&n3, &n2)
    };
    let c = leader
        .store
        .propose(upsert("after"))
        .await
        .expect("propose on new leader");
    let d = follower
        .store
        .propose(upsert("after-2"))
        .await
        .expect("forwarded to new leader");
    assert!(d.index > c.index && c.index > b.index);

    // A worker joins (asked through a follower) as a learner: state, but no vote.
    let n4 = start_node("n4", &root.path().join("n4"), Engine::Redb, |_| {}).await;
    follower
        .store
        .add_peer(n4.peer(NodeRole::Worker))
        .await
        .expect("add worker");
    assert!(!voter_ids(&leader.store).contains("n4"));
    wait_applied(&n4.store, d.index).await;
    assert_eq!(state_of(&n4.store), state_of(&leader.store));
    // Its writes are forwarded too.
    let e = n4
        .store
        .propose(upsert("from-worker"))
        .await
        .expect("worker propose");
    wait_applied(&leader.store, e.index).await;

    // The dead voter is removed; two voters remain.
    leader
        .store
        .remove_peer(&"n1".to_string())
        .await
        .expect("remove n1");
    let two: BTreeSet<String> = [
        leader.config.node_id.clone(),
        follower.config.node_id.clone(),
    ]
    .into();
    assert_eq!(voter_ids(&leader.store), two);
    for n in [n2, n3, n4] {
        n.store.shutdown().await.expect("shutdown");
    }
}

/// A leader left without a majority (both followers gone) says so in its
/// leadership, refuses writes without appending them, and does so at once once
/// the silence has lasted an RPC timeout, instead of waiting out the propose
/// budget. A leader alone in a one-voter group is never "cut off", however idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_majority_refuses_writes_at_once() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start_single("n1", &root.path().join("n1"), Engine::Redb, |_| {}).await;
    // Alone and idle for longer than the quorum window: still takes writes.
    tokio::time::sleep(n1.config.quorum_lost_after() * 2).await;
    assert!(!n1.store.leadership().borrow().quorum_lost);
    n1.store
        .propose(upsert("solo"))
        .await
        .expect("a lone voter writes");

    let n2 = start_node("n2", &root.path().join("n2"), Engine::Redb, |_| {}).await;
    let n3 = start_node("n3", &root.path().join("n3"), Engine::Redb, |_| {}).await;
    for n in [&n2, &n3] {
        n1.store
            .add_peer(n.peer(NodeRole::Manager))
            .await
            .expect("add");
    }
    n1.store
        .propose(upsert("web"))
        .await
        .expect("with a quorum");
    tokio::time::sleep(n1.config.quorum_lost_after() * 2).await;
    assert!(
        !n1.store.leadership().borrow().quorum_lost,
        "idle, followers answering heartbeats"
    );

    let cut = Instant::now();
    n2.store.shutdown().await.expect("shutdown n2");
    n3.store.shutdown().await.expect("shutdown n3");
    let l = wait_leadership(&n1.store, |l| l.quorum_lost).await;
    assert!(l.is_self, "still the leader as far as it can tell: {l:?}");
    let noticed = cut.elapsed();
    println!("quorum lost noticed after {noticed:?}");
    // Counted from the last acknowledged heartbeat, a little before the cut.
    assert!(noticed + n1.config.heartbeat_interval * 2 >= n1.config.quorum_lost_after());

    // Past an RPC timeout of silence a write is refused at once, and not appended.
    let quiet_until = Instant::now() + n1.config.rpc_timeout + n1.config.quorum_lost_after();
    tokio::time::sleep_until(quiet_until.into()).await;
    let before = n1.store.log_status().last_log_index;
    let asked = Instant::now();
    let err = n1
        .store
        .propose(upsert("ghost"))
        .await
        .expect_err("no majority, no write");
    let took = asked.elapsed();
    println!("refused after {took:?}: {err}");
    assert!(err.to_string().contains("no majority"), "{err}");
    // Refused at once, not after the 10 s propose timeout (generous: other
    // node processes share the machine's 2 cores).
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert_eq!(
        n1.store.log_status().last_log_index,
        before,
        "nothing appended"
    );
    assert!(!n1.store.replica().read(|s| s.jobs.contains_key("ghost")));
    n1.store.shutdown().await.expect("shutdown n1");
}

/// A follower whose leader has lost its quorum still sees that leader, but
/// the entries it received wait uncommitted: its status says for how long
/// (what `/health` turns into "the store cannot commit").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_cannot_commit_are_reported_waiting() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    // n1 takes writes for 6 s after it last heard a quorum (twice its longest
    // election timeout), so shutting three followers down leaves time to
    // append one it cannot commit.
    let n1 = start_single("n1", &root.path().join("n1"), Engine::Redb, |c| {
        c.election_timeout_min = std::time::Duration::from_secs(2);
        c.election_timeout_max = std::time::Duration::from_secs(3);
        c.max_voters = 5;
    })
    .await;
    let mut rest = Vec::new();
    for id in ["n2", "n3", "n4", "n5"] {
        let n = start_node(id, &root.path().join(id), Engine::Redb, |_| {}).await;
        n1.store
            .add_peer(n.peer(NodeRole::Manager))
            .await
            .expect("add");
        rest.push(n);
    }
    let a = n1.store.propose(upsert("web")).await.expect("propose");
    wait_applied(&rest[0].store, a.index).await;
    wait_status(&rest[0].store, "n2 caught up, nothing waiting", |s| {
        s.unapplied == 0 && s.commit_stalled_ms == 0
    })
    .await;

    // Three of five gone: n1 still leads n2, and a write it takes at once is
    // appended on both and never commits.
    let gone: Vec<_> = rest.drain(1..).collect();
    for n in &gone {
        n.store.shutdown().await.expect("shutdown");
    }
    let leader = n1.store.clone();
    let write = tokio::spawn(async move { leader.propose(upsert("stuck")).await });
    let n2 = &rest[0];
    let s = wait_status(&n2.store, "n2's entries wait", |s| {
        s.unapplied >= 1 && s.commit_stalled_ms >= 1_500
    })
    .await;
    println!("n2 waiting: {s:?}");
    assert_eq!(
        n2.store.leadership().borrow().leader.as_deref(),
        Some("n1"),
        "n2 still sees its leader"
    );
    assert!(!n2.store.replica().read(|s| s.jobs.contains_key("stuck")));
    let err = write
        .await
        .expect("join")
        .expect_err("no quorum, no commit");
    println!("the write: {err}");
    drop(gone);
    n2.store.shutdown().await.expect("shutdown n2");
    n1.store.shutdown().await.expect("shutdown n1");
}

/// Waits until `store`'s status matches `pred`, polling (openraft reports
/// replication progress through its metrics, a little after the fact).
async fn wait_status(
    store: &RaftStore,
    what: &str,
    pred: impl Fn(&orion_core::StoreStatus) -> bool,
) -> orion_core::StoreStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = store.status();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: last status {s:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The leader's status says how far each other voter trails, a follower's says
/// only its own unapplied entries; a follower that goes away falls behind by
/// the writes it missed, and `lag` is the worst of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_how_far_each_follower_trails() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let n1 = start_single("n1", &root.path().join("n1"), Engine::Redb, |_| {}).await;
    let n2 = start_node("n2", &root.path().join("n2"), Engine::Redb, |_| {}).await;
    let n3 = start_node("n3", &root.path().join("n3"), Engine::Redb, |_| {}).await;
    for n in [&n2, &n3] {
        n1.store
            .add_peer(n.peer(NodeRole::Manager))
            .await
            .expect("add");
    }
    let a = n1.store.propose(upsert("web")).await.expect("propose");
    let s = wait_status(&n1.store, "followers caught up", |s| {
        s.followers_behind.len() == 2 && s.lag() == 0
    })
    .await;
    assert!(
        s.last_log_index >= a.index && s.applied_index >= a.index,
        "{s:?}"
    );
    assert_eq!(
        s.followers_behind.keys().cloned().collect::<BTreeSet<_>>(),
        ["n2", "n3"].map(String::from).into()
    );
    wait_applied(&n2.store, a.index).await;
    let f = n2.store.status();
    assert!(
        f.followers_behind.is_empty(),
        "a follower cannot know: {f:?}"
    );
    assert_eq!(f.unapplied, f.last_log_index - f.applied_index);

    n3.store.shutdown().await.expect("shutdown n3");
    let mut last = 0;
    for i in 0..5 {
        last = n1
            .store
            .propose(upsert(&format!("missed-{i}")))
            .await
            .expect("n1 and n2 are a majority")
            .index;
    }
    let s = wait_status(&n1.store, "n3 trails, n2 does not", |s| {
        s.followers_behind.get("n2") == Some(&0)
            && s.followers_behind.get("n3").is_some_and(|b| *b >= 5)
    })
    .await;
    assert!(s.lag() >= 5 && s.last_log_index >= last, "{s:?}");
    for n in [n1, n2] {
        n.store.shutdown().await.expect("shutdown");
    }
}
