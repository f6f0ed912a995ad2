//! `Rootfs`: a root filesystem assembled in memory and written as a tarball.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable naming the busybox binary to use.
pub const BUSYBOX_ENV: &str = "ORION_BUSYBOX";

/// Where busybox is looked for when [`BUSYBOX_ENV`] is not set.
pub const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The applets linked into `/bin` of a busybox rootfs.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "httpd", "sleep", "echo", "cat", "ls", "env", "wget", "nc", "true", "false",
    "kill", "ps", "printf", "test", "[", "mkdir", "rm", "cp", "mv", "grep", "sed", "head", "tail",
    "wc", "id", "hostname", "date", "touch", "yes", "seq", "timeout", "uname", "pwd",
];

/// Modification time of every entry: fixed, so the same content makes the same tarball.
const MTIME: u64 = 1_700_000_000;

/// Why a rootfs could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No busybox binary was found.
    #[error(
        "no busybox binary found (looked at {tried}); set {BUSYBOX_ENV} or install busybox-static"
    )]
    NoBusybox {
        /// The paths looked at.
        tried: String,
    },
    /// The busybox found is dynamically linked, so it cannot run in an empty rootfs.
    #[error("{0} is dynamically linked; a static busybox (busybox-static) is needed")]
    DynamicBusybox(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The shared libraries of an executable could not be listed.
    #[error("cannot list the libraries of {exe}: {reason}")]
    Ldd {
        /// The executable.
        exe: PathBuf,
        /// Why.
        reason: String,
    },
    /// The tarball could not be written.
    #[error("cannot write the rootfs tarball")]
    Tar(#[source] io::Error),
}

/// One entry of a rootfs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
}

/// A root filesystem in memory: directories, files and symlinks by absolute path.
///
/// ```
/// use orion_runtime::image::Rootfs;
///
/// let tar = Rootfs::new()
///     .file("/www/index.html", "hello", 0o644)
///     .to_tar()
///     .unwrap();
/// assert!(!tar.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rootfs {
    /// Entries by path relative to the root (`etc/passwd`); sorted, so parents come first.
    entries: BTreeMap<String, Entry>,
}

impl Default for Rootfs {
    fn default() -> Self {
        Rootfs::new()
    }
}

/// `/a/b/` → `a/b`.
fn relative(path: &str) -> String {
    path.trim_matches('/').to_string()
}

impl Rootfs {
    /// The skeleton every workload may need: `/bin`, `/etc/passwd` and `/etc/group`
    /// with root and nobody, `/root`, and a world-writable sticky `/tmp`.
    pub fn new() -> Rootfs {
        Rootfs {
            entries: BTreeMap::new(),
        }
        .dir("/bin", 0o755)
        .dir("/root", 0o700)
        .dir("/tmp", 0o1777)
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        )
        .file("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
    }

    /// The skeleton plus the busybox found by [`find_busybox`] at `/bin/busybox`, with
    /// every applet of [`APPLETS`] linked to it.
    pub fn busybox() -> Result<Rootfs, ImageError> {
        Rootfs::with_busybox(&find_busybox()?)
    }

    /// The skeleton plus the given (static) busybox and its [`APPLETS`].
    pub fn with_busybox(path: &Path) -> Result<Rootfs, ImageError> {
        let data = std::fs::read(path).map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if has_interpreter(&data) {
            return Err(ImageError::DynamicBusybox(path.to_path_buf()));
        }
        let mut rootfs = Rootfs::new().file("/bin/busybox", data, 0o755);
        for applet in APPLETS {
            rootfs = rootfs.symlink(&format!("/bin/{applet}"), "busybox");
        }
        Ok(rootfs)
    }

    /// Adds a directory (and its parents).
    pub fn dir(mut self, path: &str, mode: u32) -> Rootfs {
        self.insert(path, Entry::Dir { mode });
        self
    }

    /// Adds a file (and its parent directories), replacing any entry at that path.
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Rootfs {
        let data = data.into();
        self.insert(path, Entry::File { data, mode });
        self
    }

    /// Adds a symbolic link to `target` (and its parent directories).
    pub fn symlink(mut self, path: &str, target: &str) -> Rootfs {
        let target = target.to_string();
        self.insert(path, Entry::Symlink { target });
        self
    }

    /// The paths it holds, relative to the root (`bin/sh`), parents first.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn insert(&mut self, path: &str, entry: Entry) {
        let rel = relative(path);
        let mut parent = Path::new(&rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry::Dir { mode: 0o755 });
            parent = p.parent();
        }
        self.entries.insert(rel, entry);
    }

    /// Writes it as an uncompressed tarball, owned by root.
    pub fn to_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            let result = match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                }
            };
            result.map_err(ImageError::Tar)?;
        }
        tar.into_inner().map_err(ImageError::Tar)
    }
}

/// The busybox to use: `$ORION_BUSYBOX` when set (it must exist), else the first of
/// [`BUSYBOX_PATHS`] that exists.
pub fn find_busybox() -> Result<PathBuf, ImageError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(BUSYBOX_ENV) {
        Some(path) if !path.is_empty() => vec![PathBuf::from(path)],
        _ => BUSYBOX_PATHS.iter().map(PathBuf::from).collect(),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ImageError::NoBusybox {
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Whether a 64-bit little-endian ELF binary names a program interpreter (is dynamic).
/// Anything else is given the benefit of the doubt.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // Magic, 64-bit class, little-endian.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count)).any(|i| u32_at(phoff + i * usize::from(entsize)) == Some(PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> BTreeMap<String, (tar::EntryType, u32, Option<String>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                let h = e.header();
                (path, (h.entry_type(), h.mode().unwrap(), link))
            })
            .collect()
    }

    #[test]
    fn skeleton_has_passwd_group_and_sticky_tmp() {
        let tar = Rootfs::new().to_tar().unwrap();
        let e = entries(&tar);
        assert_eq!(e["tmp/"].1, 0o1777);
        assert_eq!(e["etc/passwd"].0, tar::EntryType::Regular);
        assert!(e.contains_key("etc/group"));
        assert!(e.contains_key("etc/"), "parent directories are added");
    }

    #[test]
    fn files_get_parents_and_modes() {
        let tar = Rootfs::new()
            .file("/www/cgi-bin/env", "#!/bin/sh\nenv\n", 0o755)
            .symlink("/bin/sh", "busybox")
            .to_tar()
            .unwrap();
        let e = entries(&tar);
        assert_eq!(e["www/"].0, tar::EntryType::Directory);
        assert_eq!(e["www/cgi-bin/"].0, tar::EntryType::Directory);
        assert_eq!(e["www/cgi-bin/env"].1, 0o755);
        assert_eq!(e["bin/sh"].2.as_deref(), Some("busybox"));
    }

    #[test]
    fn busybox_rootfs_links_every_applet() {
        let Ok(path) = find_busybox() else {
            assert!(
                !orion_core::testing::in_ci(),
                "busybox-static is needed in CI: .ci/run installs it"
            );
            eprintln!("SKIP: no busybox on this host");
            return;
        };
        let rootfs = Rootfs::with_busybox(&path).unwrap();
        let paths: Vec<&str> = rootfs.paths().collect();
        assert!(paths.contains(&"bin/busybox"));
        for applet in ["sh", "httpd", "sleep", "nc", "wget", "kill", "ps"] {
            assert!(
                paths.contains(&format!("bin/{applet}").as_str()),
                "{applet}"
            );
        }
    }

    #[test]
    fn dynamic_binaries_are_told_apart() {
        // This test binary itself is dynamically linked on glibc hosts.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let dynamic = has_interpreter(&me);
        let built_static = cfg!(target_feature = "crt-static");
        assert_eq!(dynamic, !built_static);
        assert!(!has_interpreter(b"#!/bin/sh\n"));
    }
}
