//! What the executor's tests share.

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
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// Whether the engine answers: panics under `CI=true` when it does not,
/// else says SKIP; builds the demo image.
pub async fn engine(docker: &orion::DockerRuntime) -> bool {
    if let Err(e) = orion::Runtime::ping(docker).await {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("docker engine unreachable and CI=true: {e}");
        }
        eprintln!("SKIP: docker engine unreachable: {e}");
        return false;
    }
    orion::image::ensure_demo_image(docker, orion::image::DEMO_IMAGE)
        .await
        .expect("the demo image");
    true
}
