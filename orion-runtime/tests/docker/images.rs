//! Images: the missing-image error, API negotiation, and rootfs import.

use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use orion_core::runtime::{Runtime, RuntimeError};
use orion_runtime::image::{self, Rootfs};

use crate::ctx_or_skip;
use crate::support::{engine, task};

/// `ensure_image` of an image that is neither local nor pullable (no registry answers)
/// fails promptly with `RuntimeError::Image` naming the image and the cause.
#[tokio::test]
async fn a_missing_image_is_an_image_error_naming_it() {
    let Some(rt) = engine().await else { return };
    let missing = "orion-test/does-not-exist:1";
    let started = Instant::now();
    let err = rt.ensure_image(missing).await.unwrap_err();
    assert!(
        started.elapsed() < rt.config().pull_timeout + Duration::from_secs(5),
        "bounded by the pull timeout"
    );
    match &err {
        RuntimeError::Image { image, reason } => {
            assert_eq!(image, missing);
            assert!(reason.contains("pull"), "{reason}");
        }
        other => panic!("want an image error, got {other}"),
    }
    assert!(err.to_string().contains(missing), "{err}");
}

/// Creating a container of an image that is not present is an image error too, not an
/// engine failure.
#[tokio::test]
async fn create_of_a_missing_image_is_an_image_error() {
    let ctx = ctx_or_skip!();
    let mut spec = task(&[]);
    spec.image = "orion-test/does-not-exist:1".into();
    let err = ctx.rt.create(&ctx.launch("n1", spec)).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Image { .. }), "{err}");
}

/// The client negotiates the API version down to the engine's (bollard defaults to a
/// newer one than this engine speaks), and present images need no pull.
#[tokio::test]
async fn api_version_is_negotiated_with_the_engine() {
    let ctx = ctx_or_skip!();
    let engine_api = Docker::connect_with_local_defaults()
        .expect("connect")
        .version()
        .await
        .expect("version")
        .api_version
        .expect("api version");
    let ours = ctx.rt.api_version().await.expect("api version");
    let as_pair = |v: &str| {
        let (major, minor) = v.split_once('.').expect("major.minor");
        (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap())
    };
    assert!(
        as_pair(&ours) <= as_pair(&engine_api),
        "{ours} > {engine_api}"
    );
    ctx.rt
        .ensure_image(image::DEMO_IMAGE)
        .await
        .expect("a local image is ensured without a registry");
}

/// A rootfs built in memory imports as a tagged image whose files a container sees.
#[tokio::test]
async fn an_in_memory_rootfs_imports_as_a_runnable_image() {
    let ctx = ctx_or_skip!();
    let tag = "orion-test/rootfs-import:1";
    let docker = Docker::connect_with_local_defaults().expect("connect");
    let _ = docker
        .remove_image(
            tag,
            Some(RemoveImageOptionsBuilder::new().force(true).build()),
            None,
        )
        .await;
    assert!(!ctx.rt.has_image(tag).await.expect("has_image"));
    let rootfs = Rootfs::busybox()
        .expect("busybox")
        .file("/hello.txt", "made in memory\n", 0o644);
    image::import(
        &ctx.rt,
        tag,
        &rootfs,
        &["CMD [\"/bin/cat\", \"/hello.txt\"]".into()],
    )
    .await
    .expect("import");
    assert!(ctx.rt.has_image(tag).await.expect("has_image"));

    let mut spec = task(&[]);
    spec.image = tag.into();
    let id = ctx.run(&ctx.launch("n1", spec)).await;
    let mut logs = ctx.rt.logs(&id, true).await.expect("logs");
    let mut out = Vec::new();
    while let Some(chunk) = logs.next().await {
        out.extend_from_slice(&chunk.expect("chunk").data);
    }
    assert_eq!(String::from_utf8_lossy(&out), "made in memory\n");
}
