//! A rootfs around one of the host's own dynamically linked executables: the
//! binary plus the shared libraries `ldd` lists, at the paths the dynamic
//! loader looks for them. This is how an image is built from Orion's own
//! binary with nothing but what the build already has (no busybox, no registry).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::rootfs::{ImageError, Rootfs};

impl Rootfs {
    /// The skeleton plus `exe` at `at` and every shared library it needs (the
    /// loader included), copied from the host.
    ///
    /// ```no_run
    /// use orion_runtime::image::Rootfs;
    /// let exe = std::env::current_exe().unwrap();
    /// let rootfs = Rootfs::with_executable(&exe, "/app").unwrap();
    /// assert!(rootfs.paths().any(|p| p == "app"));
    /// ```
    pub fn with_executable(exe: &Path, at: &str) -> Result<Rootfs, ImageError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ImageError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut rootfs = Rootfs::new().file(at, read(exe)?, 0o755);
        for lib in shared_libraries(exe)? {
            let data = read(&lib)?;
            rootfs = rootfs.file(&lib.to_string_lossy(), data, 0o755);
        }
        Ok(rootfs)
    }
}

/// The shared libraries `exe` loads, as `ldd` resolves them on this host.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|source| ImageError::Ldd {
            exe: exe.to_path_buf(),
            reason: format!("cannot run ldd: {source}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    // A static executable: ldd says so and exits 1; it needs no libraries.
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(ImageError::Ldd {
            exe: exe.to_path_buf(),
            reason: err.trim().to_string(),
        });
    }
    parse_ldd(&text).map_err(|reason| ImageError::Ldd {
        exe: exe.to_path_buf(),
        reason,
    })
}

/// Paths from `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`
/// and the loader's `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let target = rest.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} is not found on this host", name.trim()));
                }
                target.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_the_library_and_loader_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f45)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f45)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f45)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        let e = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(e.contains("libfoo.so.1 is not found"), "{e}");
    }

    #[test]
    fn this_test_binary_packs_with_its_libraries() {
        let exe = std::env::current_exe().unwrap();
        let rootfs = Rootfs::with_executable(&exe, "/app").unwrap();
        let paths: Vec<&str> = rootfs.paths().collect();
        assert!(paths.contains(&"app"), "{paths:?}");
        assert!(paths.iter().any(|p| p.contains("libc.so")), "{paths:?}");
    }
}
