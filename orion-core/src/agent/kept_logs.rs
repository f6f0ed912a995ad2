//! Logs kept by the node after a task's container is removed: the agent
//! copies a container's output to `<task files>/.logs/<alloc>.log` before it
//! removes the container (at most [`MAX_KEPT`], the newest kept), so the logs
//! of finished and replaced allocations stay readable, with the same line
//! numbers; the file goes when the allocation leaves the state.
//!
//! One line per chunk of output: `o ` or `e ` (stdout, stderr), the bytes in
//! base64.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::StreamExt;

use crate::runtime::{LogChunk, LogStream, Logs, RuntimeError};

/// The most output kept per allocation.
pub const MAX_KEPT: usize = 10 * 1024 * 1024;

/// Where an allocation's kept logs are, under the task files' directory.
pub fn path(dir: &Path, alloc: &str) -> PathBuf {
    dir.join(".logs").join(format!("{alloc}.log"))
}

/// Copies `logs` (a finished read of a container's output) to the kept file.
pub async fn keep(dir: &Path, alloc: &str, mut logs: Logs) -> std::io::Result<()> {
    let mut chunks: std::collections::VecDeque<LogChunk> = Default::default();
    let mut size = 0;
    while let Some(Ok(chunk)) = logs.next().await {
        size += chunk.data.len();
        chunks.push_back(chunk);
        while size > MAX_KEPT {
            match chunks.pop_front() {
                Some(old) => size -= old.data.len(),
                None => break,
            }
        }
    }
    let mut out = String::new();
    for c in chunks {
        out.push_str(if c.stream == LogStream::Stderr {
            "e "
        } else {
            "o "
        });
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(&c.data));
        out.push('\n');
    }
    let p = path(dir, alloc);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, out)
}

/// The kept logs of `alloc` as the runtime would stream them, if there are any.
pub fn read(dir: &Path, alloc: &str) -> Option<Logs> {
    let text = std::fs::read_to_string(path(dir, alloc)).ok()?;
    let chunks: Vec<Result<LogChunk, RuntimeError>> = text
        .lines()
        .filter_map(|l| {
            let (s, b64) = l.split_once(' ')?;
            let data = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some(Ok(LogChunk {
                stream: if s == "e" {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                },
                data: bytes::Bytes::from(data),
            }))
        })
        .collect();
    Some(futures::stream::iter(chunks).boxed())
}

/// Removes the kept logs of allocations not in `live` (those the state no
/// longer has).
pub fn prune(dir: &Path, keep: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir.join(".logs")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(alloc) = name.strip_suffix(".log") {
            if !keep(alloc) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
