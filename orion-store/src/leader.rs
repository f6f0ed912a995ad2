//! What the leader does with leader-only calls, its own or forwarded: commit a
//! command, confirm a read index, change membership.
//!
//! Membership follows openraft's rules: a node joins as a learner (the call blocks
//! until it has caught up), then managers become voters through `change_membership`
//! (joint consensus) while there are fewer than `max_voters`; workers stay learners.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, RaftError,
};
use openraft::{ChangeMembers, StoredMembership};
use orion_core::{Applied, Command, NodeRole, Peer};
use tokio::time::{timeout_at, Instant};
use tracing::{info, warn};

use crate::rpc::{LeaderCall, LeaderReply, WireError};
use crate::store::Inner;
use crate::types::{node_id_of, RaftNode, RaftNodeId};

type WriteError = RaftError<RaftNodeId, ClientWriteError<RaftNodeId, RaftNode>>;

fn fatal(f: Fatal<RaftNodeId>) -> WireError {
    match f {
        Fatal::Stopped => WireError::Shutdown,
        other => WireError::Storage(other.to_string()),
    }
}

fn write_error(e: WriteError) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => WireError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            WireError::Membership(e.to_string())
        }
        RaftError::Fatal(f) => fatal(f),
    }
}

impl Inner {
    /// Carries out a leader-only call here, within `budget`.
    pub(crate) async fn lead(&self, call: LeaderCall, budget: Duration) -> LeaderReply {
        if let Err(error) = self.check_quorum() {
            return LeaderReply::Failed { error };
        }
        let deadline = Instant::now() + budget;
        let res = match call {
            LeaderCall::Propose { cmd } => self
                .commit(*cmd, deadline)
                .await
                .map(|applied| LeaderReply::Applied { applied }),
            LeaderCall::ReadIndex => self
                .read_index(deadline)
                .await
                .map(|index| LeaderReply::ReadIndex { index }),
            LeaderCall::AddPeer { peer } => self
                .add_peer_here(peer, deadline)
                .await
                .map(|()| LeaderReply::Done),
            LeaderCall::RemovePeer { id } => self
                .remove_peer_here(&id, deadline)
                .await
                .map(|()| LeaderReply::Done),
        };
        res.unwrap_or_else(|error| LeaderReply::Failed { error })
    }

    /// Refuses leader calls while this node has heard from no majority for
    /// [`crate::RaftStoreConfig::quorum_lost_after`]: nothing is appended, so
    /// nothing commits later behind the caller's back. Retryable at first (a slow
    /// follower, a blip); once the silence has lasted `rpc_timeout`, final, so the
    /// client of a cut-off minority hears it at once.
    fn check_quorum(&self) -> Result<(), WireError> {
        let Some(silence) = self.quorum_ack.silence() else {
            return Ok(());
        };
        let lost_after = self.config.quorum_lost_after();
        if silence < lost_after {
            return Ok(());
        }
        // The tracker may have been held up (a busy host): believe it only if
        // openraft's latest report agrees.
        let latest = self.raft.metrics().borrow().millis_since_quorum_ack;
        if latest.is_some_and(|ms| Duration::from_millis(ms) < lost_after) {
            return Ok(());
        }
        let why = format!(
            "this node was leader but has heard from no majority of the managers for {:.1} s (cut off from them?)",
            silence.as_secs_f64()
        );
        if silence >= self.config.rpc_timeout {
            Err(WireError::NoQuorum(why))
        } else {
            Err(WireError::NoLeader(why))
        }
    }

    async fn commit(&self, cmd: Command, deadline: Instant) -> Result<Applied, WireError> {
        match timeout_at(deadline, self.raft.client_write(cmd)).await {
            Err(_) => Err(WireError::Timeout),
            Ok(Ok(r)) => Ok(Applied {
                index: r.log_id.index,
                response: r.data,
            }),
            Ok(Err(e)) => Err(write_error(e)),
        }
    }

    /// Confirms leadership with a quorum; reads are linearizable once a replica has
    /// applied the returned index.
    async fn read_index(&self, deadline: Instant) -> Result<u64, WireError> {
        match timeout_at(deadline, self.raft.get_read_log_id()).await {
            Err(_) => Err(WireError::Timeout),
            Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
                Err(WireError::NotLeader)
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                Err(WireError::NoLeader(q.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(fatal(f)),
        }
    }

    fn membership(&self) -> StoredMembership<RaftNodeId, RaftNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .as_ref()
            .clone()
    }

    /// One membership change, retried while another one is still in progress.
    async fn change(
        &self,
        changes: ChangeMembers<RaftNodeId, RaftNode>,
        retain: bool,
        deadline: Instant,
    ) -> Result<(), WireError> {
        self.while_in_progress(deadline, || {
            self.raft.change_membership(changes.clone(), retain)
        })
        .await
    }

    /// `add_learner`, retried while another membership change is still in
    /// progress (a new leader commits its predecessor's change with its first
    /// entry; another node's join may be catching up).
    async fn add_learner(
        &self,
        nid: RaftNodeId,
        node: RaftNode,
        deadline: Instant,
    ) -> Result<(), WireError> {
        self.while_in_progress(deadline, || self.raft.add_learner(nid, node.clone(), true))
            .await
    }

    /// Runs the membership call `call` until it is not refused for another
    /// change in progress, or `deadline` passes.
    async fn while_in_progress<F, T>(
        &self,
        deadline: Instant,
        mut call: impl FnMut() -> F,
    ) -> Result<(), WireError>
    where
        F: std::future::Future<Output = Result<T, WriteError>>,
    {
        loop {
            let res = timeout_at(deadline, call())
                .await
                .map_err(|_| WireError::Timeout)?;
            match res {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => self.membership_changed(deadline).await,
                Err(e) => return Err(write_error(e)),
            }
        }
    }

    /// Waits for the next metrics change (a commit, a leader), at most a heartbeat.
    async fn membership_changed(&self, deadline: Instant) {
        let mut rx = self.raft.metrics();
        rx.borrow_and_update();
        let cap = Instant::now() + self.config.heartbeat_interval;
        let _ = timeout_at(deadline.min(cap), rx.changed()).await;
    }

    async fn add_peer_here(&self, peer: Peer, deadline: Instant) -> Result<(), WireError> {
        let _serial = self.membership_lock.lock().await;
        let nid = node_id_of(&peer.id);
        let node = RaftNode::from_peer(&peer);
        let stored = self.membership();
        let m = stored.membership();
        let known = m.get_node(&nid).cloned();
        if let Some(k) = known.as_ref().filter(|k| k.id != peer.id) {
            return Err(WireError::Membership(format!(
                "node ids {:?} and {:?} hash to the same raft id",
                k.id, peer.id
            )));
        }
        let voters: BTreeSet<RaftNodeId> = m.voter_ids().collect();
        let is_voter = voters.contains(&nid);
        if known.as_ref().is_some_and(|k| *k != node) {
            // Same node, new address or role: update the record.
            self.change(
                ChangeMembers::SetNodes(BTreeMap::from([(nid, node.clone())])),
                true,
                deadline,
            )
            .await?;
        }
        let promote =
            peer.role == NodeRole::Manager && !is_voter && voters.len() < self.config.max_voters;
        if known.is_none() || promote {
            // Learner first; returns once it has caught up with the log. A
            // known learner staying one (a worker restarted with its data
            // asks again) is already in the log: adding it again would be a
            // membership change at every restart.
            self.add_learner(nid, node, deadline).await?;
        }
        match peer.role {
            NodeRole::Manager if promote => {
                let add = ChangeMembers::AddVoterIds(BTreeSet::from([nid]));
                self.change(add, false, deadline).await?;
                info!(peer = %peer.id, "added voter");
            }
            NodeRole::Manager if !is_voter => {
                info!(peer = %peer.id, max = self.config.max_voters, "voters full: manager stays a learner");
            }
            NodeRole::Worker if is_voter => {
                if voters.len() == 1 {
                    return Err(WireError::Membership(format!(
                        "{} is the only voter and cannot become a worker",
                        peer.id
                    )));
                }
                // retain: the demoted voter stays on as a learner.
                let demote = ChangeMembers::RemoveVoters(BTreeSet::from([nid]));
                self.change(demote, true, deadline).await?;
                info!(peer = %peer.id, "demoted voter to learner");
            }
            _ => {}
        }
        Ok(())
    }

    async fn remove_peer_here(&self, id: &str, deadline: Instant) -> Result<(), WireError> {
        let _serial = self.membership_lock.lock().await;
        let nid = node_id_of(id);
        let stored = self.membership();
        let m = stored.membership();
        if m.get_node(&nid).is_none() {
            return Ok(());
        }
        let voters: BTreeSet<RaftNodeId> = m.voter_ids().collect();
        if !voters.contains(&nid) {
            let remove = ChangeMembers::RemoveNodes(BTreeSet::from([nid]));
            return self.change(remove, false, deadline).await;
        }
        if voters.len() == 1 {
            return Err(WireError::Membership(format!("{id} is the last voter")));
        }
        // Joint consensus {old} → {old, new} → {new}; without retain the node goes too.
        let remove = ChangeMembers::RemoveVoters(BTreeSet::from([nid]));
        self.change(remove, false, deadline).await?;
        info!(peer = %id, "removed voter");
        if nid != self.id {
            self.fill_voter_seats(deadline).await;
        }
        Ok(())
    }

    /// Promotes managers waiting as learners while voter seats are free. Best effort:
    /// the removal that freed the seat already succeeded.
    async fn fill_voter_seats(&self, deadline: Instant) {
        let stored = self.membership();
        let m = stored.membership();
        let voters = m.voter_ids().count();
        let waiting: Vec<RaftNodeId> = m
            .learner_ids()
            .filter(|id| m.get_node(id).is_some_and(|n| n.role == NodeRole::Manager))
            .take(self.config.max_voters.saturating_sub(voters))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let add = ChangeMembers::AddVoterIds(waiting.into_iter().collect());
        if let Err(e) = self.change(add, false, deadline).await {
            warn!(error = ?e, "could not promote waiting managers");
        }
    }
}
