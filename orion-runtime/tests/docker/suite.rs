//! The shared runtime contract suite, run against the real engine.

use orion_core::testing::runtime_suite;

use crate::ctx_or_skip;
use crate::support::{task, POLITE};

/// `DockerRuntime` passes `orion_core::testing::runtime_suite`, the contract the fake
/// passes too: lifecycle states, list by owner, duplicate names, NotFound for unknown ids.
#[tokio::test]
async fn docker_runtime_passes_the_runtime_suite() {
    let ctx = ctx_or_skip!();
    runtime_suite::run_all(&ctx.rt, &ctx.cluster, &task(POLITE))
        .await
        .expect("the runtime contract holds");
}
