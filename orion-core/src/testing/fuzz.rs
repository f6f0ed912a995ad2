//! The bodies of Orion's fuzz targets, shared by the tests that run them over
//! their corpus in every `cargo test` and by the cargo-fuzz targets of
//! `fuzz/` for long runs by hand.
//!
//! Each target takes arbitrary bytes and panics only when something that must
//! hold does not (a panic is the finding):
//!
//! - [`spec`]: the job spec parsers (JSON, YAML, one or many, Compose) and
//!   the validator; a spec they accept validates, and reads back equal from
//!   its own JSON.
//! - [`command`]: a command decoded from JSON and applied to a small live
//!   state, twice (idempotent), and a snapshot decoded and checked
//!   ([`ClusterState::check_invariants`] after each).
//! - [`Mutator`]: the byte-level mutations the tests' random runs apply to
//!   corpus seeds.
//!
//! The API target, which needs a running cluster, is in
//! `orion-core/tests/fuzz/api.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::command::Command;
use crate::spec::{Format, JobSpec};
use crate::state::ClusterState;

/// Where the corpus of target `name` is kept: `fuzz/corpus/<name>` at the
/// workspace root (cargo-fuzz's layout).
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name)
}

/// Every file of target `name`'s corpus, by name (sorted, for a stable order).
pub fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("corpus file reads");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// How many random cases a fuzz test runs: `ORION_FUZZ_CASES`, or `default`
/// (kept small, so the normal test run stays fast; raise it for a long run
/// by hand).
pub fn cases(default: u32) -> u32 {
    std::env::var("ORION_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tokens the mutator splices in: the syntax of JSON and YAML, numbers at
/// the edges of their types, and strings parsers trip on.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1e309",
    "-0.0",
    "18446744073709551616",
    "4294967296",
    "65536",
    ".nan",
    ".inf",
    "~",
    "---\n",
    "&a ",
    "*a",
    "!!binary ",
    "<<: *a\n",
    "? ",
    "- ",
    "\n  ",
    "\t",
    "\\u0000",
    "\u{0}",
    "é",
    "\u{feff}",
    "%",
    "../",
    "//",
    "?",
    "&",
    "=",
    "#",
    "'",
    "|\n",
    ">\n",
    "0x",
    "1s",
    "99999999999h",
    "*/1 * * * *",
];

/// Byte-level mutations of a seed, as a dumb fuzzer makes them: each op is
/// `(kind, position, value)`, applied in order.
#[derive(Clone, Debug)]
pub struct Mutator {
    /// The ops: kind (mod 6) — flip a bit, set a byte, insert a byte, delete
    /// a run, duplicate a run, splice a token — at position (mod length).
    pub ops: Vec<(u8, u32, u8)>,
}

impl Mutator {
    /// `seed` mutated by the ops.
    pub fn apply(&self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for &(kind, pos, value) in &self.ops {
            let at = if out.is_empty() {
                0
            } else {
                pos as usize % (out.len() + 1)
            };
            let run = 1 + value as usize % 16;
            match kind % 6 {
                0 if at < out.len() => out[at] ^= 1 << (value % 8),
                1 if at < out.len() => out[at] = value,
                2 => out.insert(at, value),
                3 => {
                    let end = (at + run).min(out.len());
                    out.drain(at..end);
                }
                4 => {
                    let end = (at + run).min(out.len());
                    let chunk = out[at..end].to_vec();
                    out.splice(at..at, chunk);
                }
                _ => {
                    let token = TOKENS[value as usize % TOKENS.len()].as_bytes();
                    out.splice(at..at, token.iter().copied());
                }
            }
        }
        out
    }
}

/// The spec target: `data` through every spec parser, as JSON and as YAML.
///
/// What holds: nothing panics; a spec that parses validates; it reads back
/// equal from its own JSON (so `GET` returns what was stored, and the log
/// replays it); a Compose document either converts or says why.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Json, Format::Yaml] {
        if let Ok(spec) = JobSpec::parse_as(text, format) {
            round_trips(&spec);
        }
        if let Ok((specs, list)) = crate::spec::parse_specs(text, format) {
            assert!(!specs.is_empty(), "parse_specs accepted no spec");
            assert!(
                list || specs.len() == 1,
                "one document, {} specs",
                specs.len()
            );
            specs.iter().for_each(round_trips);
        }
    }
    if let Ok(doc) = crate::spec::parse_yaml_value(text) {
        if crate::spec::compose::is_compose(&doc) {
            let _ = crate::spec::compose::from_compose(&doc);
        }
    }
    let _ = JobSpec::parse(text);
}

fn round_trips(spec: &JobSpec) {
    if let Err(e) = spec.validate() {
        panic!("an accepted spec does not validate: {e}\n{spec:?}");
    }
    let json = serde_json::to_string(spec).expect("a spec serializes");
    match JobSpec::parse_as(&json, Format::Json) {
        Ok(back) => assert_eq!(
            &back, spec,
            "a spec read back from its JSON differs: {json}"
        ),
        Err(e) => panic!("a spec's own JSON is refused: {e}\n{json}"),
    }
}

/// The state the command target applies to: three nodes, a job of each
/// kind, placed and reported running by the real reconciler and scheduler.
fn base_state() -> &'static (ClusterState, u64) {
    static BASE: OnceLock<(ClusterState, u64)> = OnceLock::new();
    BASE.get_or_init(|| {
        use crate::testing::fixtures::{job, node, StateBuilder};
        let mut b = StateBuilder::new();
        for n in ["n1", "n2", "n3"] {
            b.apply(Command::RegisterNode {
                info: node(n, 4.0, 4096),
            });
        }
        b.apply(Command::UpsertJob {
            spec: job("web", 3, 0.5, 256).port("http", 80),
        });
        for yaml in [
            "name: nightly\ntype: batch\nschedule: {cron: \"*/5 * * * *\"}\ntask: {image: img}\n",
            "name: agent\ntype: system\ntask: {image: img}\n",
            "name: api\nreplicas: 2\nscaling: {min: 1, max: 4, policies: [{step: {metric: cpu, above: 80, add: 1}}]}\ntask: {image: img}\n",
        ] {
            b.apply(Command::UpsertJob {
                spec: JobSpec::parse(yaml).expect("base spec"),
            });
        }
        let scheduler = crate::scheduler::FilterScoreScheduler::default();
        let plan = crate::reconcile::plan_at(b.state(), &scheduler, 64, 7, Some(1_000));
        b.apply(Command::ApplyPlan { plan });
        let updates = b
            .state()
            .allocs
            .values()
            .filter_map(|a| {
                let node = a.node.clone()?;
                Some(crate::command::AllocUpdate::new(
                    a.id.clone(),
                    node,
                    crate::model::AllocState::Running,
                ))
            })
            .collect();
        b.apply(Command::UpdateAllocs { updates });
        let index = b.state().applied_index;
        (b.build(), index)
    })
}

/// Whether a command carries what only logs written by older versions hold,
/// read so that they replay as they did and never written now: the
/// pre-absolute-counter flags (`AllocUpdate::restarted` / `failed_attempt`,
/// one more each time), a batch of several commands without an id, a revert
/// without the version it was made from. They are the one thing a command
/// may carry that is not idempotent.
fn legacy(cmd: &Command) -> bool {
    match cmd {
        Command::RevertJob { from: None, .. } => true,
        Command::UpdateAllocs { updates } => {
            updates.iter().any(|u| u.restarted || u.failed_attempt)
        }
        Command::Batch { commands, id } => {
            (id.is_none() && commands.len() > 1) || commands.iter().any(legacy)
        }
        _ => false,
    }
}

/// The command target: `data` as a [`Command`] (JSON, as the log and the
/// forwarding endpoint carry it) applied to [`base_state`], and as a
/// snapshot (as one installed from a leader).
///
/// What holds: nothing panics; the state's invariants hold after the
/// command (debug builds check them inside `apply` as well); applied a
/// second time the command changes nothing more; a command re-encodes to
/// itself; a snapshot that decodes has consistent indexes.
pub fn command(data: &[u8]) {
    if let Ok(cmd) = serde_json::from_slice::<Command>(data) {
        let json = serde_json::to_vec(&cmd).expect("a command serializes");
        let back: Command = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("a command's own JSON is refused: {e}"));
        if !legacy(&cmd) {
            assert_eq!(back, cmd, "a command re-encodes differently");
        }
        let (base, index) = base_state();
        let mut state = base.clone();
        let (response, _) = state.apply(index + 1, &cmd);
        if let Err(broken) = state.check_invariants() {
            panic!("after {cmd:?}: {broken}");
        }
        serde_json::to_vec(&response).expect("a response serializes");
        if !legacy(&cmd) {
            let once = normalized(&state);
            state.apply(index + 2, &cmd);
            assert_eq!(normalized(&state), once, "applied twice: {cmd:?}");
        }
    }
    if let Ok(state) = ClusterState::from_snapshot(data) {
        if let Err(broken) = state.allocs.check_indexes() {
            panic!("a decoded snapshot's indexes: {broken}");
        }
        let _ = state.to_snapshot();
    }
}

/// A state as JSON without the indexes a second commit moves (the applied
/// index, each record's modify index): what "the same state" means for a
/// command delivered twice.
pub fn normalized(s: &ClusterState) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("modify_index");
                m.remove("applied_index");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&s.to_snapshot()).expect("a snapshot is JSON");
    strip(&mut v);
    v
}

/// The API target: requests to the real router ([`crate::api::router`]) of
/// one in-process node over the fakes (`MemStore`, `FakeRuntime`), driven
/// without a socket.
///
/// An input is text: the method on the first line, the path and query on the
/// second, the `content-type` on the third, the body after it. What holds:
/// nothing panics; no request hangs (each is answered within
/// [`ApiTarget::LIMIT`]); no answer is a 5xx but a 503 (a store or runtime
/// that cannot serve now) or a 501 (a call this node's store does not have,
/// such as membership on a `MemStore`): the 5xx that are right for a
/// well-formed request; every error answer is JSON.
pub struct ApiTarget {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

impl ApiTarget {
    /// How long a request may take before it counts as hung.
    pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

    /// Starts the node (node `n1`, 4 cores, 3900 MiB) and its router.
    pub fn new() -> ApiTarget {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let router = runtime.block_on(async {
            let profile = crate::NodeProfile {
                id: Some("n1".into()),
                capacity: Some(crate::Resources {
                    cpu: 4.0,
                    memory_mb: 3900,
                    disk_mb: 1000,
                }),
                ..Default::default()
            };
            let cluster = crate::Cluster::builder()
                .node(profile)
                .runtime_shared(std::sync::Arc::new(crate::testing::FakeRuntime::new()))
                .store(crate::testing::MemStore::new("n1"))
                .config(crate::testing::fast_loops())
                .start()
                .await
                .expect("the node starts");
            cluster
                .ready(std::time::Duration::from_secs(10))
                .await
                .expect("the node gets ready");
            crate::api::router(cluster)
        });
        ApiTarget { runtime, router }
    }

    /// Sends the request `data` describes and checks the answer (see
    /// [`ApiTarget`]); an input that is no HTTP request at all (a path that
    /// is no URI) is skipped, as a server would never route it.
    pub fn run(&self, data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let mut lines = text.splitn(4, '\n');
        let method = lines.next().unwrap_or("GET").trim();
        let target = lines.next().unwrap_or("/").trim();
        let ctype = lines.next().unwrap_or("").trim();
        let body = lines.next().unwrap_or("").to_string();
        let Ok(method) = axum::http::Method::from_bytes(method.as_bytes()) else {
            return;
        };
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri(target);
        if let Ok(v) = axum::http::HeaderValue::from_str(ctype) {
            if !ctype.is_empty() {
                request = request.header(axum::http::header::CONTENT_TYPE, v);
            }
        }
        let Ok(request) = request.body(axum::body::Body::from(body)) else {
            return;
        };
        let router = self.router.clone();
        let what = format!("{method} {target}");
        self.runtime.block_on(async move {
            use tower::ServiceExt as _;
            let response = tokio::time::timeout(Self::LIMIT, router.oneshot(request))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer within {:?}", Self::LIMIT))
                .expect("the router is infallible");
            let status = response.status();
            let ctype = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            // Streams (events, logs) go on for as long as the client
            // listens: their first bytes are enough.
            let streaming = ctype.starts_with("text/event-stream")
                || ctype.starts_with("application/x-ndjson")
                || ctype.starts_with("text/plain");
            let read = if streaming {
                std::time::Duration::from_millis(100)
            } else {
                Self::LIMIT
            };
            let body = tokio::time::timeout(read, axum::body::to_bytes(response.into_body(), 1 << 24))
                .await;
            let body = match body {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => panic!("{what}: the body fails: {e}"),
                Err(_) if streaming => return,
                Err(_) => panic!("{what}: the body does not end within {read:?}"),
            };
            let text = String::from_utf8_lossy(&body);
            use axum::http::StatusCode;
            assert!(
                !status.is_server_error()
                    || status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::NOT_IMPLEMENTED,
                "{what}: {status} {text}"
            );
            if status.is_client_error() || status.is_server_error() {
                assert!(
                    ctype.starts_with("application/json")
                        && serde_json::from_slice::<serde_json::Value>(&body)
                            .is_ok_and(|v| v["error"].is_string()),
                    "{what}: the error answer {status} is not {{\"error\": …}} JSON ({ctype}): {text}"
                );
            }
        });
    }
}

impl Default for ApiTarget {
    fn default() -> Self {
        ApiTarget::new()
    }
}
