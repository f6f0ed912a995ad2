//! `DockerRuntime` against the real engine: one binary, a module per area.
//!
//! Every test that needs the engine goes through [`support::engine`]: when the engine
//! cannot be reached it prints `SKIP: docker engine unreachable: ...` and returns, unless
//! CI (`CI` set, as `true` or `1`), where it fails. Each test uses a cluster id of its own, so tests run in
//! parallel, and a guard removes every container it started, also when it fails.
//! The demo image `orion-test/web:1` is built locally from busybox when absent.

mod support;

mod images;
mod io;
mod lifecycle;
mod negotiation;
mod suite;
mod unavailable;
mod web;
