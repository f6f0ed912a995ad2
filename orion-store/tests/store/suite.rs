//! The shared store contract (`orion_core::testing::store_suite`) on both engines.

use orion_core::testing::store_suite;
use orion_store::Engine;

use crate::{init_tracing, start_single};

async fn run_suite(engine: Engine) {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let mut n = 0;
    store_suite::run(|| {
        n += 1;
        let dir = root.path().join(format!("case-{n}"));
        async move { start_single("n1", &dir, engine, |_| {}).await.store }
    })
    .await;
}

/// RaftStore over sled behaves as the contract says (as MemStore does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_the_store_suite() {
    run_suite(Engine::Sled).await;
}

/// RaftStore over redb behaves as the contract says (as MemStore does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_the_store_suite() {
    run_suite(Engine::Redb).await;
}
