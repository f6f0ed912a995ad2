//! A task's secrets: files mounted from cluster secrets, and environment
//! variables set from them (see [`crate::secret`]).
//!
//! ```yaml
//! task:
//!   image: postgres:16
//!   secrets:
//!     - name: db-password                 # at /run/secrets/db-password, mode 0400
//!     - name: tls-key
//!       target: /etc/tls/key.pem
//!       mode: "0440"
//!   env_from_secret:
//!     PGPASSWORD: db-password             # the secret's value as $PGPASSWORD
//! ```
//!
//! Files are the way to prefer: a variable set from a secret is part of the
//! container's configuration, which the engine keeps on its node's disk and
//! shows to anyone who may `docker inspect` there (as Swarm and Kubernetes
//! do with secrets in environment variables).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a secret is mounted when its mount names no `target`:
/// `/run/secrets/<name>`, as Swarm and Compose do.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The mode of a secret's file when its mount gives none: readable by its
/// owner only.
pub const DEFAULT_SECRET_MODE: u32 = 0o400;

/// One secret a task mounts as a read-only file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretMount {
    /// The secret's name (`orion-node secret create`).
    pub name: String,
    /// Where the file appears in the container (absolute, not `/`); default
    /// `/run/secrets/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The file's mode, as an octal string (`"0440"`); default `"0400"`. The
    /// file belongs to the task's user when the task runs as a numeric
    /// `uid[:gid]`, else to root: a task that runs as a named user needs a
    /// mode others may read (`"0444"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mode: Option<FileMode>,
}

impl SecretMount {
    /// Where the file appears in the container.
    pub fn target(&self) -> String {
        self.target
            .clone()
            .unwrap_or_else(|| format!("{SECRETS_DIR}/{}", self.name))
    }

    /// The file's mode.
    pub fn mode(&self) -> u32 {
        self.mode.map_or(DEFAULT_SECRET_MODE, |m| m.0)
    }
}

/// A file mode, written as an octal string (`"0400"`, `"440"`, `"0o440"`).
/// A bare number is refused: YAML reads `0440` as the decimal 440, which is
/// another mode altogether.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let Some(s) = v.as_str() else {
            return Err(D::Error::custom(format!(
                "write the mode as an octal string (\"0440\"), not {v}: a bare number is read as decimal"
            )));
        };
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let mode = u32::from_str_radix(digits, 8)
            .ok()
            .filter(|_| !digits.is_empty() && digits.len() <= 4)
            .ok_or_else(|| D::Error::custom(format!("{s:?} is not an octal file mode")))?;
        Ok(FileMode(mode))
    }
}

/// The problems of a task's `secrets` and `env_from_secret` (field paths
/// under `task`), given the targets its volumes already take and its `env`.
pub(crate) fn problems(
    secrets: &[SecretMount],
    env_from_secret: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    taken: &mut std::collections::BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let at = format!("task.secrets[{i}]");
        if let Err(p) = crate::secret::check_name(&s.name) {
            out.push((format!("{at}.name"), p));
        }
        let target = s.target();
        if !target.starts_with('/') || target == "/" || target.ends_with('/') {
            out.push((
                format!("{at}.target"),
                format!("{target:?} must be an absolute path to a file, other than /"),
            ));
        } else if target.split('/').any(|c| c == ".." || c == ".") {
            out.push((
                format!("{at}.target"),
                format!("{target:?} must not hold `.` or `..`"),
            ));
        } else if !taken.insert(target.clone()) {
            out.push((
                format!("{at}.target"),
                format!("{target:?} is mounted twice"),
            ));
        }
        if s.mode() > 0o777 {
            out.push((
                format!("{at}.mode"),
                format!(
                    "{:04o} sets more than permission bits (at most 0777)",
                    s.mode()
                ),
            ));
        }
    }
    for (var, name) in env_from_secret {
        let at = format!("task.env_from_secret.{var}");
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            out.push((at, "not a valid variable name".into()));
            continue;
        }
        if env.contains_key(var) {
            out.push((
                at,
                format!("{var} is also set in task.env: give it one value"),
            ));
        } else if let Err(p) = crate::secret::check_name(name) {
            out.push((at, p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::spec::{FieldError, JobSpec};

    fn errors(task_extra: &str) -> Vec<FieldError> {
        let text = format!(
            "name: api\ntask:\n  image: img\n  env: {{ PLAIN: x }}\n  volumes: [{{ name: data, target: /data }}]\n{task_extra}"
        );
        match JobSpec::parse(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors,
        }
    }

    fn fields(task_extra: &str) -> Vec<String> {
        errors(task_extra).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn secrets_parse_with_their_defaults() {
        let spec = JobSpec::parse(
            "name: api\ntask:\n  image: img\n  secrets:\n    - name: db\n    - { name: tls, target: /etc/tls/key.pem, mode: \"0440\" }\n  env_from_secret: { PGPASSWORD: db }\n",
        )
        .unwrap();
        let s = &spec.task.secrets;
        assert_eq!(
            (s[0].target(), s[0].mode()),
            ("/run/secrets/db".into(), 0o400)
        );
        assert_eq!(
            (s[1].target(), s[1].mode()),
            ("/etc/tls/key.pem".into(), 0o440)
        );
        assert_eq!(spec.task.env_from_secret["PGPASSWORD"], "db");
        assert_eq!(
            spec.task.secret_names().into_iter().collect::<Vec<_>>(),
            ["db", "tls"]
        );
        // Stored and answered as given: references only, the mode as octal text.
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains(r#""mode":"0440""#), "{json}");
        assert_eq!(JobSpec::parse(&json).unwrap(), spec);
        assert!(fields("  secrets: [{ name: x, mode: \"0o644\" }]\n").is_empty());
    }

    #[test]
    fn bad_secret_references_name_their_fields() {
        let cases = [
            ("  secrets: [{ name: Bad_Name }]\n", "task.secrets[0].name"),
            (
                "  secrets: [{ name: x, target: etc/x }]\n",
                "task.secrets[0].target",
            ),
            (
                "  secrets: [{ name: x, target: / }]\n",
                "task.secrets[0].target",
            ),
            (
                "  secrets: [{ name: x, target: /a/../b }]\n",
                "task.secrets[0].target",
            ),
            (
                "  secrets: [{ name: x, target: /run/ }]\n",
                "task.secrets[0].target",
            ),
            (
                "  secrets: [{ name: x, target: /s }, { name: y, target: /s }]\n",
                "task.secrets[1].target",
            ),
            // Two secrets at one default target, and one on a volume's target.
            (
                "  secrets: [{ name: x }, { name: x }]\n",
                "task.secrets[1].target",
            ),
            (
                "  secrets: [{ name: x, target: /data }]\n",
                "task.secrets[0].target",
            ),
            (
                "  secrets: [{ name: x, mode: \"1755\" }]\n",
                "task.secrets[0].mode",
            ),
            (
                "  env_from_secret: { TOKEN: Not-Dns }\n",
                "task.env_from_secret.TOKEN",
            ),
            (
                "  env_from_secret: { PLAIN: db }\n",
                "task.env_from_secret.PLAIN",
            ),
            (
                "  env_from_secret: { \"A=B\": db }\n",
                "task.env_from_secret.A=B",
            ),
        ];
        for (extra, field) in cases {
            assert_eq!(fields(extra), [field], "{extra}");
        }
        let e = errors("  secrets: [{ name: x, target: /data }]\n");
        assert!(e[0].problem.contains("mounted twice"), "{}", e[0]);
        let e = errors("  secrets: [{ name: Bad_Name }]\n");
        assert!(e[0].problem.starts_with("secret name"), "{}", e[0]);
    }

    #[test]
    fn a_mode_must_be_octal_text() {
        for bad in ["mode: 440", "mode: \"9\"", "mode: \"\"", "mode: \"07777\""] {
            let e = errors(&format!("  secrets: [{{ name: x, {bad} }}]\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].field.starts_with("task.secrets[0]"), "{bad}: {}", e[0]);
        }
        let e = errors("  secrets: [{ name: x, mode: 440 }]\n");
        assert!(e[0].problem.contains("octal string"), "{}", e[0]);
    }
}
