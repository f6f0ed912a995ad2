//! The circuit breaker: a server that goes away opens it after the configured
//! failures (ping then fails fast, naming it), and once the server is back and
//! the open period has passed, one trial closes it.

use std::time::{Duration, Instant};

use orion_core::Runtime;
use orion_runtime::ssh::{BreakerState, SshRuntime};

use crate::sshd_or_skip;

/// Kill sshd: pings fail until the fifth failure opens the breaker, and ping
/// answers `ssh breaker open for user@host:port after 5 failures: ...`.
/// Restart sshd on the same port, wait past `breaker_open_for` (1 s): the
/// next ping is the trial, succeeds and closes the breaker.
#[tokio::test]
async fn the_breaker_opens_when_the_server_dies_and_closes_when_it_is_back() {
    let mut sshd = sshd_or_skip!();
    let mut config = sshd.config();
    config.breaker_open_for = Duration::from_secs(1);
    let rt = SshRuntime::new(config).expect("builds");
    rt.ping().await.expect("the server answers");
    assert_eq!(rt.breaker(), BreakerState::Closed);

    sshd.kill();
    let want = format!("ssh breaker open for {} after 5 failures: ", sshd.target());
    let mut failures = 0;
    let message = loop {
        let e = rt.ping().await.expect_err("the server is gone").to_string();
        if e.contains(&want) {
            break e;
        }
        failures += 1;
        assert!(failures <= 6, "the breaker did not open: {e}");
    };
    eprintln!("breaker message: {message}");
    assert!(
        message.contains("Connection refused") || message.contains("connect"),
        "{message}"
    );
    assert!(matches!(rt.breaker(), BreakerState::Open { .. }));
    // Fast while open: no connection is tried.
    let started = Instant::now();
    assert!(rt.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_millis(200));

    sshd.launch();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rt.ping().await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "never closed again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rt.breaker(), BreakerState::Closed);
}
