//! `GET /v1/allocations/{id}/exec/ws`: an interactive command in a task over a
//! WebSocket (`alloc exec -i -t`, like `docker exec -it` and Nomad's
//! `alloc exec`).
//!
//! Query: `command` (a JSON array of strings, URL-encoded) and `tty` (bool).
//! Frames are binary, the first byte naming the channel, as Kubernetes' exec
//! protocol does:
//!
//! | byte | direction | payload |
//! |---|---|---|
//! | 0 | client → node | stdin bytes |
//! | 1 | node → client | stdout (the TTY, with `tty`) |
//! | 2 | node → client | stderr |
//! | 4 | client → node | resize: `{"rows": 24, "cols": 80}` |
//! | 255 | client → node | stdin closed |
//!
//! When the command ends the node sends a text frame `{"exit_code": N}` and
//! closes. Errors before the upgrade (no such allocation; another node runs it,
//! 421 with that node's address) answer as every other endpoint does.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{ApiError, ApiResult};
use crate::cluster::Cluster;
use crate::runtime::{ExecChunk, ExecSession};

/// Channel bytes of the frames.
pub mod channel {
    /// Client → node: stdin bytes.
    pub const STDIN: u8 = 0;
    /// Node → client: stdout.
    pub const STDOUT: u8 = 1;
    /// Node → client: stderr.
    pub const STDERR: u8 = 2;
    /// Client → node: a resize, `{"rows", "cols"}`.
    pub const RESIZE: u8 = 4;
    /// Client → node: stdin is closed.
    pub const CLOSE_STDIN: u8 = 255;
}

#[derive(Deserialize)]
pub(super) struct ExecWsParams {
    command: String,
    #[serde(default)]
    tty: bool,
}

#[derive(Deserialize)]
struct Resize {
    rows: u16,
    cols: u16,
}

#[utoipa::path(get, path = "/v1/allocations/{id}/exec/ws", tag = "allocations",
    params(("id" = String, Path),
           ("command" = String, Query, description = "the command: a JSON array of strings"),
           ("tty" = Option<bool>, Query, description = "allocate a TTY")),
    responses((status = 101, description = "a WebSocket: frames as the module docs say"),
              (status = 421, description = "another node runs it", body = super::ErrorBody)))]
pub(super) async fn alloc_exec_ws(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<ExecWsParams>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, json!({ "error": m }));
    let cmd: Vec<String> = serde_json::from_str(&p.command)
        .map_err(|e| bad(format!("command: a JSON array of strings: {e}")))?;
    if cmd.is_empty() {
        return Err(bad("command: empty".into()));
    }
    let session = c.exec_attach(&id, &cmd, p.tty).await?;
    Ok(ws.on_upgrade(move |socket| pump(c, socket, session)))
}

/// Carries stdin and resizes in, output out, then the exit code.
async fn pump(c: Cluster, socket: WebSocket, session: ExecSession) {
    let (mut tx, mut rx) = socket.split();
    let ExecSession {
        id,
        mut stdin,
        mut output,
    } = session;
    let exec = id.clone();
    let cluster = c.clone();
    let input = async move {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(frame) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match frame.first().copied() {
                Some(channel::STDIN)
                    if stdin.write_all(&frame[1..]).await.is_err()
                        || stdin.flush().await.is_err() =>
                {
                    break
                }
                Some(channel::RESIZE) => {
                    if let Ok(r) = serde_json::from_slice::<Resize>(&frame[1..]) {
                        let _ = cluster.exec_resize(&exec, r.rows, r.cols).await;
                    }
                }
                Some(channel::CLOSE_STDIN) => {
                    let _ = stdin.shutdown().await;
                }
                _ => {}
            }
        }
        // The client went away: let the command see the end of its input.
        let _ = stdin.shutdown().await;
        std::future::pending::<()>().await
    };
    let out = async move {
        while let Some(chunk) = output.next().await {
            let frame = match chunk {
                Ok(ExecChunk::Stdout(b)) => [&[channel::STDOUT][..], &b].concat(),
                Ok(ExecChunk::Stderr(b)) => [&[channel::STDERR][..], &b].concat(),
                Err(_) => break,
            };
            if tx.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let code = exit_code(&c, &id).await;
        let _ = tx
            .send(Message::Text(
                json!({ "exit_code": code }).to_string().into(),
            ))
            .await;
        let _ = tx.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = input => {}
        _ = out => {}
    }
}

/// The exec's exit code, waiting a little for the engine to record it; -1 when
/// it cannot say.
async fn exit_code(c: &Cluster, exec: &str) -> i64 {
    for _ in 0..50 {
        match c.exec_exit_code(exec).await {
            Ok(Some(code)) => return code,
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return -1,
        }
    }
    -1
}
