//! A script task: `script: { lang, content, args }` instead of a command. The
//! node writes the content to a file, mounts it read-only at
//! [`SCRIPT_PATH`] and runs it with the language's interpreter, in the
//! task's image or, when the task names none, the node's runner image for
//! the language.

use serde::{Deserialize, Serialize};

/// Where the script is mounted in the task.
pub const SCRIPT_PATH: &str = "/orion/script";

/// The largest script accepted.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

/// A script to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    /// Its language.
    pub lang: Lang,
    /// Its text (at most 1 MiB).
    pub content: String,
    /// Arguments it is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// A script language.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// POSIX sh.
    Sh,
    /// Bash.
    Bash,
    /// Python 3.
    Python,
    /// Node.js.
    Node,
}

impl Lang {
    /// Every language.
    pub const ALL: [Lang; 4] = [Lang::Sh, Lang::Bash, Lang::Python, Lang::Node];

    /// Its name in specs (`python`).
    pub fn name(self) -> &'static str {
        match self {
            Lang::Sh => "sh",
            Lang::Bash => "bash",
            Lang::Python => "python",
            Lang::Node => "node",
        }
    }

    /// The interpreter that runs a script file.
    pub fn interpreter(self) -> &'static str {
        match self {
            Lang::Sh => "sh",
            Lang::Bash => "bash",
            Lang::Python => "python3",
            Lang::Node => "node",
        }
    }

    /// The runner image a node uses when neither the task nor the node's
    /// `script_images` names one (as Cronium's `images:`; none of these is
    /// pulled by Orion here: the image must be on the node).
    pub fn default_image(self) -> &'static str {
        match self {
            Lang::Sh => "alpine:3",
            Lang::Bash => "bash:5",
            Lang::Python => "python:3-slim",
            Lang::Node => "node:22-slim",
        }
    }
}

impl ScriptSpec {
    /// The command that runs it, mounted at [`SCRIPT_PATH`].
    pub fn command(&self) -> Vec<String> {
        let mut c = vec![self.lang.interpreter().to_string(), SCRIPT_PATH.to_string()];
        c.extend(self.args.iter().cloned());
        c
    }
}
