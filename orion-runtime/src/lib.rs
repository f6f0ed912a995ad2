//! Orion's runtime adapters behind `orion_core::Runtime`: [`DockerRuntime`] drives a
//! Docker Engine through bollard; [`SshRuntime`] runs tasks as processes on a remote
//! server over SSH (russh).
//!
//! # Layout
//!
//! - [`docker`]: [`DockerRuntime`] and its [`DockerConfig`]; the engine is contacted
//!   lazily, the API version negotiated down to the engine's, and every container
//!   labelled so that a restarted agent finds it again.
//! - [`ssh`]: [`SshRuntime`] and its [`SshConfig`]; a pool of SSH connections to one
//!   `user@host:port` behind a circuit breaker, host keys checked against known_hosts,
//!   output kept in local files.
//! - [`process`]: [`ProcessRuntime`]; a task's command as a child process group of
//!   the agent, limited through cgroups where it may, adopted again after a restart.
//! - [`image`]: local images without a registry: a busybox rootfs built in memory and
//!   imported as a tagged image, and the ready-made demo web image
//!   ([`image::DEMO_IMAGE`]).
//!
//! ```no_run
//! use orion_core::Runtime;
//! use orion_runtime::{image, DockerRuntime};
//!
//! # async fn demo() -> Result<(), orion_core::RuntimeError> {
//! let docker = DockerRuntime::connect_local()?;
//! image::ensure_demo_image(&docker, image::DEMO_IMAGE).await?;
//! docker.ensure_image(image::DEMO_IMAGE).await?;
//! # Ok(())
//! # }
//! ```

pub mod docker;
pub mod image;
pub mod process;
pub mod ssh;

pub use docker::{ConfigError, DockerConfig, DockerRuntime};
pub use process::{ProcessConfig, ProcessRuntime};
pub use ssh::{SshConfig, SshConfigError, SshRuntime, SshTarget};
