//! The body of the Raft RPC and forwarding fuzz target (feature `testing`),
//! shared by this crate's tests and the cargo-fuzz target of `fuzz/`.
//!
//! An input is one byte naming the message, then its JSON: what the server
//! half reads from a peer (append, vote, snapshot chunk, a forwarded call),
//! what the client half reads back (each RPC's answer, the leader's reply),
//! or what the log store reads from disk (an entry, a vote). What holds: no
//! input panics a decoder, and a message that decodes encodes back to JSON
//! that decodes to the same message.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rpc::{Forwarded, LeaderReply};
use crate::types::{Entry, RaftNodeId, TypeConfig};

/// The messages the target decodes, by the input's first byte (mod their
/// number).
pub const MESSAGES: [&str; 11] = [
    "append request",
    "vote request",
    "snapshot request",
    "forwarded call",
    "append answer",
    "vote answer",
    "snapshot answer",
    "leader reply",
    "log entry",
    "vote",
    "membership",
];

/// Decodes `data` as the message its first byte names (see [`MESSAGES`]).
pub fn raft(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which as usize % MESSAGES.len() {
        0 => round_trip::<AppendEntriesRequest<TypeConfig>>(json),
        1 => round_trip::<VoteRequest<RaftNodeId>>(json),
        2 => round_trip::<InstallSnapshotRequest<TypeConfig>>(json),
        3 => round_trip::<Forwarded>(json),
        4 => round_trip::<Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>>(json),
        5 => round_trip::<Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>>(json),
        6 => round_trip::<
            Result<
                InstallSnapshotResponse<RaftNodeId>,
                RaftError<RaftNodeId, InstallSnapshotError>,
            >,
        >(json),
        7 => round_trip::<LeaderReply>(json),
        8 => round_trip::<Entry>(json),
        9 => round_trip::<openraft::Vote<RaftNodeId>>(json),
        _ => round_trip::<openraft::StoredMembership<RaftNodeId, crate::RaftNode>>(json),
    }
}

/// Decodes `json` as a `T` (as the transport and the log store do); one that
/// decodes must encode, and read back the same.
fn round_trip<T: Serialize + DeserializeOwned>(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let encoded = serde_json::to_value(&value).expect("a decoded message encodes");
    let back: T = serde_json::from_value(encoded.clone())
        .unwrap_or_else(|e| panic!("a message's own JSON is refused: {e}: {encoded}"));
    let again = serde_json::to_value(&back).expect("encodes");
    assert_eq!(again, encoded, "a message reads back differently");
}

/// The seeds the corpus starts from: one realistic message of each kind,
/// prefixed by its byte (see [`MESSAGES`]).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta, Vote};
    use orion_core::Command;
    let log_id = |term, index| LogId::new(CommittedLeaderId::new(term, 7), index);
    let vote = Vote::new_committed(3, 7);
    let node = crate::RaftNode {
        id: "n1".into(),
        raft_addr: "127.0.0.1:7946".into(),
        http_addr: "127.0.0.1:8080".into(),
        role: orion_core::NodeRole::Manager,
    };
    let membership = Membership::new(
        vec![[7u64].into_iter().collect()],
        [(7u64, node.clone())]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let entry = |index, payload| Entry {
        log_id: log_id(3, index),
        payload,
    };
    let drain = Command::SetDrain {
        id: "n1".into(),
        draining: true,
    };
    let entries = vec![
        entry(1, EntryPayload::Blank),
        entry(2, EntryPayload::Membership(membership.clone())),
        entry(3, EntryPayload::Normal(drain.clone())),
    ];
    let stored = openraft::StoredMembership::new(Some(log_id(3, 2)), membership);
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    let to = |v: &dyn erased::Json| v.json();
    let mut out: Vec<(String, Vec<u8>)> = vec![
        (
            "append",
            to(&AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: Some(log_id(3, 0)),
                entries: entries.clone(),
                leader_commit: Some(log_id(3, 1)),
            }),
        ),
        ("vote-request", to(&VoteRequest::new(vote, Some(log_id(2, 9))))),
        (
            "snapshot-request",
            to(&InstallSnapshotRequest::<TypeConfig> {
                vote,
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(3, 3)),
                    last_membership: stored.clone(),
                    snapshot_id: "3-3-1".into(),
                },
                offset: 0,
                data: orion_core::ClusterState::default().to_snapshot(),
                done: true,
            }),
        ),
        (
            "forward",
            json(serde_json::json!({"call": {"call": "propose", "cmd": drain}, "budget": {"secs": 5, "nanos": 0}})),
        ),
        (
            "append-answer",
            to(&Ok::<_, RaftError<RaftNodeId>>(AppendEntriesResponse::<RaftNodeId>::Success)),
        ),
        (
            "vote-answer",
            to(&Ok::<_, RaftError<RaftNodeId>>(VoteResponse::new(
                vote,
                Some(log_id(3, 3)),
                true,
            ))),
        ),
        (
            "snapshot-answer",
            to(&Ok::<_, RaftError<RaftNodeId, InstallSnapshotError>>(
                InstallSnapshotResponse { vote },
            )),
        ),
        (
            "leader-reply",
            json(serde_json::json!({"reply": "applied", "applied": {"index": 9, "response": {"kind": "done"}}})),
        ),
        ("entry", to(&entries[2])),
        ("vote", to(&vote)),
        ("membership", to(&stored)),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_string(), b))
    .collect();
    for (i, (_, bytes)) in out.iter_mut().enumerate() {
        bytes.insert(0, i as u8);
    }
    out
}

mod erased {
    /// Anything the seeds encode.
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("a seed encodes")
        }
    }
}

#[cfg(test)]
mod tests {
    use orion_core::testing::fuzz::{cases, corpus, Mutator};
    use proptest::prelude::*;

    use super::*;

    /// The seeds are in the corpus, and each decodes as its kind.
    #[test]
    fn the_corpus_holds_a_seed_of_every_message_and_each_decodes() {
        let files = corpus("raft");
        for (name, seed) in seeds() {
            assert!(
                files.iter().any(|(_, b)| *b == seed),
                "the raft corpus lacks its {name} seed (write it: see fuzz/README.md)"
            );
        }
        for (name, bytes) in &files {
            eprintln!("raft corpus: {name}");
            raft(bytes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(300),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Mutated messages decode or are refused, never a panic.
        #[test]
        fn mutated_messages_decode_or_are_refused(
            seed in 0..corpus("raft").len(),
            ops in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u8>()), 1..8),
        ) {
            let files = corpus("raft");
            let mut bytes = Mutator { ops }.apply(&files[seed].1);
            // Keep the message kind most of the time, so its decoder is hit.
            if let (Some(b), Some(orig)) = (bytes.first_mut(), files[seed].1.first()) {
                *b = *orig;
            }
            raft(&bytes);
        }
    }
}
