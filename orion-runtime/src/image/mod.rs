//! Local images without a registry: a rootfs built in memory from a static busybox,
//! imported into the engine as a tagged image.
//!
//! A plain rootfs tarball is imported with the engine's image-create endpoint
//! (`fromSrc=-`, the tarball as the body), as `docker import` does; the image-load
//! endpoint takes `docker save` archives instead.

mod exe;
mod rootfs;

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::TryStreamExt;
use orion_core::RuntimeError;
use tokio::sync::Mutex;
use tracing::info;

pub use rootfs::{find_busybox, ImageError, Rootfs, APPLETS, BUSYBOX_ENV, BUSYBOX_PATHS};

use crate::docker::DockerRuntime;

/// The demo web workload's image: busybox `httpd` serving `/www` on port 80.
pub const DEMO_IMAGE: &str = "orion-test/web:1";

/// What the demo image's index page says.
pub const DEMO_GREETING: &str = "Hello from Orion";

/// The demo image's default command: `httpd -f -p 80 -h /www`, in the foreground.
pub const DEMO_COMMAND: &[&str] = &["/bin/httpd", "-f", "-p", "80", "-h", "/www"];

/// Serialises image builds within the process, so that parallel tests do not import
/// the same tag at once.
static BUILD_LOCK: Mutex<()> = Mutex::const_new(());

/// Imports a rootfs as image `tag` (`name:tag`), applying Dockerfile-style `changes`
/// (`CMD [...]`, `ENV K=V`, `EXPOSE 80`, `WORKDIR /`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use orion_runtime::{image::{self, Rootfs}, DockerRuntime};
///
/// let docker = DockerRuntime::connect_local()?;
/// let rootfs = Rootfs::busybox()?.file("/hello.txt", "hi\n", 0o644);
/// image::import(&docker, "orion-test/hello:1", &rootfs, &[r#"CMD ["/bin/cat", "/hello.txt"]"#.into()]).await?;
/// # Ok(())
/// # }
/// ```
pub async fn import(
    runtime: &DockerRuntime,
    tag: &str,
    rootfs: &Rootfs,
    changes: &[String],
) -> Result<(), RuntimeError> {
    let image_error = |reason: String| RuntimeError::Image {
        image: tag.to_string(),
        reason,
    };
    let tarball = rootfs
        .to_tar()
        .map_err(|e| image_error(format!("cannot build its rootfs: {e}")))?;
    let (repo, version) = crate::docker::ops::split_reference(tag);
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(version)
        .changes(changes.to_vec())
        .build();
    let docker = runtime.client().await?;
    let body = bollard::body_full(tarball.into());
    docker
        .create_image(Some(options), Some(body), None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(|e| match crate::docker::error::general("import image", e) {
            RuntimeError::Engine { source, .. } => image_error(format!("import failed: {source}")),
            other => other,
        })?;
    info!(image = tag, "image imported");
    Ok(())
}

/// Makes sure image `tag` is present, building it with `build` and importing it when
/// it is not. Builds within one process are serialised.
pub async fn ensure_built(
    runtime: &DockerRuntime,
    tag: &str,
    build: impl FnOnce() -> Result<Rootfs, ImageError>,
    changes: &[String],
) -> Result<(), RuntimeError> {
    let _guard = BUILD_LOCK.lock().await;
    if runtime.has_image(tag).await? {
        return Ok(());
    }
    let rootfs = build().map_err(|e| RuntimeError::Image {
        image: tag.to_string(),
        reason: format!("cannot build its rootfs: {}", error_text(&e)),
    })?;
    import(runtime, tag, &rootfs, changes).await
}

/// The demo web rootfs: busybox, `/www/index.html` saying [`DEMO_GREETING`], and a CGI
/// script `/www/cgi-bin/env` that prints the container's environment.
pub fn demo_rootfs() -> Result<Rootfs, ImageError> {
    let page = format!(
        "<!doctype html>\n<html><head><title>Orion</title></head>\n\
         <body><h1>{DEMO_GREETING}</h1></body></html>\n"
    );
    let cgi = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nenv | sort\n";
    Ok(Rootfs::busybox()?
        .file("/www/index.html", page, 0o644)
        .file("/www/cgi-bin/env", cgi, 0o755))
}

/// The demo image's Dockerfile-style settings: its default command, `PATH` and port.
pub fn demo_changes() -> Vec<String> {
    let cmd = DEMO_COMMAND
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        format!("CMD [{cmd}]"),
        "ENV PATH=/bin".to_string(),
        "EXPOSE 80/tcp".to_string(),
        "WORKDIR /".to_string(),
    ]
}

/// Makes sure the demo web image is present as `tag` (normally [`DEMO_IMAGE`]), building
/// it from the local busybox when it is not.
///
/// ```no_run
/// # async fn demo() -> Result<(), orion_core::RuntimeError> {
/// use orion_runtime::{image, DockerRuntime};
/// let docker = DockerRuntime::connect_local()?;
/// image::ensure_demo_image(&docker, image::DEMO_IMAGE).await?;
/// # Ok(())
/// # }
/// ```
pub async fn ensure_demo_image(runtime: &DockerRuntime, tag: &str) -> Result<(), RuntimeError> {
    ensure_built(runtime, tag, demo_rootfs, &demo_changes()).await
}

/// An error and its causes on one line.
fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    crate::docker::error::source_chain(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_changes_set_the_httpd_command() {
        let changes = demo_changes();
        assert_eq!(
            changes[0],
            r#"CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]"#
        );
    }

    #[test]
    fn demo_rootfs_has_page_and_cgi() {
        let Ok(rootfs) = demo_rootfs() else {
            assert!(
                !orion_core::testing::in_ci(),
                "busybox-static is needed in CI: .ci/run installs it"
            );
            eprintln!("SKIP: no busybox on this host");
            return;
        };
        let paths: Vec<&str> = rootfs.paths().collect();
        assert!(paths.contains(&"www/index.html"));
        assert!(paths.contains(&"www/cgi-bin/env"));
        assert!(paths.contains(&"bin/httpd"));
    }
}
