//! End to end: real `orion-node` processes, the real Docker engine, real HTTP.
//!
//! Docker tests print `SKIP: …` and pass when no engine answers, except under
//! CI (`CI` set, as `true` or `1`), where they fail. Each test uses node ids, ports and a host-port range
//! of its own, kills its processes and removes its containers, also on failure.

mod support;

mod browser;

mod acl;
mod autolock;
mod autoscale;
mod batch;
mod boxed;
mod cli;
mod cluster;
mod crash;
mod deploy;
mod deps;
mod dev;
mod discovery;
mod dockerd;
mod history;
mod liveness;
mod logs;
mod partition;
mod periodic;
mod process;
mod quiet;
mod restart;
mod schema;
mod scripts;
mod secrets;
mod single_node;
mod ssh;
mod stats;
mod store;
mod system;
mod ui;
