//! `DockerRuntime`: the [`Runtime`](orion_core::Runtime) seam over the Docker Engine API.
//!
//! The client is opened lazily: [`DockerRuntime::connect_local`] only checks the
//! configuration, and the first call contacts the engine and negotiates the API version
//! (bollard speaks a newer API than older engines accept, so it steps down to the
//! engine's). An engine that is absent, refuses, or does not answer in time makes calls
//! fail with [`RuntimeError::Unavailable`], and the
//! next call tries again, so an agent may start before its engine.

mod config;
mod convert;
pub(crate) mod error;
pub(crate) mod ops;
mod runtime;

use std::fmt;
use std::sync::Arc;

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use orion_core::RuntimeError;
use tokio::sync::OnceCell;
use tracing::debug;

pub use config::{ConfigError, DockerConfig, DEFAULT_SOCKET};
pub use convert::PORTS_LABEL;

use config::Endpoint;

/// Runs Orion's task containers on a Docker Engine.
///
/// Cheap to clone: clones share one connection to the engine.
///
/// ```no_run
/// use orion_core::Runtime;
/// use orion_runtime::DockerRuntime;
///
/// # async fn demo() -> Result<(), orion_core::RuntimeError> {
/// let docker = DockerRuntime::connect_local()?;
/// docker.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    /// The settings it was built with.
    config: DockerConfig,
    /// Where the engine is, parsed once from the config.
    endpoint: Endpoint,
    /// The client, opened and version-negotiated on first use.
    client: OnceCell<Docker>,
    /// Containers inspected by `list`, per owner (`cluster/node`): id →
    /// (what the listing said of it then, the inspection).
    inspected: std::sync::Mutex<InspectCache>,
}

type InspectCache = std::collections::HashMap<
    String,
    std::collections::HashMap<String, (String, orion_core::runtime::ContainerInfo)>,
>;

impl fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("endpoint", &self.inner.endpoint)
            .field("connected", &self.inner.client.initialized())
            .finish()
    }
}

/// Prefixes the request path with the negotiated API version (`/v1.41/containers/json`).
///
/// bollard 0.21 drops the version from its request paths, so the engine would answer in
/// its own newest dialect; pinning it makes negotiation mean what it says.
fn pin_version(mut req: BollardRequest, version: &str) -> BollardRequest {
    let uri = req.uri();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if path.starts_with("/v") && path[2..].starts_with(|c: char| c.is_ascii_digit()) {
        return req;
    }
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return req;
    };
    let pinned = format!("{scheme}://{authority}/v{version}{path}");
    match pinned.parse() {
        Ok(pinned) => *req.uri_mut() = pinned,
        Err(e) => debug!(uri = %pinned, error = %e, "cannot pin the api version"),
    }
    req
}

impl DockerRuntime {
    /// A runtime for the local engine (`$DOCKER_HOST`, else `/var/run/docker.sock`) with
    /// the default [`DockerConfig`].
    ///
    /// Synchronous and does no I/O: the engine is first contacted by the first call.
    pub fn connect_local() -> Result<DockerRuntime, RuntimeError> {
        DockerRuntime::connect(DockerConfig::default())
    }

    /// A runtime with the given configuration, checked with [`DockerConfig::validate`].
    ///
    /// Synchronous and does no I/O: the engine is first contacted by the first call.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use orion_runtime::{DockerConfig, DockerRuntime};
    ///
    /// let mut config = DockerConfig::default();
    /// config.host = Some("unix:///run/user/1000/docker.sock".into());
    /// config.pull_timeout = Duration::from_secs(60);
    /// let docker = DockerRuntime::connect(config)?;
    /// # Ok::<(), orion_core::RuntimeError>(())
    /// ```
    pub fn connect(config: DockerConfig) -> Result<DockerRuntime, RuntimeError> {
        let invalid = |e: ConfigError| RuntimeError::Engine {
            op: "configure docker",
            source: Box::new(e),
        };
        config.validate().map_err(invalid)?;
        let endpoint = config.endpoint().map_err(invalid)?;
        Ok(DockerRuntime {
            inner: Arc::new(Inner {
                config,
                endpoint,
                client: OnceCell::new(),
                inspected: Default::default(),
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &DockerConfig {
        &self.inner.config
    }

    /// The API version agreed with the engine (`1.41`), contacting it if need be.
    pub async fn api_version(&self) -> Result<String, RuntimeError> {
        Ok(self.client().await?.client_version().to_string())
    }

    /// The client, opening it and negotiating the API version on first use.
    pub(crate) async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.inner.client.get_or_try_init(|| self.open()).await
    }

    /// Opens a client and agrees on the API version, within the connect timeout.
    async fn open(&self) -> Result<Docker, RuntimeError> {
        let config = &self.inner.config;
        let host = config.resolved_host();
        let unavailable =
            |why: String| RuntimeError::Unavailable(format!("docker at {host}: {why}"));
        let secs = config.request_timeout.as_secs();
        let docker = match &self.inner.endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(path, secs, API_DEFAULT_VERSION),
            Endpoint::Http(addr) => Docker::connect_with_http(addr, secs, API_DEFAULT_VERSION),
        }
        .map_err(|e| unavailable(error::source_chain(&e)))?;
        let docker = tokio::time::timeout(config.connect_timeout, docker.negotiate_version())
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", config.connect_timeout)))?
            .map_err(|e| unavailable(error::source_chain(&e)))?;
        let version = docker.client_version().to_string();
        debug!(host = %host, api = %version, "docker engine connected");
        Ok(docker.with_request_modifier(move |req| pin_version(req, &version)))
    }

    /// The environment (`K=V`) an image's config sets, or `None` when the image
    /// is absent.
    pub async fn image_env(&self, image: &str) -> Result<Option<Vec<String>>, RuntimeError> {
        match self.client().await?.inspect_image(image).await {
            Ok(i) => Ok(Some(i.config.and_then(|c| c.env).unwrap_or_default())),
            Err(e) if error::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(error::general("inspect image", e)),
        }
    }

    /// Whether the image is present locally.
    pub async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.client().await?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if error::status(&e) == Some(404) => Ok(false),
            Err(e) => Err(error::general("inspect image", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> BollardRequest {
        let mut req = BollardRequest::new(bollard::body_full(Default::default()));
        *req.uri_mut() = uri.parse().expect("uri");
        req
    }

    #[test]
    fn requests_are_pinned_to_the_negotiated_version() {
        let req = pin_version(
            request("unix://2f72756e:0/containers/json?all=true"),
            "1.41",
        );
        assert_eq!(
            req.uri().to_string(),
            "unix://2f72756e:0/v1.41/containers/json?all=true"
        );
        let already = pin_version(request("http://h:2375/v1.40/_ping"), "1.41");
        assert_eq!(already.uri().to_string(), "http://h:2375/v1.40/_ping");
    }
}
