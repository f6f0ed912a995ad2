//! The demo web workload: a published port on 127.0.0.1, its page, its environment.

use orion_core::runtime::{ContainerState, Runtime};
use orion_runtime::image::DEMO_GREETING;

use crate::ctx_or_skip;
use crate::support::{http_get, http_port, task};

/// A web container published on 127.0.0.1 serves the demo page on its host port, the
/// task's environment reaches the process (seen through the CGI script), and inspect
/// reports it running with the port bound on 127.0.0.1 under its spec name.
#[tokio::test]
async fn web_container_serves_its_page_and_env_on_the_published_port() {
    let ctx = ctx_or_skip!();
    let mut web = task(&[]);
    web.env.insert("GREETING".into(), "hi".into());
    let mut launch = ctx.launch("n1", web);
    let port = http_port();
    launch.ports = vec![port.clone()];
    let id = ctx.run(&launch).await;

    let page = http_get(port.host_port, "/").await;
    assert!(page.contains(DEMO_GREETING), "{page}");
    let env = http_get(port.host_port, "/cgi-bin/env").await;
    assert!(env.contains("GREETING=hi"), "{env}");

    let info = ctx.rt.inspect(&id).await.expect("inspect");
    assert_eq!(info.state, ContainerState::Running);
    assert_eq!(info.alloc_id, launch.alloc_id);
    assert_eq!(info.ports, vec![port]);
}

/// A port published on 127.0.0.1 only is not reachable on the host's other addresses:
/// the binding honours `PortBinding::host_ip`.
#[tokio::test]
async fn ports_bind_only_the_host_ip_they_name() {
    let ctx = ctx_or_skip!();
    let mut launch = ctx.launch("n1", task(&[]));
    let port = http_port();
    launch.ports = vec![port.clone()];
    let id = ctx.run(&launch).await;
    http_get(port.host_port, "/").await;

    let inspected = ctx.rt.inspect(&id).await.expect("inspect");
    let ips: Vec<&str> = inspected.ports.iter().map(|p| p.host_ip.as_str()).collect();
    assert_eq!(
        ips,
        ["127.0.0.1"],
        "the one published port, on 127.0.0.1 only"
    );
    // Another loopback address reaches 0.0.0.0 bindings but not a 127.0.0.1 one.
    let other = tokio::net::TcpStream::connect(("127.0.0.2", port.host_port)).await;
    assert!(other.is_err(), "bound beyond 127.0.0.1");
}
