//! `orion-node apply -f FILE|DIR|-`: many job specs at once — YAML streams,
//! JSON arrays, directories of them, and Compose files — checked here first
//! (every problem named with its file), then submitted as one commit: all or
//! nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use orion::spec::{self, compose, Format, JobSpec};
use serde_json::Value;

use crate::out::say;

/// One document source: its name for messages and its text.
struct Source {
    name: String,
    text: String,
    format: Format,
}

/// Reads, checks and submits every spec under `paths`.
pub async fn apply(addr: &str, paths: &[PathBuf]) -> Result<()> {
    let sources = read_all(paths)?;
    let mut specs: Vec<(String, JobSpec)> = Vec::new();
    let mut problems = Vec::new();
    for src in &sources {
        match specs_of(src) {
            Ok((found, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {}: {w}", src.name);
                }
                specs.extend(found.into_iter().map(|s| (src.name.clone(), s)));
            }
            Err(e) => problems.extend(e.errors.iter().map(|f| format!("{}: {f}", src.name))),
        }
    }
    for (i, (file, s)) in specs.iter().enumerate() {
        if let Some((other, _)) = specs[..i].iter().find(|(_, o)| o.name == s.name) {
            problems.push(format!("{file}: job {:?} is also in {other}", s.name));
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        bail!(
            "nothing applied: {} problem{} in the specs above",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    if specs.is_empty() {
        bail!("no job specs found in {}", names(paths));
    }
    let body: Vec<&JobSpec> = specs.iter().map(|(_, s)| s).collect();
    let base = crate::client::base_url(addr);
    let r = crate::client::send(
        crate::client::http_client()
            .post(format!("{base}/v1/jobs"))
            .json(&body),
        "apply",
        &base,
    )
    .await?;
    let done: Vec<Value> = r.json().await?;
    for d in done {
        let name = d["name"].as_str().unwrap_or("?");
        let verb = if d["changed"] == Value::Bool(true) {
            "submitted"
        } else {
            "unchanged"
        };
        say!("job {name} {verb}: version {}", d["version"]);
    }
    Ok(())
}

fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The documents under `paths`: `-` is standard input, a directory gives its
/// `.yaml`, `.yml` and `.json` files in name order.
fn read_all(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            out.push(Source {
                name: "<stdin>".into(),
                format: guess(&text, None),
                text,
            });
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(ext(p), Some("yaml" | "yml" | "json")))
                .collect();
            files.sort();
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    Ok(out)
}

fn ext(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

fn read_file(path: &Path) -> Result<Source> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        format: guess(&text, ext(path)),
        text,
    })
}

fn guess(text: &str, ext: Option<&str>) -> Format {
    match ext {
        Some("json") => Format::Json,
        Some("yaml" | "yml") => Format::Yaml,
        _ if text.trim_start().starts_with(['{', '[']) => Format::Json,
        _ => Format::Yaml,
    }
}

/// The specs of one document source, and warnings (what a Compose file had
/// that Orion does not carry out).
fn specs_of(src: &Source) -> Result<(Vec<JobSpec>, Vec<String>), spec::SpecError> {
    if src.format == Format::Yaml {
        if let Ok(doc) = spec::parse_yaml_value(&src.text) {
            if compose::is_compose(&doc) {
                let c = compose::from_compose(&doc)?;
                return Ok((c.specs, c.ignored));
            }
        }
    }
    spec::parse_specs(&src.text, src.format).map(|(specs, _)| (specs, Vec::new()))
}
