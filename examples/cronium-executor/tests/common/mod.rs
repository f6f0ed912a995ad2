//! What the executor's tests share.

use orion_core::testing::{OutputWithin, DOCKER_CALL};

/// Removes the test node's containers when dropped, also on failure.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=orion.node={}", self.0),
            ])
            .output_within(DOCKER_CALL);
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output_within(DOCKER_CALL);
            }
        }
    }
}

/// Whether the engine answers: panics under CI (`CI` set, as `true` or `1`) when it does not,
/// else says SKIP; builds the demo image.
pub async fn engine(docker: &orion::DockerRuntime) -> bool {
    let ping = tokio::time::timeout(DOCKER_CALL, orion::Runtime::ping(docker)).await;
    let ping = ping.unwrap_or_else(|_| {
        panic!("the docker engine hung: no ping answer within {DOCKER_CALL:?}")
    });
    if let Err(e) = ping {
        if orion_core::testing::in_ci() {
            panic!("docker engine unreachable in CI: {e}");
        }
        eprintln!("SKIP: docker engine unreachable: {e}");
        return false;
    }
    tokio::time::timeout(
        DOCKER_CALL,
        orion::image::ensure_demo_image(docker, orion::image::DEMO_IMAGE),
    )
    .await
    .expect("the docker engine hung building the demo image")
    .expect("the demo image");
    true
}
