//! A headless Chromium driven over WebDriver (a chromedriver started here,
//! through `fantoccini`): shared by the dashboard's browser test and its
//! first-load bench.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use crate::support::*;

/// How long a page gets to show what a check waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// The first of `names` found on the PATH.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or `None` after a SKIP line (a panic under CI (`CI` set, as `true` or `1`)).
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if orion_core::testing::in_ci() => {
            panic!(
                "chromium or chromedriver missing in CI (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!("SKIP: chromium or chromedriver not on the PATH");
            None
        }
    }
}

/// A chromedriver and the browser it starts: on drop, kills the driver and
/// every process that runs on this browser's own profile dir (the browser and
/// its helpers), also when the test fails.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning chromedriver");
        let mut browser = Browser {
            client: None,
            driver,
            profile: tempfile::tempdir().unwrap(),
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to answer", PAGE_WAIT, async || {
            get_json(&format!("{url}/status")).await?["value"]["ready"]
                .as_bool()?
                .then_some(())
        })
        .await;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session");
        browser.client = Some(client);
        browser
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Ends the session (the browser quits); the driver goes on drop.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // The browser outlives a killed driver: find it by its profile dir.
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        for pid in pids_with_arg(&marker) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// Process ids whose command line has `arg`.
pub fn pids_with_arg(arg: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.to_string();
            pid.chars().all(|c| c.is_ascii_digit()).then_some(())?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|a| a == arg.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// Runs `script` (a function body) in the page until it returns something
/// other than null, false or ""; that value.
pub async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let v = c
            .execute(script, Vec::new())
            .await
            .expect("running a script");
        if !(v.is_null() || v == false || v == "") {
            return v;
        }
        if Instant::now() > deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let text: Value = c
                .execute(
                    "return document.getElementById('view').innerText",
                    Vec::new(),
                )
                .await
                .unwrap_or_default();
            panic!("timed out after {PAGE_WAIT:?} waiting for {what} on {url}; the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
