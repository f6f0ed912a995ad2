//! Script tasks and secure defaults on the real engine: a `sh` script with
//! no image runs in the node's runner image, mounted read-only at
//! /orion/script, as 65534 with a read-only root, a writable /tmp (tmpfs)
//! and /workspace (a directory of the node); `docker inspect` of the real containers shows each setting of
//! the restricted profile, a relaxed one, and a service's defaults; bad
//! scripts are refused naming the field.

use orion_core::testing::OutputWithin;
use std::process::Command;
use std::time::Duration;

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

fn inspect(container: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", container])
        .output_within(orion_core::testing::DOCKER_CALL)
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
}

async fn running_container(addr: &str, job: &str) -> (String, String) {
    let id = running_alloc(addr, job, Duration::from_secs(60)).await;
    let c = wait_for("its container", Duration::from_secs(10), async || {
        Containers::running_of_alloc(&id).into_iter().next()
    })
    .await;
    (id, c)
}

#[tokio::test]
async fn scripts_run_restricted_and_profiles_show_on_the_container() {
    if !engine().await {
        return;
    }
    let solo = Solo::start_with("e2e-script", |spec, _| {
        spec.extra
            .extend(["--script-image".into(), format!("sh={}", image::DEMO_IMAGE)]);
    })
    .await;
    let addr = solo.addr.clone();
    let script = "echo \"hello $1\"; id -u; \
        if touch /x 2>/dev/null; then echo rw-root; else echo ro-root; fi; \
        touch /tmp/t && echo tmp-ok; touch /workspace/w && echo ws-ok; pwd; \
        if echo x > /orion/script 2>/dev/null; then echo script-rw; else echo script-ro; fi; \
        echo ready; sleep 60";
    let job = json!({
        "name": "scr", "type": "batch",
        "task": {
            "script": { "lang": "sh", "content": script, "args": ["world"] },
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        }
    });
    submit(&addr, &job).await.unwrap();
    let (alloc, container) = running_container(&addr, "scr").await;
    let logs = wait_for("the script's output", Duration::from_secs(30), async || {
        let t = get_text(&format!("{addr}/v1/allocations/{alloc}/logs")).await?;
        t.contains("ready").then_some(t)
    })
    .await;
    for want in [
        "hello world",
        "65534",
        "ro-root",
        "tmp-ok",
        "ws-ok",
        "/workspace",
        "script-ro",
    ] {
        assert!(logs.contains(want), "{want:?} not in {logs}");
    }
    let c = inspect(&container);
    let h = &c["HostConfig"];
    assert_eq!(c["Config"]["User"], "65534:65534");
    assert_eq!(
        c["Config"]["Image"],
        image::DEMO_IMAGE,
        "the node's runner image for sh"
    );
    assert_eq!(c["Config"]["Cmd"], json!(["sh", "/orion/script", "world"]));
    assert_eq!(h["CapDrop"], json!(["ALL"]));
    assert!(
        h["SecurityOpt"].to_string().contains("no-new-privileges"),
        "{h}"
    );
    assert_eq!(h["ReadonlyRootfs"], true);
    assert!(h["Tmpfs"]["/tmp"].is_string(), "{h}");
    // /workspace is a directory of the node (so outputs outlive the run).
    let ws = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/workspace")
        .cloned()
        .unwrap();
    assert_eq!(
        (ws["Type"].as_str(), ws["RW"].as_bool()),
        (Some("bind"), Some(true))
    );
    assert_eq!(h["PidsLimit"], 256);
    assert_eq!(h["MemorySwap"], h["Memory"]);
    let mount = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/orion/script")
        .cloned()
        .unwrap();
    assert_eq!(mount["RW"], false);
    // What applied, in the job's status.
    let j = get_json(&format!("{addr}/v1/jobs/scr")).await.unwrap();
    assert_eq!(j["security"]["profile"], "restricted");
    assert_eq!(j["security"]["read_only_root"], true);

    // A service opting in with some settings relaxed, and one with the defaults.
    let svc = |name: &str, security: Value| {
        let mut v = json!({
            "name": name,
            "task": {
                "image": image::DEMO_IMAGE, "command": ["sleep", "60"],
                "resources": { "cpu": 0.05, "memory_mb": 16 }
            }
        });
        if !security.is_null() {
            v["task"]["security"] = security;
        }
        v
    };
    submit(&addr, &svc("relaxed", json!({ "profile": "restricted", "user": "0", "read_only_root": false, "cap_add": ["NET_BIND_SERVICE"] })))
        .await
        .unwrap();
    submit(&addr, &svc("plain", Value::Null)).await.unwrap();
    let (_, relaxed) = running_container(&addr, "relaxed").await;
    let r = inspect(&relaxed);
    assert_eq!(r["Config"]["User"], "0");
    assert_eq!(r["HostConfig"]["ReadonlyRootfs"], false);
    assert_eq!(r["HostConfig"]["CapDrop"], json!(["ALL"]));
    assert_eq!(r["HostConfig"]["CapAdd"], json!(["NET_BIND_SERVICE"]));
    assert!(r["HostConfig"]["SecurityOpt"]
        .to_string()
        .contains("no-new-privileges"));
    let (_, plain) = running_container(&addr, "plain").await;
    let p = inspect(&plain);
    assert_eq!(p["Config"]["User"], "");
    assert!(p["HostConfig"]["CapDrop"].is_null(), "{}", p["HostConfig"]);
    assert_eq!(p["HostConfig"]["ReadonlyRootfs"], false);

    // Bad scripts: 400 naming the field, nothing written.
    let bad = |task: Value| json!({ "name": "bad", "type": "batch", "task": task });
    let cases = [
        (
            bad(json!({ "script": { "lang": "sh", "content": "true" }, "command": ["true"] })),
            "task.script",
            "not both",
        ),
        (
            bad(json!({ "script": { "lang": "sh", "content": "x".repeat(1024 * 1024 + 1) } })),
            "task.script.content",
            "over the limit",
        ),
        (
            bad(json!({ "script": { "lang": "cobol", "content": "x" } })),
            "task.script.lang",
            "unknown variant",
        ),
        (
            bad(json!({ "image": "x:1", "security": { "user": "a:b:c" } })),
            "task.security",
            "uid[:gid]",
        ),
    ];
    for (spec, field, problem) in cases {
        let e = submit(&addr, &spec).await.unwrap_err();
        assert!(
            e.starts_with("400") && e.contains(field) && e.contains(problem),
            "{e}"
        );
    }
    assert!(get_json(&format!("{addr}/v1/jobs/bad"))
        .await
        .is_none_or(|v| v.get("error").is_some()));
}
