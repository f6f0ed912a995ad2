//! `StaticMembership`: a scripted member list and event stream.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::membership::{Member, Membership, MembershipError, MembershipEvent};
use crate::model::NodeId;

/// Membership whose live set changes only when a test says so.
#[derive(Debug)]
pub struct StaticMembership {
    local: NodeId,
    live: Mutex<BTreeMap<NodeId, Member>>,
    events: broadcast::Sender<MembershipEvent>,
}

impl StaticMembership {
    /// Membership with only the local node alive.
    pub fn new(local: Member) -> Self {
        let (events, _) = broadcast::channel(1024);
        StaticMembership {
            local: local.id.clone(),
            live: Mutex::new([(local.id.clone(), local)].into()),
            events,
        }
    }

    /// A node becomes alive.
    pub fn join(&self, member: Member) {
        self.live.lock().insert(member.id.clone(), member.clone());
        let _ = self.events.send(MembershipEvent::Joined(member));
    }

    /// A node is declared dead.
    pub fn kill(&self, id: &str) {
        if self.live.lock().remove(id).is_some() {
            let _ = self.events.send(MembershipEvent::Dead(id.to_string()));
        }
    }
}

#[async_trait]
impl Membership for StaticMembership {
    fn local_id(&self) -> &NodeId {
        &self.local
    }

    fn live(&self) -> Vec<Member> {
        self.live.lock().values().cloned().collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    async fn publish(&self, member: Member) -> Result<(), MembershipError> {
        let previous = self.live.lock().insert(member.id.clone(), member.clone());
        if let Some(previous) = previous.filter(|p| *p != member) {
            let _ = self.events.send(MembershipEvent::Updated {
                previous,
                updated: member,
            });
        }
        Ok(())
    }

    async fn shutdown(&self) {}
}
