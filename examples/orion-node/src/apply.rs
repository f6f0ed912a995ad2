//! `orion-node apply -f FILE|DIR|-`: many job specs at once — YAML streams,
//! JSON arrays, directories of them, and Compose files — checked here first
//! (every problem named with its file), then submitted as one commit: all or
//! nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
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
    let mut secrets: Vec<(&Source, compose::ComposeSecret)> = Vec::new();
    let mut problems = Vec::new();
    for src in &sources {
        match specs_of(src) {
            Ok((found, warnings, declared)) => {
                for w in warnings {
                    eprintln!("warning: {}: {w}", src.name);
                }
                specs.extend(found.into_iter().map(|s| (src.name.clone(), s)));
                secrets.extend(declared.into_iter().map(|d| (src, d)));
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
    let base = crate::client::base_url(addr);
    let to_create = compose_secrets(&base, &secrets).await?;
    for (name, value) in to_create {
        let body = zeroize::Zeroizing::new(serde_json::to_vec(&serde_json::json!({
            "name": name,
            "data_base64": zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*value)).as_str(),
        }))?);
        crate::client::send(
            crate::client::http_client()
                .post(format!("{base}/v1/secrets"))
                .header("content-type", "application/json")
                .body(body.to_vec()),
            "apply",
            &base,
        )
        .await?;
        say!("secret {name} created ({} bytes)", value.len());
    }
    let body: Vec<&JobSpec> = specs.iter().map(|(_, s)| s).collect();
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

/// What one document source holds: its specs, warnings (what a Compose
/// file had that Orion does not carry out) and a Compose file's secrets.
type Found = (Vec<JobSpec>, Vec<String>, Vec<compose::ComposeSecret>);

fn specs_of(src: &Source) -> Result<Found, spec::SpecError> {
    if src.format == Format::Yaml {
        if let Ok(doc) = spec::parse_yaml_value(&src.text) {
            if compose::is_compose(&doc) {
                let c = compose::from_compose(&doc)?;
                return Ok((c.specs, c.ignored, c.secrets));
            }
        }
    }
    spec::parse_specs(&src.text, src.format).map(|(specs, _)| (specs, Vec::new(), Vec::new()))
}

/// Compose secrets, checked before anything is applied: an external one
/// must exist; a file or environment one that exists is kept (its value is
/// never compared: a new one is `orion-node secret create`), one that does
/// not is read now and returned to be created. Any problem stops the apply.
async fn compose_secrets(
    base: &str,
    secrets: &[(&Source, compose::ComposeSecret)],
) -> Result<Vec<(String, zeroize::Zeroizing<Vec<u8>>)>> {
    use compose::ComposeSecretSource as From;
    let mut create: Vec<(String, zeroize::Zeroizing<Vec<u8>>)> = Vec::new();
    let mut problems = Vec::new();
    if secrets.is_empty() {
        return Ok(create);
    }
    let r = crate::client::send(
        crate::client::http_client().get(format!("{base}/v1/secrets")),
        "apply",
        base,
    )
    .await?;
    let listed: Vec<Value> = r.json().await?;
    for (src, s) in secrets {
        if create.iter().any(|(n, _)| *n == s.name) {
            continue;
        }
        let exists = listed.iter().any(|x| x["name"] == s.name.as_str());
        let at = format!("{}: secrets.{}", src.name, s.key);
        match (&s.source, exists) {
            (From::External, true) => {}
            (From::External, false) => problems.push(format!(
                "{at}: the external secret {:?} does not exist (orion-node secret create {} --from-file FILE)",
                s.name, s.name
            )),
            (From::File(f), true) | (From::Environment(f), true) => {
                eprintln!("warning: {at}: secret {:?} exists: kept as it is (a new value: orion-node secret create {} --from-file {f})", s.name, s.name);
            }
            (From::File(f), false) => {
                let dir = Path::new(&src.name).parent().unwrap_or(Path::new("."));
                let path = if Path::new(f).is_absolute() { PathBuf::from(f) } else { dir.join(f) };
                match read_secret(&path) {
                    Ok(v) => create.push((s.name.clone(), v)),
                    Err(e) => problems.push(format!("{at}: {e}")),
                }
            }
            (From::Environment(var), false) => match std::env::var(var) {
                Ok(v) if v.len() <= orion::secret::MAX_SECRET_BYTES => {
                    create.push((s.name.clone(), zeroize::Zeroizing::new(v.into_bytes())))
                }
                Ok(_) => problems.push(format!("{at}: ${var} is over the limit of 1 MiB")),
                Err(_) => problems.push(format!("{at}: ${var} is not set")),
            },
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        bail!(
            "nothing applied: {} problem{} with the secrets above",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(create)
}

/// A secret's value from `path`, refused over the cap.
fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut value = zeroize::Zeroizing::new(Vec::new());
    let max = orion::secret::MAX_SECRET_BYTES;
    std::fs::File::open(path)
        .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut value))
        .with_context(|| format!("reading {}", path.display()))?;
    if value.len() > max {
        bail!("{} is over the limit of 1 MiB", path.display());
    }
    Ok(value)
}
