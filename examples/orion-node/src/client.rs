//! The CLI client: `job …` and `node …` over a node's HTTP API.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use orion_core::{Allocation, JobView, NodeView};
use serde_json::Value;

use crate::cli::{
    AllocCommand, DeploymentCommand, JobCommand, NodeCommand, Output, ServiceCommand, VolumeCommand,
};
use crate::out::{say, Table};
use crate::template::Template;

/// The API token from `--token` / `ORION_TOKEN`, set once at start.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Keeps the token every request of this process sends; refuses one no
/// header can carry.
pub fn set_token(token: Option<String>) -> Result<()> {
    let token = token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).is_err() {
            anyhow::bail!(
                "the API token (--token or ORION_TOKEN) holds characters a header cannot carry"
            );
        }
    }
    let _ = TOKEN.set(token);
    Ok(())
}

/// The token requests send, if one was given.
pub fn token() -> Option<&'static str> {
    TOKEN.get().and_then(|t| t.as_deref())
}

/// The cluster CA from `--ca-cert` / `ORION_CACERT`, set once at start.
static CA: std::sync::OnceLock<Option<orion::tls::TlsState>> = std::sync::OnceLock::new();

/// Keeps the CA every request of this process verifies the node against;
/// refuses a file that cannot be read or holds no certificate.
pub fn set_ca(path: Option<&Path>) -> Result<()> {
    let tls = match path {
        Some(p) => {
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("--ca-cert {}: cannot read it", p.display()))?;
            Some(
                orion::tls::TlsState::new(&pem)
                    .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let _ = CA.set(tls);
    Ok(())
}

fn ca() -> Option<&'static orion::tls::TlsState> {
    CA.get().and_then(Option::as_ref)
}

/// An HTTP client that sends the token (when given) with every request and
/// verifies a node's certificate against the CA (when given).
pub fn http_client() -> reqwest::Client {
    client_trusting(ca())
}

/// [`http_client`], verifying nodes against `tls`'s CAs instead of the
/// CLI's (none: plain HTTP only).
pub fn client_trusting(tls: Option<&orion::tls::TlsState>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(v) =
        token().and_then(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        let mut v = v;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder().default_headers(headers);
    b = match tls {
        Some(tls) => b.use_preconfigured_tls(tls.client_config()),
        // Trusting no CA: an https node asks for --ca-cert (and no platform
        // certificate store is needed, which minimal images lack).
        None => b.use_preconfigured_tls(orion::tls::plain_client_config()),
    };
    b.build().unwrap_or_default()
}

/// The scheme added when the address has none: `https://` with a CA given,
/// else `http://`.
pub fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else if ca().is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// `orion-node cluster …`.
pub async fn cluster(addr: &str, cmd: crate::cli::ClusterCommand) -> Result<()> {
    use crate::cli::{CaCommand, ClusterCommand};
    let base = base_url(addr);
    match cmd {
        ClusterCommand::JoinToken {
            role,
            rotate,
            quiet,
        } => {
            let http = http_client();
            let r = if rotate {
                http.post(format!(
                    "{base}/v1/cluster/join-tokens/{}/rotate",
                    role.as_str()
                ))
            } else {
                http.get(format!("{base}/v1/cluster/join-tokens/{}", role.as_str()))
            };
            let v: Value = send(r, "cluster join-token", &base).await?.json().await?;
            let token = v["token"].as_str().unwrap_or_default();
            if quiet {
                println!("{token}");
            } else {
                if rotate {
                    say!(
                        "a new {} join token; the old one no longer joins:",
                        role.as_str()
                    );
                }
                println!(
                    "To add a {} to this cluster, run on it:\n\n    orion-node agent --join {} --join-token {token} --data-dir DIR\n",
                    role.as_str(),
                    base.split("://").nth(1).unwrap_or(&base),
                );
            }
            Ok(())
        }
        ClusterCommand::Ca {
            action: Some(CaCommand::Rotate { wait, timeout }),
        } => {
            let r: Value = send(
                http_client().post(format!("{base}/v1/cluster/ca/rotate")),
                "cluster ca rotate",
                &base,
            )
            .await?
            .json()
            .await?;
            say!(
                "CA rotation {} started: the new CA is SHA256:{}; every node now renews under it",
                r["rotation"],
                r["fingerprint"].as_str().unwrap_or_default()
            );
            if !wait {
                say!("follow it with `orion-node cluster ca status`; when it is over, give the CLI the new CA (`orion-node cluster ca > ca.pem`) and use the new join tokens (`orion-node cluster join-token worker`)");
                return Ok(());
            }
            // Trust what the rotation publishes (old and new): the nodes
            // stop presenting the old CA's link when it is over.
            let roots = r["roots_pem"].as_str().unwrap_or_default();
            let tls = orion::tls::TlsState::new(roots)?;
            let http = client_trusting(Some(&tls));
            let deadline = std::time::Instant::now() + timeout;
            let mut last = String::new();
            loop {
                let s: Value = send(
                    http.get(format!("{base}/v1/cluster/ca/rotation")),
                    "cluster ca rotate",
                    &base,
                )
                .await?
                .json()
                .await?;
                if s["finished"] == true && s["rotation"] == r["rotation"] {
                    say!("CA rotation {} is over: only SHA256:{} is trusted; give the CLI the new CA (`orion-node cluster ca > ca.pem`) and use the new join tokens", s["rotation"], s["fingerprint"].as_str().unwrap_or_default());
                    return Ok(());
                }
                let now = format!(
                    "{} done, waiting for {}",
                    s["adopted"].as_array().map_or(0, Vec::len),
                    list(&s["waiting"])
                );
                if now != last {
                    say!("{now}");
                    last = now;
                }
                if std::time::Instant::now() >= deadline {
                    anyhow::bail!("cluster ca rotate: not over after {}: {last} (a node down or unreachable holds it up)", humantime::format_duration(timeout));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        ClusterCommand::Ca {
            action: Some(CaCommand::Status),
        } => {
            let s: Value = send(
                http_client().get(format!("{base}/v1/cluster/ca/rotation")),
                "cluster ca status",
                &base,
            )
            .await?
            .json()
            .await?;
            say!("rotation:  {}", s["rotation"]);
            say!(
                "signing:   SHA256:{}",
                s["fingerprint"].as_str().unwrap_or_default()
            );
            say!("trusted:   {}", list(&s["trusted"]));
            if s["finished"] == true {
                say!("state:     settled");
            } else {
                say!(
                    "state:     rotating: done {}, waiting for {}",
                    list(&s["adopted"]),
                    list(&s["waiting"])
                );
            }
            Ok(())
        }
        ClusterCommand::Ca { action: None } => {
            // Without verification: this is how a user gets the CA to pin.
            let http = reqwest::Client::builder()
                .use_preconfigured_tls(orion::tls::unverified_client_config())
                .build()?;
            let url = format!("{}/v1/cluster/ca", base.replacen("http://", "https://", 1));
            let r = http.get(&url).send().await.with_context(|| url.clone())?;
            if !r.status().is_success() {
                return Err(api_error("cluster ca", r).await);
            }
            let pem = r.text().await?;
            let fp = orion::tls::fingerprint_pem(&pem)?;
            print!("{pem}");
            eprintln!("SHA256 fingerprint: {fp}");
            Ok(())
        }
        ClusterCommand::GossipKey(cmd) => gossip_key(&base, cmd).await,
        ClusterCommand::Unlock { key_file } => unlock(&base, key_file.as_deref()).await,
        ClusterCommand::UnlockKey { quiet } => {
            let v: Value = send(
                http_client().get(format!("{base}/v1/cluster/unlock-key")),
                "cluster unlock-key",
                &base,
            )
            .await?
            .json()
            .await?;
            let key = zeroize::Zeroizing::new(v["key"].as_str().unwrap_or_default().to_string());
            if quiet {
                println!("{}", key.as_str());
            } else {
                println!("The unlock key (a restarted node needs it: orion-node cluster unlock):\n    {}", key.as_str());
            }
            Ok(())
        }
    }
}

/// The strings in a JSON array, comma-separated ("none" for none).
fn list(v: &Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `cluster unlock`: the key from `--key-file`, else `ORION_UNLOCK_KEY`,
/// else one line of standard input, sent to the locked node.
async fn unlock(base: &str, key_file: Option<&Path>) -> Result<()> {
    let from_env = std::env::var("ORION_UNLOCK_KEY")
        .ok()
        .map(zeroize::Zeroizing::new);
    let key = match crate::config::unlock_key(
        "--key-file",
        key_file,
        from_env.as_deref().map(String::as_str),
    )? {
        Some(k) => k,
        None => {
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the unlock key from standard input")?;
            orion::at_rest::UnlockKey::parse(&line)
                .map_err(|e| anyhow::anyhow!("cluster unlock: {e}"))?
        }
    };
    let body = serde_json::json!({ "key": key.to_text().as_str() });
    let v: Value = send(
        http_client()
            .post(format!("{base}/v1/cluster/unlock"))
            .json(&body),
        "cluster unlock",
        base,
    )
    .await?
    .json()
    .await
    .unwrap_or_default();
    say!(
        "node {} unlocked: it opens its store and starts",
        v["node"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `cluster gossip-key …`.
async fn gossip_key(base: &str, cmd: crate::cli::GossipKeyCommand) -> Result<()> {
    use crate::cli::GossipKeyCommand;
    let http = http_client();
    let keys = format!("{base}/v1/cluster/gossip-keys");
    match cmd {
        GossipKeyCommand::List => {
            let v: Value = send(http.get(&keys), "cluster gossip-key list", base)
                .await?
                .json()
                .await?;
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                say!("no gossip keys: this cluster gossips in clear text (insecure dev)");
            }
            for k in list {
                let id = k["id"].as_str().unwrap_or_default();
                let primary = if k["primary"] == true {
                    "  primary"
                } else {
                    ""
                };
                println!("{id}{primary}");
            }
        }
        GossipKeyCommand::Install { key } => {
            let body = serde_json::json!({ "key": key });
            let v: Value = send(
                http.post(&keys).json(&body),
                "cluster gossip-key install",
                base,
            )
            .await?
            .json()
            .await?;
            let id = v["id"].as_str().unwrap_or_default();
            println!("{id}");
            eprintln!("installed on every node; `cluster gossip-key use {id}` makes it seal");
        }
        GossipKeyCommand::Use { id } => {
            send(
                http.post(format!("{keys}/{id}/use")),
                "cluster gossip-key use",
                base,
            )
            .await?;
            say!("every node seals gossip with {id} from now on");
        }
        GossipKeyCommand::Remove { id } => {
            send(
                http.delete(format!("{keys}/{id}")),
                "cluster gossip-key remove",
                base,
            )
            .await?;
            say!("removed {id}: packets sealed with it are dropped");
        }
        GossipKeyCommand::Generate => println!("{}", orion::gossip_keys::generate()),
    }
    Ok(())
}

/// Turns an API error body into one readable message.
async fn api_error(what: &str, r: reqwest::Response) -> anyhow::Error {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut msg = match body.get("error").and_then(Value::as_str) {
        Some(e) => format!("{what}: {e}"),
        // Plain text (a TLS port asked for in clear says so): its first line.
        None if !text.trim().is_empty() && body.is_null() => {
            format!("{what}: {}", text.lines().next().unwrap_or_default().trim())
        }
        None => format!("{what}: HTTP {status}"),
    };
    if let Some(errors) = body.get("errors").and_then(Value::as_array) {
        if errors.len() > 1 {
            for e in errors {
                let field = e["field"].as_str().unwrap_or("");
                let problem = e["problem"].as_str().unwrap_or("");
                msg.push_str(&format!("\n  {field}: {problem}"));
            }
        }
    }
    anyhow::anyhow!(msg)
}

pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    what: &str,
    addr: &str,
) -> Result<reqwest::Response> {
    let r = req.send().await.map_err(|e| {
        let chain = format!("{:#}", anyhow::Error::new(e));
        // A node whose certificate is not trusted: say what to give.
        let hint = if chain.contains("certificate") && ca().is_none() {
            " (the node serves TLS: give the cluster CA with --ca-cert or ORION_CACERT, the first node's <data-dir>/tls/ca.pem)"
        } else {
            ""
        };
        anyhow::anyhow!("{what}: cannot reach the node at {addr}: {chain}{hint}")
    })?;
    if !r.status().is_success() {
        return Err(api_error(what, r).await);
    }
    Ok(r)
}

/// `orion-node acl …`.
pub async fn acl(addr: &str, cmd: crate::cli::AclCommand) -> Result<()> {
    use crate::cli::{AclCommand, TokenCommand};
    let base = base_url(addr);
    let http = http_client();
    let AclCommand::Token(cmd) = cmd;
    match cmd {
        TokenCommand::Create { name, scopes } => {
            let body = serde_json::json!({ "name": name, "scopes": scopes });
            let r = send(
                http.post(format!("{base}/v1/acl/tokens")).json(&body),
                "acl token create",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            eprintln!(
                "token {} ({}), scopes {}; its secret, shown this once:",
                v["accessor"].as_str().unwrap_or("?"),
                name,
                scopes.join(", ")
            );
            // The secret alone on stdout, for `$(orion-node acl token create …)`.
            crate::out::raw(
                format_args!("{}\n", v["secret"].as_str().unwrap_or("")),
                true,
            );
        }
        TokenCommand::List { out } => {
            let template = template(&out)?;
            let r = send(
                http.get(format!("{base}/v1/acl/tokens")),
                "acl token list",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let tokens: Vec<Value> = serde_json::from_value(v)?;
            let mut t = Table::new(&["ACCESSOR", "NAME", "SCOPES", "CREATED"]);
            for k in tokens {
                let scopes: Vec<&str> = k["scopes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let created = k["created_ms"]
                    .as_u64()
                    .map(|ms| {
                        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                        humantime::format_rfc3339_seconds(at).to_string()
                    })
                    .unwrap_or_default();
                t.row(vec![
                    k["accessor"].as_str().unwrap_or("").to_string(),
                    k["name"].as_str().unwrap_or("").to_string(),
                    scopes.join(","),
                    created,
                ]);
            }
            t.print();
        }
        TokenCommand::Revoke { accessor } => {
            if accessor.is_empty() || !accessor.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!("acl token revoke: {accessor:?} is not an accessor (hex digits, from `acl token list`)");
            }
            send(
                http.delete(format!("{base}/v1/acl/tokens/{accessor}")),
                "acl token revoke",
                &base,
            )
            .await?;
            say!("token {accessor} revoked on every node");
        }
    }
    Ok(())
}

/// `orion-node job …`.
pub async fn job(addr: &str, cmd: JobCommand) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        JobCommand::Plan { file } => {
            let (text, ctype) = read_spec(&file)?;
            let r = send(
                http.post(format!("{base}/v1/jobs/plan"))
                    .header("content-type", ctype)
                    .body(text),
                "job plan",
                &base,
            )
            .await?;
            let p: orion_core::JobPlan = r.json().await?;
            match p.version {
                Some(v) if p.changed => say!("job {}: changes to version {v}:", p.name),
                Some(v) => say!("job {}: the same as version {v}", p.name),
                None => say!("job {}: new", p.name),
            }
            if p.changed {
                crate::out::raw(format_args!("{}", p.diff), true);
            }
            say!(
                "+ {} to create, - {} to stop, ~ {} changed in place",
                p.create,
                p.stop,
                p.in_place
            );
            for why in &p.unplaced {
                say!("! cannot place: {why}");
            }
            say!(
                "job modify index {}: `orion-node job run --check-index {} FILE` writes only if nothing changed since",
                p.modify_index,
                p.modify_index
            );
        }
        JobCommand::Run {
            file,
            check_index,
            detach,
        } => {
            let (text, ctype) = read_spec(&file)?;
            let query = check_index
                .map(|i| format!("?check_index={i}"))
                .unwrap_or_default();
            let r = send(
                http.post(format!("{base}/v1/jobs{query}"))
                    .header("content-type", ctype)
                    .body(text),
                "job run",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            let name = v["name"].as_str().unwrap_or("?");
            let version = v["version"].as_u64().unwrap_or(0);
            if v["changed"] == Value::Bool(true) {
                say!("job {name} submitted: version {version}");
            } else {
                say!("job {name} unchanged: version {version}");
            }
            if !detach {
                crate::follow::follow(&http, &base, name, version).await?;
            }
        }
        JobCommand::Promote { name } => {
            let d = deployment_action(&http, &base, &name, "promote").await?;
            say!("deployment {} of {name}: {}", d.id, d.description);
        }
        JobCommand::Revert { name, version } => {
            let body = match version {
                Some(v) => serde_json::json!({ "version": v }),
                None => serde_json::json!({}),
            };
            let r = send(
                http.post(format!("{base}/v1/jobs/{name}/revert"))
                    .json(&body),
                "job revert",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            say!("job {name} reverted: version {}", v["version"]);
        }
        JobCommand::Deployment(cmd) => deployment(&http, &base, cmd).await?,
        JobCommand::Gc => {
            let r = send(http.post(format!("{base}/v1/gc")), "job gc", &base).await?;
            let v: Value = r.json().await?;
            let names: Vec<&str> = v["collected"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if names.is_empty() {
                say!("nothing to collect");
            } else {
                say!("collected {} jobs: {}", names.len(), names.join(", "));
            }
        }
        JobCommand::Periodic(crate::cli::PeriodicCommand::Force { name }) => {
            let r = send(
                http.post(format!("{base}/v1/jobs/{name}/periodic/force")),
                "job periodic force",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            say!("job {name}: launched {}", v["run"].as_str().unwrap_or("?"));
        }
        JobCommand::History { name, patch } => {
            let r = send(
                http.get(format!("{base}/v1/jobs/{name}/versions")),
                "job history",
                &base,
            )
            .await?;
            let versions: Vec<orion_core::model::JobVersion> = r.json().await?;
            let show = |s: &orion_core::JobSpec| {
                serde_json::to_string_pretty(s).unwrap_or_default() + "\n"
            };
            let mut prev: Option<&orion_core::model::JobVersion> = None;
            for v in &versions {
                let changes = match prev {
                    None => "first kept version".to_string(),
                    Some(p) => spec_changes(&p.spec, &v.spec),
                };
                say!(
                    "version {}{}  submitted at index {}  {changes}",
                    v.version,
                    if v.stable { " (stable)" } else { "" },
                    v.submit_index
                );
                if let (true, Some(p)) = (patch, prev) {
                    let (a, b) = (show(&p.spec), show(&v.spec));
                    let diff = similar::TextDiff::from_lines(&a, &b)
                        .unified_diff()
                        .header(
                            &format!("version {}", p.version),
                            &format!("version {}", v.version),
                        )
                        .to_string();
                    crate::out::raw(format_args!("{diff}"), true);
                }
                prev = Some(v);
            }
        }
        JobCommand::Logs { name, follow } => job_logs(&base, &name, follow).await?,
        JobCommand::Status { name, out, all } => {
            let template = template(&out)?;
            let r = send(
                http.get(format!("{base}/v1/jobs/{name}")),
                "job status",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            if !print_raw(&out, template.as_ref(), &v)? {
                print_job(&serde_json::from_value::<JobView>(v)?, all);
            }
        }
        JobCommand::Stop { name, purge } => {
            let url = format!("{base}/v1/jobs/{name}?purge={purge}");
            send(http.delete(url), "job stop", &base).await?;
            say!(
                "job {name} {}",
                if purge {
                    "stopped and purged"
                } else {
                    "stopped"
                }
            );
        }
        JobCommand::Scale { name, replicas } => {
            let r = send(
                http.get(format!("{base}/v1/jobs/{name}?consistent=true")),
                "job scale",
                &base,
            )
            .await?;
            let view: JobView = r.json().await?;
            let from = view.job.spec.replicas;
            let r = send(
                http.post(format!("{base}/v1/jobs/{name}/scale"))
                    .json(&serde_json::json!({ "replicas": replicas })),
                "job scale",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            say!(
                "job {name} scaled {from} -> {replicas}: version {}",
                v["version"]
            );
            if let Some(sc) = &view.job.spec.scaling {
                let d = orion_core::scaling::manual_suspension(sc);
                say!(
                    "its scaling policy is suspended for {} (the longer cooldown)",
                    humantime::format_duration(d)
                );
            }
        }
        JobCommand::List { out } => {
            let template = template(&out)?;
            let r = send(http.get(format!("{base}/v1/jobs")), "job list", &base).await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let jobs: Vec<Value> = serde_json::from_value(v)?;
            let mut t = Table::new(&["NAME", "TYPE", "VERSION", "STATUS", "RUNNING"]);
            for j in jobs {
                let text = |k: &str| j[k].as_str().unwrap_or("").to_string();
                t.row(vec![
                    text("name"),
                    text("type"),
                    j["version"].to_string(),
                    text("health"),
                    format!("{}/{}", j["running"], j["replicas"]),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// What changed between two specs, by top-level field (`task.env`, `replicas`).
fn spec_changes(a: &orion_core::JobSpec, b: &orion_core::JobSpec) -> String {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut fields = Vec::new();
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut all = keys(&a);
    all.extend(keys(&b));
    all.sort();
    all.dedup();
    for k in all {
        if a.get(&k) == b.get(&k) {
            continue;
        }
        if k == "task" {
            let mut sub = keys(&a["task"]);
            sub.extend(keys(&b["task"]));
            sub.sort();
            sub.dedup();
            for s in sub {
                if a["task"].get(&s) != b["task"].get(&s) {
                    fields.push(format!("task.{s}"));
                }
            }
        } else {
            fields.push(k);
        }
    }
    if fields.is_empty() {
        "no change".into()
    } else {
        format!("changed: {}", fields.join(", "))
    }
}

async fn deployment_action(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    action: &str,
) -> Result<orion_core::model::Deployment> {
    let r = send(
        http.post(format!("{base}/v1/jobs/{name}/deployment/{action}")),
        &format!("job deployment {action}"),
        base,
    )
    .await?;
    Ok(r.json().await?)
}

/// `orion-node job deployment …`.
async fn deployment(http: &reqwest::Client, base: &str, cmd: DeploymentCommand) -> Result<()> {
    let (name, action) = match cmd {
        DeploymentCommand::Status { name, out } => {
            let template = template(&out)?;
            let r = send(
                http.get(format!("{base}/v1/jobs/{name}/deployment")),
                "job deployment status",
                base,
            )
            .await?;
            let v: Value = r.json().await?;
            if !print_raw(&out, template.as_ref(), &v)? {
                let d: orion_core::model::Deployment = serde_json::from_value(v)?;
                print_deployment(&d);
            }
            return Ok(());
        }
        DeploymentCommand::Pause { name } => (name, "pause"),
        DeploymentCommand::Resume { name } => (name, "resume"),
        DeploymentCommand::Fail { name } => (name, "fail"),
    };
    let d = deployment_action(http, base, &name, action).await?;
    say!(
        "deployment {} of {name}: {} — {}",
        d.id,
        d.status,
        d.description
    );
    Ok(())
}

fn print_deployment(d: &orion_core::model::Deployment) {
    say!(
        "deployment {} of {} version {}: {} — {}",
        d.id,
        d.job,
        d.job_version,
        d.status,
        d.description
    );
    let mut t = Table::new(&[
        "DESIRED",
        "CANARIES",
        "PROMOTED",
        "PLACED",
        "HEALTHY",
        "UNHEALTHY",
    ]);
    t.row(vec![
        d.desired.to_string(),
        d.canaries.to_string(),
        d.promoted.to_string(),
        d.placed.to_string(),
        d.healthy.to_string(),
        d.unhealthy.to_string(),
    ]);
    t.print();
}

fn read_spec(file: &Path) -> Result<(String, &'static str)> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let ctype = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("yaml" | "yml") => "application/yaml",
        _ => "text/plain",
    };
    Ok((text, ctype))
}

/// `http 80/tcp -> 127.0.0.1:32001, …`
pub fn ports(a: &Allocation) -> String {
    a.ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long ago `ms` (Unix ms) was, in whole seconds.
fn ago(ms: u64) -> String {
    let now = orion_core::model::unix_ms();
    format!("{}s ago", now.saturating_sub(ms) / 1000)
}

/// A scaling job's bounds, state and latest decisions.
fn print_scaling(sc: &orion_core::ScalingView) {
    let mut line = format!(
        "scaling {}..{} ({} polic{})",
        sc.min,
        sc.max,
        sc.policy.policies.len(),
        if sc.policy.policies.len() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    if let Some(i) = sc.window {
        line.push_str(&format!(", schedule window of policy {i} open"));
    }
    if let Some(t) = sc.suspended_until_ms {
        let left = t.saturating_sub(orion_core::model::unix_ms()) / 1000;
        line.push_str(&format!(", suspended for {left}s more (set by hand)"));
    }
    say!("{line}");
    if let Some(l) = &sc.last {
        let inputs: Vec<String> = l.inputs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        say!(
            "  evaluated {}: {} [{}; {} serving]",
            ago(l.at_ms),
            l.reason,
            if inputs.is_empty() {
                "no metrics".to_string()
            } else {
                inputs.join(", ")
            },
            l.instances
        );
    }
    for d in sc.decisions.iter().rev().take(5) {
        say!("  {} {} -> {}: {}", ago(d.at_ms), d.from, d.to, d.reason);
    }
}

/// A job's summary line and its allocations: those of the current version and
/// any still live from an older one, or every kept one with `all`.
fn print_job(v: &JobView, all: bool) {
    let spec = &v.job.spec;
    say!(
        "job {}  type {}  version {}  status {}  running {}/{}",
        spec.name,
        spec.kind,
        v.job.version,
        v.health,
        v.running,
        spec.replicas
    );
    if let Some(why) = &v.job.unplaced {
        say!("not placed: {why}");
    }
    if let Some(why) = &v.waiting {
        say!("not started: {why}");
    }
    if let (Some(p), Some(sched)) = (&v.periodic, &spec.schedule) {
        let when = |ms: u64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        };
        say!(
            "schedule {:?} ({}), concurrency {:?}; {} runs launched",
            sched.cron,
            sched.time_zone.as_deref().unwrap_or("UTC"),
            sched.concurrency,
            p.launched
        );
        let next: Vec<String> = p.next_ms.iter().map(|t| when(*t)).collect();
        say!(
            "next: {}",
            if next.is_empty() {
                "-".to_string()
            } else {
                next.join(", ")
            }
        );
        for r in &p.runs {
            say!("run {}  {}", r.name, r.health);
        }
        for s in &p.skipped {
            say!("skipped {}: {}", when(s.tick_ms), s.reason);
        }
    }
    if let Some(sc) = &v.scaling {
        print_scaling(sc);
    }
    if let Some(d) = &v.deployment {
        say!(
            "deployment {} (version {}): {} — {}",
            d.id,
            d.job_version,
            d.status,
            d.description
        );
    }
    let mut t = Table::new(&[
        "ALLOCATION",
        "NODE",
        "VERSION",
        "DESIRED",
        "STATE",
        "HEALTH",
        "PORTS",
        "MESSAGE",
    ]);
    let shown = v
        .allocations
        .iter()
        .filter(|a| all || a.job_version == v.job.version || a.is_live());
    for a in shown {
        t.row(vec![
            a.id.clone(),
            a.node.clone().unwrap_or_else(|| "-".into()),
            a.job_version.to_string(),
            a.desired.to_string(),
            a.state.to_string(),
            a.health
                .as_ref()
                .map_or_else(|| "-".to_string(), |h| h.status.to_string()),
            ports(a),
            {
                let mut m = match a.health.as_ref().and_then(|h| h.output.as_ref()) {
                    Some(probe) => format!(
                        "{} (last probe: {probe})",
                        a.message.as_deref().unwrap_or("")
                    ),
                    None => a.message.clone().unwrap_or_default(),
                };
                if let (Some(ms), true) = (a.duration_ms(), spec.kind == orion_core::JobKind::Batch)
                {
                    let code = a
                        .exit_code
                        .map(|c| format!("exit {c} "))
                        .unwrap_or_default();
                    let took = humantime::format_duration(std::time::Duration::from_millis(ms));
                    m = format!(
                        "{code}after {took}{}{m}",
                        if m.is_empty() { "" } else { "; " }
                    );
                }
                m
            },
        ]);
    }
    t.print();
}

/// The `-t` template of a command, parsed before anything is asked of the node.
pub(crate) fn template(out: &Output) -> Result<Option<Template>> {
    out.template.as_deref().map(Template::parse).transpose()
}

/// Prints `v` as JSON or through the template when asked; false when the
/// command should print its table.
pub(crate) fn print_raw(out: &Output, template: Option<&Template>, v: &Value) -> Result<bool> {
    if let Some(t) = template {
        crate::out::raw(format_args!("{}", t.render(v)?), true);
        return Ok(true);
    }
    if out.json {
        say!("{}", serde_json::to_string_pretty(v)?);
        return Ok(true);
    }
    Ok(false)
}

/// `orion-node service …`.
pub async fn service(addr: &str, cmd: ServiceCommand) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        ServiceCommand::List { out } => {
            let template = template(&out)?;
            let r = send(
                http.get(format!("{base}/v1/services")),
                "service list",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let list: Vec<orion_core::catalog::ServiceSummary> = serde_json::from_value(v)?;
            let mut t = Table::new(&["NAME", "HEALTHY", "TAGS"]);
            for s in list {
                t.row(vec![
                    s.name,
                    format!("{}/{}", s.healthy, s.instances),
                    s.tags.join(","),
                ]);
            }
            t.print();
        }
        ServiceCommand::Status { name, all, out } => {
            let template = template(&out)?;
            let url = format!("{base}/v1/services/{name}?healthy={}", !all);
            let r = send(http.get(url), "service status", &base).await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let list: Vec<orion_core::catalog::Instance> = serde_json::from_value(v)?;
            let mut t = Table::new(&["ALLOCATION", "NODE", "ADDRESS", "HEALTH", "TAGS"]);
            for i in list {
                t.row(vec![
                    i.alloc,
                    i.node,
                    format!("{}:{}", i.address, i.port),
                    i.health.map_or_else(
                        || {
                            if i.healthy {
                                "passing".into()
                            } else {
                                "-".into()
                            }
                        },
                        |h| h.to_string(),
                    ),
                    i.tags.join(","),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// `orion-node volume …`.
pub async fn volume(addr: &str, cmd: VolumeCommand) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        VolumeCommand::Create { name, node } => {
            let body = serde_json::json!({ "name": name, "node": node });
            let r = send(
                http.post(format!("{base}/v1/volumes")).json(&body),
                "volume create",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            say!(
                "volume {name} on node {}",
                v["node"].as_str().unwrap_or("?")
            );
        }
        VolumeCommand::List { out } => {
            let template = template(&out)?;
            let r = send(http.get(format!("{base}/v1/volumes")), "volume list", &base).await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let volumes: Vec<Value> = serde_json::from_value(v)?;
            let mut t = Table::new(&["NAME", "NODE", "STATE"]);
            for v in volumes {
                let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
                t.row(vec![text("name"), text("node"), text("state")]);
            }
            t.print();
        }
        VolumeCommand::Delete { name } => {
            send(
                http.delete(format!("{base}/v1/volumes/{name}")),
                "volume delete",
                &base,
            )
            .await?;
            say!("volume {name} deleting: its node removes the data");
        }
    }
    Ok(())
}

/// `orion-node node …`.
pub async fn node(addr: &str, cmd: NodeCommand) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        NodeCommand::List { out } => {
            let template = template(&out)?;
            let r = send(http.get(format!("{base}/v1/nodes")), "node list", &base).await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let nodes: Vec<NodeView> = serde_json::from_value(v)?;
            let mut t = Table::new(&[
                "ID",
                "ROLE",
                "STATUS",
                "CPU",
                "MEMORY MB",
                "ALLOCS",
                "RUNTIME",
                "HTTP",
                "TAGS",
            ]);
            let mut warned = Vec::new();
            for n in nodes {
                let i = &n.node.info;
                let mut status = n.node.status.to_string();
                if n.node.draining {
                    status.push_str("+drain");
                }
                let tags: Vec<String> = i.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if let Some(why) = n
                    .node
                    .health
                    .as_ref()
                    .filter(|_| n.node.status != orion_core::model::NodeStatus::Ready)
                {
                    warned.push(format!("{} is {}: {why}", i.id, n.node.status));
                }
                t.row(vec![
                    i.id.clone(),
                    i.role.to_string(),
                    status,
                    format!("{:.1}/{:.1}", n.used.cpu, i.capacity.cpu),
                    format!("{}/{}", n.used.memory_mb, i.capacity.memory_mb),
                    n.allocations.to_string(),
                    match &i.runtime_warning {
                        Some(w) => {
                            warned.push(format!("{}: {w}", i.id));
                            format!("{}!", i.runtime.as_deref().unwrap_or("docker"))
                        }
                        None => i.runtime.clone().unwrap_or_else(|| "docker".into()),
                    },
                    i.addrs.http.clone(),
                    tags.join(","),
                ]);
            }
            t.print();
            for w in warned {
                say!("warning: {w}");
            }
        }
        NodeCommand::Drain {
            id,
            detach,
            deadline,
        } => {
            send(
                http.post(format!("{base}/v1/nodes/{id}/drain")),
                "node drain",
                &base,
            )
            .await?;
            say!("node {id} draining");
            if !detach {
                wait_drained(&http, &base, &id, deadline).await?;
                say!("node {id} drained: nothing runs there");
            }
        }
        NodeCommand::Undrain { id } => {
            send(
                http.post(format!("{base}/v1/nodes/{id}/undrain")),
                "node undrain",
                &base,
            )
            .await?;
            say!("node {id} no longer draining");
        }
        NodeCommand::Remove { id, force } => {
            send(
                http.delete(format!("{base}/v1/nodes/{id}?force={force}")),
                "node remove",
                &base,
            )
            .await?;
            say!("node {id} removed");
        }
    }
    Ok(())
}

/// Polls the node list until `id` has no live allocation, printing how many are
/// left as that changes; an error after `deadline`.
async fn wait_drained(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    deadline: std::time::Duration,
) -> Result<()> {
    let until = tokio::time::Instant::now() + deadline;
    let mut last = None;
    loop {
        let r = send(http.get(format!("{base}/v1/nodes")), "node drain", base).await?;
        let nodes: Vec<NodeView> = r.json().await?;
        let left = nodes
            .iter()
            .find(|n| n.node.info.id == id)
            .map(|n| n.allocations)
            .ok_or_else(|| anyhow::anyhow!("node drain: node {id:?} is gone"))?;
        if left == 0 {
            return Ok(());
        }
        if last != Some(left) {
            say!("  {left} allocations left on {id}");
            last = Some(left);
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!(
                "node drain: {left} allocations still on {id} after {deadline:?} (it stays draining; run again to keep waiting)"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Sends a request built for a base URL; when the node answers that another node
/// runs the allocation (421), sends it there instead.
async fn to_runner(
    base: &str,
    what: &str,
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    let r = build(base)
        .send()
        .await
        .with_context(|| format!("{what}: cannot reach the node at {base}"))?;
    if r.status() == reqwest::StatusCode::MISDIRECTED_REQUEST {
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let Some(http) = body["node_http"].as_str() else {
            anyhow::bail!(
                "{what}: {}",
                body["error"].as_str().unwrap_or("runs elsewhere")
            );
        };
        return send(build(&base_url(http)), what, http).await;
    }
    if !r.status().is_success() {
        return Err(api_error(what, r).await);
    }
    Ok(r)
}

/// Streams one allocation's output to stdout, each line prefixed `[alloc] `.
async fn prefixed(base: String, alloc: String, follow: bool) -> Result<()> {
    use std::io::Write;
    let http = http_client();
    let mut r = to_runner(&base, "job logs", |b| {
        http.get(format!("{b}/v1/allocations/{alloc}/logs?follow={follow}"))
    })
    .await?;
    let mut partial = Vec::new();
    let emit = |line: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(format!("[{alloc}] ").as_bytes())
            .and_then(|_| out.write_all(line))
            .and_then(|_| out.write_all(b"\n"))
            .and_then(|_| out.flush());
    };
    while let Some(chunk) = r.chunk().await? {
        partial.extend_from_slice(&chunk);
        while let Some(i) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=i).collect();
            emit(&line[..line.len() - 1]);
        }
    }
    if !partial.is_empty() {
        emit(&partial);
    }
    Ok(())
}

/// `orion-node job logs NAME [-f]`.
async fn job_logs(base: &str, name: &str, follow: bool) -> Result<()> {
    let http = http_client();
    let allocs = |view: &JobView| -> Vec<(String, bool)> {
        let mut a: Vec<(String, bool)> = view
            .allocations
            .iter()
            .filter(|a| a.node.is_some() && a.state != orion_core::model::AllocState::Pending)
            .map(|a| (a.id.clone(), a.is_live()))
            .collect();
        a.reverse(); // oldest first
        a
    };
    let view: JobView = send(http.get(format!("{base}/v1/jobs/{name}")), "job logs", base)
        .await?
        .json()
        .await?;
    if !follow {
        for (id, _) in allocs(&view) {
            if let Err(e) = prefixed(base.to_string(), id.clone(), false).await {
                eprintln!("[{id}] {e:#}");
            }
        }
        return Ok(());
    }
    let mut started = std::collections::BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let view: JobView = send(http.get(format!("{base}/v1/jobs/{name}")), "job logs", base)
            .await?
            .json()
            .await?;
        for (id, live) in allocs(&view) {
            // Live ones are followed; finished ones are printed once.
            if started.insert(id.clone()) {
                let base = base.to_string();
                tasks.spawn(async move {
                    if let Err(e) = prefixed(base, id.clone(), live).await {
                        eprintln!("[{id}] {e:#}");
                    }
                });
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        while tasks.try_join_next().is_some() {}
    }
}

/// `orion-node alloc …`.
pub async fn alloc(addr: &str, cmd: AllocCommand) -> Result<()> {
    use std::io::Write;
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        AllocCommand::Status { id, out } => {
            let template = template(&out)?;
            let r = send(
                http.get(format!("{base}/v1/allocations/{id}")),
                "alloc status",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            if !print_raw(&out, template.as_ref(), &v)? {
                say!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        AllocCommand::Logs { id, follow } => {
            let mut r = to_runner(&base, "alloc logs", |b| {
                http.get(format!("{b}/v1/allocations/{id}/logs?follow={follow}"))
            })
            .await?;
            let mut out = std::io::stdout();
            while let Some(chunk) = r.chunk().await? {
                if out.write_all(&chunk).and_then(|_| out.flush()).is_err() {
                    // The reader went away (`| head`): it has what it wanted.
                    return Ok(());
                }
            }
            if follow {
                // The stream ended: say why, so a replaced allocation does
                // not end silently.
                let a: Value = send(
                    http.get(format!("{base}/v1/allocations/{id}")),
                    "alloc logs",
                    &base,
                )
                .await?
                .json()
                .await?;
                let by: Vec<String> = send(
                    http.get(format!(
                        "{base}/v1/allocations?job={}",
                        a["job"].as_str().unwrap_or_default()
                    )),
                    "alloc logs",
                    &base,
                )
                .await?
                .json::<Vec<Value>>()
                .await?
                .into_iter()
                .filter(|b| {
                    b["replaces"] == id.as_str()
                        || (b["slot"] == a["slot"]
                            && b["desired"] == "run"
                            && b["id"] != id.as_str()
                            && a["desired"] != "run")
                })
                .filter_map(|b| b["id"].as_str().map(str::to_string))
                .collect();
                match by.first() {
                    Some(next) => eprintln!(
                        "allocation {id} was replaced by {next}: orion-node alloc logs -f {next}"
                    ),
                    None => eprintln!(
                        "allocation {id} ended: {}{}",
                        a["state"].as_str().unwrap_or("?"),
                        a["message"]
                            .as_str()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ),
                }
            }
        }
        AllocCommand::Exec {
            id,
            command,
            interactive,
            tty,
        } if interactive || tty => {
            let code = crate::attach::exec(&base, &id, &command, tty).await?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        AllocCommand::Exec { id, command, .. } => {
            let body = serde_json::json!({ "command": command });
            let r = to_runner(&base, "alloc exec", |b| {
                http.post(format!("{b}/v1/allocations/{id}/exec"))
                    .json(&body)
            })
            .await?;
            let v: Value = r.json().await?;
            crate::out::raw(format_args!("{}", v["stdout"].as_str().unwrap_or("")), true);
            eprint!("{}", v["stderr"].as_str().unwrap_or(""));
            if v["truncated"] == true {
                eprintln!(
                    "orion-node: output cut at 1 MiB per stream; `alloc exec -i {id} …` streams it whole"
                );
            }
            let code = v["exit_code"].as_i64().unwrap_or(0);
            if code != 0 {
                std::process::exit(code.clamp(1, 255) as i32);
            }
        }
        AllocCommand::Stats { id, history, out } => {
            let template = template(&out)?;
            let r = to_runner(&base, "alloc stats", |b| {
                http.get(format!("{b}/v1/allocations/{id}/stats?history={history}"))
            })
            .await?;
            let v: Value = r.json().await?;
            if !print_raw(&out, template.as_ref(), &v)? {
                say!("{}", stats_text(&v["current"]));
                if let Some(samples) = v["history"].as_array() {
                    say!("\n{:<10} {:>8} {:>12}", "AGE", "CPU", "MEMORY");
                    let now = v["history"]
                        .as_array()
                        .and_then(|h| h.last())
                        .and_then(|s| s["at_ms"].as_u64())
                        .unwrap_or(0);
                    for s in samples {
                        let age = now.saturating_sub(s["at_ms"].as_u64().unwrap_or(0)) / 1000;
                        let cpu = s["cpu_percent"]
                            .as_f64()
                            .map_or("-".to_string(), |p| format!("{p:.1}%"));
                        say!(
                            "{:<10} {cpu:>8} {:>12}",
                            format!("-{age}s"),
                            human_bytes(s["memory_bytes"].as_u64().unwrap_or(0))
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `alloc stats` for people: CPU in percent of a core, memory against its
/// limit, network and processes in human units.
fn stats_text(c: &Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let cpu = c["cpu_percent"]
        .as_f64()
        .map_or("- (measured from the next sample on)".to_string(), |p| {
            format!("{p:.1}% of a core")
        });
    let memory = match c["memory_percent"].as_f64() {
        Some(p) => format!(
            "{} of {} ({p:.1}%)",
            human_bytes(n("memory_bytes")),
            human_bytes(n("memory_limit_bytes"))
        ),
        None => format!("{} (no limit)", human_bytes(n("memory_bytes"))),
    };
    format!(
        "cpu      {cpu}\nmemory   {memory}\nnetwork  {} in, {} out\npids     {}",
        human_bytes(n("network_rx_bytes")),
        human_bytes(n("network_tx_bytes")),
        n("pids")
    )
}

/// Bytes in binary units (`3.1 MiB`).
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `orion-node events`: the event stream as lines (`INDEX TOPIC KEY what`),
/// or its JSON. Without `--follow`, stops at the index the node had applied
/// when asked (or when the stream stays quiet for a second).
pub async fn events(
    addr: &str,
    follow: bool,
    topics: &[String],
    index: Option<u64>,
    json: bool,
) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    let mut query: Vec<(&str, String)> = topics.iter().map(|t| ("topic", t.clone())).collect();
    let until = if follow {
        None
    } else {
        let r = send(
            http.get(format!("{base}/v1/status/leader")),
            "events",
            &base,
        )
        .await?;
        r.headers()
            .get("x-orion-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (index, follow) {
        (Some(i), _) => query.push(("index", i.to_string())),
        (None, false) => query.push(("index", "0".into())),
        (None, true) => {}
    }
    let qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    let url = format!("{base}/v1/events?{}", qs.join("&"));
    let mut r = send(http.get(url), "events", &base).await?;
    let mut buf = Vec::new();
    loop {
        let chunk = if follow {
            r.chunk().await?
        } else {
            match tokio::time::timeout(std::time::Duration::from_secs(1), r.chunk()).await {
                Ok(c) => c?,
                Err(_) => None,
            }
        };
        let Some(chunk) = chunk else { return Ok(()) };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let v: Value = serde_json::from_slice(&line)?;
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                eprintln!("warning: {e}");
                continue;
            }
            let at = v["index"].as_u64().unwrap_or(0);
            if json {
                crate::out::raw(format_args!("{}\n", v), true);
            } else {
                say!("{}", event_line(&v));
            }
            if until.is_some_and(|u| at >= u) {
                return Ok(());
            }
        }
    }
}

/// `v` fit for a query string.
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'*' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One event for people: index, topic, key and what it now is.
fn event_line(v: &Value) -> String {
    let o = &v["object"];
    let what = match v["topic"].as_str().unwrap_or("") {
        _ if o.is_null() => "removed".to_string(),
        "Job" => format!(
            "version {} {}",
            o["version"],
            o["status"].as_str().unwrap_or("")
        ),
        "Allocation" => format!(
            "{} on {}{}",
            o["state"].as_str().unwrap_or("?"),
            o["node"].as_str().unwrap_or("-"),
            o["message"]
                .as_str()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        "Node" => o["status"].as_str().unwrap_or("?").to_string(),
        "Deployment" => format!(
            "#{} of v{} {}",
            o["id"],
            o["job_version"],
            o["status"].as_str().unwrap_or("")
        ),
        "Leader" => format!("leads in term {}", o["term"]),
        _ => String::new(),
    };
    format!(
        "{:<8} {:<11} {:<24} {what}",
        v["index"],
        v["topic"].as_str().unwrap_or("?"),
        v["key"].as_str().unwrap_or("?")
    )
}
