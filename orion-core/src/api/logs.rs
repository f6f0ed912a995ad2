//! Logs as numbered lines: `GET /v1/allocations/{id}/logs` with `Accept:
//! text/event-stream` (Server-Sent Events) or `…/logs/ws` (a WebSocket) sends
//! each line as `{"seq", "stream", "ts_ms", "line"}`, numbered from 1 in the
//! order the runtime keeps them. A client that reconnects with
//! `Last-Event-ID: N` (SSE) or `?from_seq=N` gets the lines after `N`: none
//! missed, none twice, as long as the runtime still keeps them (the engine's
//! log files rotate at 10 MiB × 3). `ts_ms` is when this node read the line.
//! Plain text stays the default.

use std::convert::Infallible;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use super::ApiResult;
use crate::cluster::Cluster;
use crate::runtime::{LogStream, Logs};

/// One line of a task's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Its number, from 1.
    pub seq: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When this node read it, Unix ms.
    pub ts_ms: u64,
    /// The line, without its newline.
    pub line: String,
}

/// Splits a runtime's chunks into numbered lines (a line split across chunks
/// is joined; a last line without a newline comes at the end), skipping those
/// numbered `from_seq` or less.
pub fn numbered(chunks: Logs, from_seq: u64) -> BoxStream<'static, Result<LogLine, String>> {
    struct St {
        chunks: Logs,
        partial: [Vec<u8>; 2],
        ready: std::collections::VecDeque<(usize, Vec<u8>)>,
        seq: u64,
        done: bool,
    }
    let name = |i: usize| if i == 0 { "stdout" } else { "stderr" };
    let st = St {
        chunks,
        partial: [Vec::new(), Vec::new()],
        ready: Default::default(),
        seq: 0,
        done: false,
    };
    futures::stream::unfold(st, move |mut st| async move {
        loop {
            if let Some((i, bytes)) = st.ready.pop_front() {
                st.seq += 1;
                if st.seq <= from_seq {
                    continue;
                }
                let line = LogLine {
                    seq: st.seq,
                    stream: name(i).into(),
                    ts_ms: crate::model::unix_ms(),
                    line: String::from_utf8_lossy(&bytes).into_owned(),
                };
                return Some((Ok(line), st));
            }
            if st.done {
                return None;
            }
            match st.chunks.next().await {
                Some(Ok(chunk)) => {
                    let i = usize::from(chunk.stream == LogStream::Stderr);
                    for b in chunk.data.iter() {
                        if *b == b'\n' {
                            let l = std::mem::take(&mut st.partial[i]);
                            st.ready.push_back((i, l));
                        } else {
                            st.partial[i].push(*b);
                        }
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e.to_string()), st));
                }
                None => {
                    st.done = true;
                    for i in 0..2 {
                        if !st.partial[i].is_empty() {
                            let l = std::mem::take(&mut st.partial[i]);
                            st.ready.push_back((i, l));
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

/// Whether a request asks for Server-Sent Events.
pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The line a client resumes after: `Last-Event-ID`, else `from_seq`.
pub fn resume_from(headers: &HeaderMap, from_seq: Option<u64>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(from_seq)
        .unwrap_or(0)
}

/// The lines as Server-Sent Events: `id` the line's number, `event` its
/// stream, `data` the [`LogLine`] as JSON; an `error` event if the runtime
/// fails mid-way.
pub fn sse(lines: BoxStream<'static, Result<LogLine, String>>) -> Response {
    let events = lines.map(|l| {
        Ok::<_, Infallible>(match l {
            Ok(line) => Event::default()
                .id(line.seq.to_string())
                .event(line.stream.clone())
                .data(serde_json::to_string(&line).unwrap_or_default()),
            Err(e) => Event::default().event("error").data(e),
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The query of `GET /v1/allocations/{id}/logs/ws`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct WsLogParams {
    /// Keep sending as the task writes (default true).
    #[serde(default = "yes")]
    follow: bool,
    /// Send only the lines after this one.
    #[serde(default)]
    from_seq: Option<u64>,
}

fn yes() -> bool {
    true
}

#[utoipa::path(get, path = "/v1/allocations/{id}/logs/ws", tag = "allocations",
    params(("id" = String, Path), WsLogParams),
    responses((status = 101, description = "a WebSocket of text frames, one LogLine each as JSON; closed when the task's output ends"),
              (status = 421, description = "another node runs it: ask node_http", body = super::ErrorBody)))]
pub(super) async fn alloc_logs_ws(
    State(c): State<Cluster>,
    Path(id): Path<String>,
    Query(p): Query<WsLogParams>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let logs = c.logs(&id, p.follow).await?;
    let lines = numbered(logs, p.from_seq.unwrap_or(0));
    Ok(ws.on_upgrade(move |socket| send_lines(socket, lines)))
}

async fn send_lines(mut socket: WebSocket, mut lines: BoxStream<'static, Result<LogLine, String>>) {
    while let Some(l) = lines.next().await {
        let text = match l {
            Ok(line) => serde_json::to_string(&line).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::LogChunk;

    fn chunks(parts: &[(LogStream, &str)]) -> Logs {
        let v: Vec<Result<LogChunk, crate::runtime::RuntimeError>> = parts
            .iter()
            .map(|(s, d)| {
                Ok(LogChunk {
                    stream: *s,
                    data: bytes::Bytes::from(d.to_string()),
                })
            })
            .collect();
        futures::stream::iter(v).boxed()
    }

    async fn lines(parts: &[(LogStream, &str)], from: u64) -> Vec<(u64, String, String)> {
        numbered(chunks(parts), from)
            .map(|l| {
                let l = l.unwrap();
                (l.seq, l.stream, l.line)
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn chunks_become_numbered_lines_and_resume_after_a_number() {
        use LogStream::{Stderr, Stdout};
        let parts = [
            (Stdout, "one\ntw"),
            (Stderr, "oops\n"),
            (Stdout, "o\nthree"),
        ];
        let all = lines(&parts, 0).await;
        let want = [
            (1, "stdout", "one"),
            (2, "stderr", "oops"),
            (3, "stdout", "two"),
            (4, "stdout", "three"),
        ];
        let want: Vec<(u64, String, String)> = want
            .iter()
            .map(|(n, s, l)| (*n, s.to_string(), l.to_string()))
            .collect();
        assert_eq!(all, want);
        assert_eq!(lines(&parts, 2).await, want[2..].to_vec());
        assert!(lines(&parts, 4).await.is_empty());
    }
}
