//! `orion-node secret …`: write, list and forget secrets over a node's API.
//! The value is read from a file or standard input, sent once, and never
//! printed.

use std::io::Read;

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::SecretCommand;
use crate::client::{base_url, http_client, print_raw, send, template};
use crate::out::{say, Table};

/// The largest value sent, as the API caps it.
const MAX: usize = orion::secret::MAX_SECRET_BYTES;

/// `orion-node secret …`.
pub async fn secret(addr: &str, cmd: SecretCommand) -> Result<()> {
    let base = base_url(addr);
    let http = http_client();
    match cmd {
        SecretCommand::Create { name, from_file } => {
            let value = read_value(&from_file)?;
            let body = Zeroizing::new(serde_json::to_vec(&serde_json::json!({
                "name": name,
                "data_base64": Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*value)).as_str(),
            }))?);
            let r = send(
                http.post(format!("{base}/v1/secrets"))
                    .header("content-type", "application/json")
                    .body(body.to_vec()),
                "secret create",
                &base,
            )
            .await?;
            let v: Value = r.json().await?;
            say!(
                "secret {name} version {} ({} bytes)",
                v["version"].as_u64().unwrap_or(0),
                value.len()
            );
        }
        SecretCommand::List { out } => {
            let template = template(&out)?;
            let r = send(http.get(format!("{base}/v1/secrets")), "secret list", &base).await?;
            let v: Value = r.json().await?;
            if print_raw(&out, template.as_ref(), &v)? {
                return Ok(());
            }
            let list: Vec<orion::secret::SecretMeta> = serde_json::from_value(v)?;
            let mut t = Table::new(&["NAME", "VERSION", "KEPT", "CREATED", "UPDATED"]);
            for s in list {
                t.row(vec![
                    s.name,
                    s.version.to_string(),
                    s.versions.len().to_string(),
                    time(s.created_ms),
                    time(s.updated_ms),
                ]);
            }
            t.print();
        }
        SecretCommand::Rm { name } => {
            send(
                http.delete(format!("{base}/v1/secrets/{name}")),
                "secret rm",
                &base,
            )
            .await?;
            say!("secret {name} removed with its versions");
        }
    }
    Ok(())
}

/// The value in `path`, or standard input for `-`, refused over the cap
/// before anything is sent.
fn read_value(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::new());
    let limit = MAX as u64 + 1;
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut value)
            .context("secret create: reading standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut value))
            .with_context(|| format!("secret create: reading {}", path.display()))?;
    }
    if value.len() > MAX {
        anyhow::bail!(
            "secret create: the value is over the limit of {} KiB (1 MiB)",
            MAX / 1024
        );
    }
    Ok(value)
}

fn time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}
