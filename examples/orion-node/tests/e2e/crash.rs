//! Crash consistency (issue 15): a node SIGKILLed in the middle of a stream of
//! writes, 50 times over, restarts every time with every acknowledged write and
//! a log that openraft takes (it elects itself and commits again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use crate::support::*;

const WRITERS: usize = 4;
const NAMES_PER_WRITER: usize = 5;

/// A job no node can place (its selector matches nothing): the stream writes
/// to the store only, no container starts. `restart.attempts` carries the
/// writer's counter.
fn spec(name: &str, value: u64) -> Value {
    json!({
        "name": name,
        "replicas": 1,
        "node_selectors": {"crash-test": "no-such-node"},
        "task": {
            "image": orion_runtime::image::DEMO_IMAGE,
            "command": ["sleep", "3600"],
            "resources": {"cpu": 0.05, "memory_mb": 16}
        },
        "restart": {"attempts": value}
    })
}

/// Per job: the last value acknowledged and the last value sent.
type Ledger = Arc<Mutex<BTreeMap<String, (u64, u64)>>>;

async fn writer(addr: String, w: usize, ledger: Ledger, acked: Arc<AtomicBool>) {
    let client = http();
    let mut k = 0;
    loop {
        let name = format!("w{w}-{}", k % NAMES_PER_WRITER);
        k += 1;
        let value = {
            let mut l = ledger.lock().unwrap();
            let e = l.entry(name.clone()).or_insert((0, 0));
            e.1 = e.1.max(e.0) + 1;
            e.1
        };
        let sent = client
            .post(format!("{addr}/v1/jobs"))
            .timeout(Duration::from_secs(5))
            .json(&spec(&name, value))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                ledger.lock().unwrap().get_mut(&name).unwrap().0 = value;
                acked.store(true, Ordering::SeqCst);
            }
            Ok(r) => panic!("write {name}={value} refused: {}", r.status()),
            // The node died under it: the stream ends here.
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_nines_under_writes_lose_no_acknowledged_write() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec_ = NodeSpec::new(&node_id("e2e-crash"), dir.path());
    let _cleanup = Containers(vec![spec_.id.clone()]);
    let ledger: Ledger = Arc::default();
    let mut rng = rand::rng();
    let mut acked_total = 0u64;
    for round in 0..50 {
        let mut node = Node::start_ready(&spec_).await;
        let addr = spec_.addr();
        // Every acknowledged write of the rounds before is there, at the
        // value acknowledged or at the one in flight when the node died.
        wait_for(
            &format!("round {round}: the node to lead and read"),
            Duration::from_secs(60),
            async || get_json(&format!("{addr}/v1/jobs?consistent=true")).await,
        )
        .await;
        let names: Vec<String> = ledger.lock().unwrap().keys().cloned().collect();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for name in names {
            let r = http()
                .get(format!("{addr}/v1/jobs/{name}?consistent=true"))
                .send()
                .await
                .unwrap();
            if r.status() == 404 {
                continue;
            }
            let j: Value = r.json().await.unwrap();
            seen.insert(name, j["spec"]["restart"]["attempts"].as_u64().unwrap());
        }
        {
            let mut l = ledger.lock().unwrap();
            for (name, (acked, sent)) in l.iter_mut() {
                let got = seen.get(name).copied();
                if *acked > 0 {
                    assert!(
                        got == Some(*acked) || got == Some(*sent),
                        "round {round}: {name} acknowledged at {acked} (last sent {sent}) reads {got:?}\n{}",
                        node.log()
                    );
                }
                // What the store holds is now the truth to build on.
                if let Some(v) = got {
                    *acked = v;
                    *sent = v;
                }
            }
        }
        let acked = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(addr.clone(), w, ledger.clone(), acked.clone())))
            .collect();
        // The restarted log takes new writes (openraft accepted it), then
        // the node dies at a random point of the stream.
        wait_for(
            &format!("round {round}: a write acknowledged after the restart"),
            Duration::from_secs(30),
            async || acked.load(Ordering::SeqCst).then_some(()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..400))).await;
        node.kill9();
        for w in writers {
            w.await.expect("a writer panicked");
        }
        acked_total = ledger.lock().unwrap().values().map(|(a, _)| *a).sum();
    }
    println!("50 kill -9s; acknowledged counters summed: {acked_total}");
    assert!(
        acked_total >= 50,
        "the stream wrote too little: {acked_total}"
    );
}
