//! The HTTP transport: openraft's `RaftNetworkFactory` / `RaftNetwork` as JSON POSTs
//! (reqwest), and the client half of forwarding calls to the leader.
//!
//! The server half is the `server` module. Every request carries a timeout: openraft's
//! per-RPC deadline for Raft messages, the caller's budget for forwarded calls.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rpc::{Forwarded, LeaderReply, APPEND_PATH, FORWARD_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::types::{RaftNode, RaftNodeId, TypeConfig};

/// Builds one [`HttpNetwork`] per peer, sharing a connection pool.
#[derive(Clone)]
pub struct HttpNetworkFactory {
    id: RaftNodeId,
    client: reqwest::Client,
    secret: std::sync::Arc<RaftSecret>,
    scheme: &'static str,
}

impl HttpNetworkFactory {
    /// A factory for node `id` sending through `client`, with the Raft
    /// port's `secret`.
    pub(crate) fn new(
        id: RaftNodeId,
        client: reqwest::Client,
        secret: std::sync::Arc<RaftSecret>,
        scheme: &'static str,
    ) -> Self {
        HttpNetworkFactory {
            id,
            client,
            secret,
            scheme,
        }
    }
}

/// The Raft port's secret, once this node's replica holds it. It never
/// changes after bootstrap, so it is read from the replica (under the lock
/// appliers take) only until it is there, then kept: every RPC asks.
pub(crate) struct RaftSecret {
    replica: std::sync::Arc<orion_core::Replica>,
    known: std::sync::OnceLock<String>,
}

impl RaftSecret {
    pub(crate) fn new(replica: std::sync::Arc<orion_core::Replica>) -> Self {
        RaftSecret {
            replica,
            known: std::sync::OnceLock::new(),
        }
    }

    /// The secret, if this node knows one yet.
    pub(crate) fn get(&self) -> Option<&str> {
        if let Some(s) = self.known.get() {
            return Some(s);
        }
        let s = self.replica.read(|s| s.acl.raft_secret.clone())?;
        Some(self.known.get_or_init(|| s))
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = HttpNetwork;

    async fn new_client(&mut self, target: RaftNodeId, node: &RaftNode) -> HttpNetwork {
        HttpNetwork {
            id: self.id,
            target,
            addr: node.raft_addr.clone(),
            client: self.client.clone(),
            secret: self.secret.clone(),
            scheme: self.scheme,
        }
    }
}

/// Raft RPCs to one peer.
pub struct HttpNetwork {
    id: RaftNodeId,
    target: RaftNodeId,
    addr: String,
    client: reqwest::Client,
    secret: std::sync::Arc<RaftSecret>,
    scheme: &'static str,
}

type RpcResult<T, E> = Result<T, RPCError<RaftNodeId, RaftNode, RaftError<RaftNodeId, E>>>;

impl HttpNetwork {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        action: RPCTypes,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}://{}{path}", self.scheme, self.addr);
        let mut post = self.client.post(url).json(req).timeout(timeout);
        if let Some(secret) = self.secret.get() {
            post = post.header(orion_core::acl::RAFT_SECRET_HEADER, secret);
        }
        let sent = post.send().await;
        let res = match sent {
            Ok(res) => res,
            Err(e) if e.is_timeout() => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }))
            }
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !res.status().is_success() {
            let err = std::io::Error::other(format!("{} answered {}", self.addr, res.status()));
            return Err(RPCError::Network(NetworkError::new(&err)));
        }
        let body: Result<Resp, RaftError<RaftNodeId, E>> = res
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<RaftNodeId>, openraft::error::Infallible> {
        self.call(
            APPEND_PATH,
            &rpc,
            RPCTypes::AppendEntries,
            option.hard_ttl(),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<RaftNodeId>, InstallSnapshotError> {
        self.call(
            SNAPSHOT_PATH,
            &rpc,
            RPCTypes::InstallSnapshot,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<RaftNodeId>, openraft::error::Infallible> {
        self.call(VOTE_PATH, &rpc, RPCTypes::Vote, option.hard_ttl())
            .await
    }

    fn backoff(&self) -> Backoff {
        // openraft waits this long before retrying an unreachable peer; 250 ms
        // (half its default) lets a restarted node catch up sooner.
        Backoff::new(std::iter::repeat(Duration::from_millis(250)))
    }
}

/// Why a forwarded call got no answer.
#[derive(Debug)]
pub(crate) enum ForwardFailure {
    /// The request never reached the leader (refused connection): safe to retry.
    NotSent(String),
    /// No answer within the budget: the call may still take effect.
    TimedOut,
    /// The request may have reached the leader but the answer was lost or garbled.
    Lost(String),
}

/// Sends a call to the leader at `addr` and waits at most `timeout` for the answer.
pub(crate) async fn forward(
    client: &reqwest::Client,
    scheme: &str,
    addr: &str,
    call: &Forwarded,
    timeout: Duration,
    secret: Option<&str>,
) -> Result<LeaderReply, ForwardFailure> {
    let url = format!("{scheme}://{addr}{FORWARD_PATH}");
    let mut post = client.post(url).json(call).timeout(timeout);
    if let Some(secret) = secret {
        post = post.header(orion_core::acl::RAFT_SECRET_HEADER, secret);
    }
    let res = post.send().await.map_err(|e| {
        if e.is_connect() {
            ForwardFailure::NotSent(e.to_string())
        } else if e.is_timeout() {
            ForwardFailure::TimedOut
        } else {
            ForwardFailure::Lost(e.to_string())
        }
    })?;
    if !res.status().is_success() {
        return Err(ForwardFailure::Lost(format!(
            "{addr} answered {}",
            res.status()
        )));
    }
    res.json().await.map_err(|e| {
        if e.is_timeout() {
            ForwardFailure::TimedOut
        } else {
            ForwardFailure::Lost(e.to_string())
        }
    })
}
