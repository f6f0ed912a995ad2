//! How locked down a task runs: `security: restricted` (Kubernetes'
//! Restricted profile, the default for batch and script tasks), `default`
//! (the engine's defaults, the default for services), or the profile with
//! settings relaxed (`security: { user: "0", read_only_root: false,
//! cap_add: [NET_BIND_SERVICE] }`).

use serde::{Deserialize, Serialize};

/// A task's `security` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecuritySpec {
    /// A profile by name.
    Profile(Profile),
    /// A profile with some settings changed.
    Custom(SecurityOverrides),
}

/// A named profile.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The engine's defaults (root in the image's user, its capabilities).
    #[default]
    Default,
    /// Non-root (65534:65534), no capabilities, no new privileges, a read-only
    /// root with a tmpfs `/tmp` and a writable `/workspace`, 256 processes at
    /// most, no swap beyond memory.
    Restricted,
}

/// Settings that change a profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityOverrides {
    /// The profile changed (default: the task's default profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// `uid[:gid]` to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A read-only root file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root: Option<bool>,
    /// Capabilities added back (`NET_BIND_SERVICE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Forbid gaining privileges (setuid binaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// Most processes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
}

/// What applies to a task, after its profile and overrides: what the runtime
/// enforces and `job status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Security {
    /// The profile it started from.
    pub profile: Profile,
    /// `uid[:gid]`, or the image's user when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Read-only root, with a tmpfs `/tmp` and `/workspace`.
    pub read_only_root: bool,
    /// Every capability dropped, but those in `cap_add`.
    pub drop_all_capabilities: bool,
    /// Capabilities kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
    /// Most processes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
    /// Swap limited to memory (none beyond it).
    pub no_swap: bool,
}

/// The restricted profile's user.
pub const RESTRICTED_USER: &str = "65534:65534";

/// The restricted profile's process limit.
pub const RESTRICTED_PIDS: u32 = 256;

impl Security {
    /// A profile's settings.
    pub fn of(profile: Profile) -> Security {
        match profile {
            Profile::Default => Security::default(),
            Profile::Restricted => Security {
                profile,
                user: Some(RESTRICTED_USER.into()),
                read_only_root: true,
                drop_all_capabilities: true,
                cap_add: Vec::new(),
                no_new_privileges: true,
                pids_limit: Some(RESTRICTED_PIDS),
                no_swap: true,
            },
        }
    }

    /// What `spec` makes of a task whose default profile is `default`.
    pub fn resolve(spec: Option<&SecuritySpec>, default: Profile) -> Security {
        match spec {
            None => Security::of(default),
            Some(SecuritySpec::Profile(p)) => Security::of(*p),
            Some(SecuritySpec::Custom(o)) => {
                let mut s = Security::of(o.profile.unwrap_or(default));
                if let Some(u) = &o.user {
                    s.user = Some(u.clone());
                }
                if let Some(r) = o.read_only_root {
                    s.read_only_root = r;
                }
                if !o.cap_add.is_empty() {
                    s.cap_add = o.cap_add.clone();
                }
                if let Some(n) = o.no_new_privileges {
                    s.no_new_privileges = n;
                }
                if let Some(p) = o.pids_limit {
                    s.pids_limit = Some(p);
                }
                s
            }
        }
    }
}

impl SecuritySpec {
    /// What is wrong with it, each with the field under `at`.
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let SecuritySpec::Custom(o) = self {
            if let Some(u) = &o.user {
                let ok = !u.is_empty()
                    && u.split(':').count() <= 2
                    && u.split(':').all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    });
                if !ok {
                    out.push((format!("{at}.user"), format!("{u:?} is not uid[:gid]")));
                }
            }
            for (i, c) in o.cap_add.iter().enumerate() {
                if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_') {
                    out.push((
                        format!("{at}.cap_add[{i}]"),
                        format!("{c:?} is not a capability name (NET_BIND_SERVICE)"),
                    ));
                }
            }
            if o.pids_limit == Some(0) {
                out.push((format!("{at}.pids_limit"), "must be positive".into()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_overrides_resolve() {
        let r = Security::resolve(None, Profile::Restricted);
        assert_eq!(r.user.as_deref(), Some("65534:65534"));
        assert!(r.read_only_root && r.drop_all_capabilities && r.no_new_privileges && r.no_swap);
        assert_eq!(r.pids_limit, Some(256));
        assert_eq!(
            Security::resolve(None, Profile::Default),
            Security::default()
        );
        let opt_in: SecuritySpec = serde_json::from_str(r#""restricted""#).unwrap();
        assert_eq!(Security::resolve(Some(&opt_in), Profile::Default), r);
        let relaxed: SecuritySpec = serde_json::from_str(
            r#"{"user": "0", "read_only_root": false, "cap_add": ["NET_BIND_SERVICE"]}"#,
        )
        .unwrap();
        let s = Security::resolve(Some(&relaxed), Profile::Restricted);
        assert_eq!(s.user.as_deref(), Some("0"));
        assert!(!s.read_only_root && s.drop_all_capabilities && s.no_new_privileges);
        assert_eq!(s.cap_add, ["NET_BIND_SERVICE"]);
        let bad: SecuritySpec =
            serde_json::from_str(r#"{"user": "a:b:c", "cap_add": ["net admin"], "pids_limit": 0}"#)
                .unwrap();
        let p = bad.problems("task.security");
        let fields: Vec<&str> = p.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "task.security.user",
                "task.security.cap_add[0]",
                "task.security.pids_limit"
            ]
        );
    }
}
