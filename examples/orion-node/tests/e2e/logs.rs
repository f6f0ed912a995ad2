//! Live logs on the real engine: a task prints 100,000 numbered lines; a
//! client reading them as Server-Sent Events disconnects and resumes with
//! `Last-Event-ID` three times, and the WebSocket resumes with `?from_seq`:
//! each line arrives exactly once, in order, with its stream.

use std::time::Duration;

use futures::StreamExt;
use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

/// Reads SSE log events from `from` until `stop_after` lines or `last`;
/// returns the lines' (seq, text).
async fn read_sse(url: &str, from: u64, stop_after: usize, last: u64) -> Vec<(u64, String)> {
    let http = reqwest::Client::new();
    let mut req = http.get(url).header("accept", "text/event-stream");
    if from > 0 {
        req = req.header("last-event-id", from.to_string());
    }
    let mut r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v["stream"] == "stdout" || v["line"] == "two", "{v}");
            let id: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(v["seq"].as_u64(), Some(id));
            out.push((id, v["line"].as_str().unwrap().to_string()));
            if out.len() >= stop_after || id >= last {
                return out; // drops the connection
            }
        }
    }
    out
}

#[tokio::test]
async fn numbered_lines_resume_exactly_once_over_sse_and_websocket() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-logs").await;
    let addr = solo.addr.clone();
    let job = json!({
        "name": "lines",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", "seq 1 100000; sleep 120"],
            "resources": { "cpu": 0.2, "memory_mb": 32 }
        }
    });
    submit(&addr, &job).await.unwrap();
    let alloc = running_alloc(&addr, "lines", Duration::from_secs(60)).await;
    let url = format!("{addr}/v1/allocations/{alloc}/logs?follow=true");
    let mut got: Vec<(u64, String)> = Vec::new();
    // Three disconnects, then to the end.
    for _ in 0..3 {
        let from = got.last().map_or(0, |l| l.0);
        got.extend(read_sse(&url, from, 25_000, 100_000).await);
    }
    let from = got.last().unwrap().0;
    got.extend(read_sse(&url, from, usize::MAX, 100_000).await);
    assert_eq!(got.len(), 100_000);
    for (i, (seq, line)) in got.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!((*seq, line.as_str()), (n, n.to_string().as_str()), "at {i}");
    }

    // The WebSocket, from line 99,990.
    let ws_url = format!(
        "{}/v1/allocations/{alloc}/logs/ws?from_seq=99990",
        addr.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 10 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
            assert_eq!(v["line"], v["seq"].to_string());
        }
    }
    assert_eq!(seqs, (99_991..=100_000).collect::<Vec<u64>>());
    // Plain text is still the default (its first lines are enough: the whole
    // 100,000 lines take seconds in a debug build on a busy machine).
    let mut plain = reqwest::get(format!("{addr}/v1/allocations/{alloc}/logs"))
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let mut text = String::new();
    while text.len() < 6 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), plain.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("1\n2\n3\n"), "{text}");
}
