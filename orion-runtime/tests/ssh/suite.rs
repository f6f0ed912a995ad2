//! The shared runtime contract (`orion_core::testing::runtime_suite`) holds
//! for `SshRuntime`.

use crate::sshd_or_skip;
use crate::support::task;

/// create/start/stop/kill/remove, listing per owner, duplicate names, the exit
/// feed and unknown ids all behave as the contract says, with `sleep 1000` as
/// the task.
#[tokio::test]
async fn ssh_runtime_passes_the_runtime_suite() {
    let sshd = sshd_or_skip!();
    let rt = sshd.runtime();
    orion_core::testing::runtime_suite::run_all(&rt, "ssh-suite", &task(&["sleep", "1000"]))
        .await
        .expect("the ssh runtime honours the contract");
}
