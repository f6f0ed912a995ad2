//! The demo workload, built from this very binary so that `orion-node dev`
//! needs nothing beyond Rust and Docker: `orion-node demo-web` serves a page
//! (and `/cgi-bin/env`, the container's environment), and [`ensure_image`]
//! packs this executable with the libraries `ldd` lists into a local image.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orion::image::{self, Rootfs};
use orion::DockerRuntime;

/// The dev cluster's image: this binary serving the demo page.
pub const IMAGE: &str = "orion-dev/web:1";

/// Where the binary sits in the image.
const EXE_IN_IMAGE: &str = "/orion-node";

/// The image's environment variable naming the build of the binary it holds, so
/// a rebuilt binary gets a fresh image.
const BUILD_ENV: &str = "ORION_DEMO_BUILD";

/// The demo job's command in [`IMAGE`].
pub fn command() -> Vec<String> {
    [EXE_IN_IMAGE, "demo-web", "--port", "80", "--dir", "/www"]
        .map(String::from)
        .to_vec()
}

/// Makes sure [`IMAGE`] holds this build of the binary, building it when it is
/// absent or holds another build.
pub async fn ensure_image(docker: &DockerRuntime) -> Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let build = build_id(&exe)?;
    let want = format!("{BUILD_ENV}={build}");
    if let Some(env) = docker.image_env(IMAGE).await? {
        if env.contains(&want) {
            return Ok(());
        }
    }
    let page = format!(
        "<!doctype html>\n<html><head><title>Orion</title></head>\n\
         <body><h1>{}</h1></body></html>\n",
        image::DEMO_GREETING
    );
    let rootfs = Rootfs::with_executable(&exe, EXE_IN_IMAGE)?.file("/www/index.html", page, 0o644);
    let cmd = command()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let changes = [
        format!("CMD [{cmd}]"),
        format!("ENV {want}"),
        "EXPOSE 80/tcp".into(),
        "WORKDIR /".into(),
    ];
    image::import(docker, IMAGE, &rootfs, &changes).await?;
    Ok(())
}

/// Size and modification time of the executable: changes with every build.
fn build_id(exe: &Path) -> Result<String> {
    let meta = std::fs::metadata(exe).with_context(|| format!("reading {}", exe.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}-{mtime}", meta.len()))
}

/// `orion-node demo-web`: serves `dir` on `port` until SIGINT or SIGTERM.
pub async fn serve(port: u16, dir: PathBuf) -> Result<()> {
    let app = Router::new()
        .route("/cgi-bin/env", get(env))
        .fallback(get(file))
        .with_state(dir);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding port {port}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::node::shutdown_signal())
        .await?;
    Ok(())
}

/// The process environment, sorted, as busybox's `env | sort` CGI printed it.
async fn env() -> String {
    let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    vars.sort();
    vars.join("\n") + "\n"
}

/// A file under the served directory; `/` is `index.html`.
async fn file(State(dir): State<PathBuf>, uri: Uri) -> Response {
    let rel = uri.path().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let path = Path::new(rel);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match tokio::fs::read(dir.join(path)).await {
        Ok(body) => {
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("txt") => "text/plain; charset=utf-8",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
