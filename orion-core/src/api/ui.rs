//! The web dashboard: `GET /ui` and its files, embedded in the binary (plain
//! HTML, CSS and JavaScript from `orion-core/ui/`, no build step). The page
//! reads only the public API and the event stream.
//!
//! To work on the dashboard without rebuilding, point `ORION_UI_DIR` at the
//! `orion-core/ui` directory: files are then read from there on every request.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The embedded files: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
];

/// `GET /`: to the dashboard.
pub(crate) async fn root() -> Redirect {
    Redirect::temporary("/ui/")
}

/// `GET /ui`: the dashboard's page.
pub(crate) async fn index() -> Response {
    file("index.html")
}

/// `GET /ui/{file}`: one of its files.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    file(if name.is_empty() { "index.html" } else { &name })
}

fn file(name: &str) -> Response {
    let Some((_, ctype, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no such dashboard file: {name}") })),
        )
            .into_response();
    };
    let body = match std::env::var_os("ORION_UI_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .unwrap_or_else(|_| embedded.to_string()),
        None => embedded.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, *ctype),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}
