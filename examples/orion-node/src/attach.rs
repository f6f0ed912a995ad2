//! `orion-node alloc exec -i [-t] ID CMD…`: an interactive command in a task
//! over the API's exec WebSocket (see `orion_core::api::exec_ws`): stdin passed
//! through, output written as it comes, with `-t` a TTY in raw mode whose size
//! follows the terminal's; exits with the command's exit code.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use orion::api::exec_ws::channel;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

/// Runs `command` in allocation `id` attached; returns its exit code.
pub async fn exec(base: &str, id: &str, command: &[String], tty: bool) -> Result<i32> {
    let (socket, via) = connect(base, id, command, tty).await?;
    let (mut tx, mut rx) = socket.split();
    let _raw = if tty { RawMode::enter() } else { None };
    if tty {
        if let Some((rows, cols)) = terminal_size() {
            tx.send(resize(rows, cols)).await.ok();
        }
    }
    let (to_node, mut from_local) = tokio::sync::mpsc::channel::<Message>(64);
    // Stdin, read in a task of its own (tokio reads it on a blocking thread).
    let stdin_tx = to_node.clone();
    let reader = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = stdin_tx
                        .send(Message::Binary(vec![channel::CLOSE_STDIN].into()))
                        .await;
                    break;
                }
                Ok(n) => {
                    let frame = [&[channel::STDIN][..], &buf[..n]].concat();
                    if stdin_tx.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let resizer = tty.then(|| {
        let tx = to_node.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = terminal_size() {
                    if tx.send(resize(rows, cols)).await.is_err() {
                        break;
                    }
                }
            }
        })
    });
    drop(to_node);
    let sender = tokio::spawn(async move {
        while let Some(m) = from_local.recv().await {
            if tx.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut code = None;
    while let Some(msg) = rx.next().await {
        match msg.with_context(|| format!("alloc exec: the connection to {via} broke"))? {
            Message::Binary(frame) => {
                let (out, body): (&mut dyn Write, _) = match frame.first() {
                    Some(&channel::STDERR) => (&mut std::io::stderr(), &frame[1..]),
                    Some(_) => (&mut std::io::stdout(), &frame[1..]),
                    None => continue,
                };
                if out.write_all(body).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                code = v["exit_code"].as_i64();
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    reader.abort();
    sender.abort();
    if let Some(r) = resizer {
        r.abort();
    }
    let code =
        code.ok_or_else(|| anyhow!("alloc exec: {via} closed the session without an exit code"))?;
    Ok(code.clamp(0, 255) as i32)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the session, following a 421 to the node that runs the allocation.
async fn connect(base: &str, id: &str, command: &[String], tty: bool) -> Result<(Socket, String)> {
    let mut base = base.to_string();
    for _ in 0..3 {
        let mut url = reqwest::Url::parse(&format!("{base}/v1/allocations/{id}/exec/ws"))
            .with_context(|| format!("alloc exec: {base} is not a URL"))?;
        url.query_pairs_mut()
            .append_pair("command", &serde_json::to_string(command)?)
            .append_pair("tty", &tty.to_string());
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).ok();
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )?;
        if let Some(t) = crate::client::token() {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}")
                    .parse()
                    .context("the API token is not a valid header")?,
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((socket, _)) => return Ok((socket, base)),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body: Value = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                match (resp.status().as_u16(), body["node_http"].as_str()) {
                    (421, Some(http)) => base = crate::client::base_url(http),
                    (status, _) => bail!(
                        "alloc exec: {}",
                        body["error"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("HTTP {status}"))
                    ),
                }
            }
            Err(e) => bail!("alloc exec: cannot reach the node at {base}: {e}"),
        }
    }
    bail!("alloc exec: the allocation moved while connecting; try again")
}

fn resize(rows: u16, cols: u16) -> Message {
    let body = serde_json::json!({ "rows": rows, "cols": cols }).to_string();
    Message::Binary([&[channel::RESIZE][..], body.as_bytes()].concat().into())
}

/// The terminal's size as (rows, cols), when stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The local terminal in raw mode (keys go to the remote TTY as typed, Ctrl-C
/// included); restored when dropped.
struct RawMode(rustix::termios::Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.0,
        );
    }
}
