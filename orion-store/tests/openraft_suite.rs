//! openraft's own storage test suite (`openraft::testing::Suite`: log
//! reads, appends, truncation, purge, vote, membership, snapshots, applying)
//! against orion-store's log storage and state machine, on both engines.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use orion_core::replica::Replica;
use orion_core::state::ClusterState;
use orion_store::engine::open_engine;
use orion_store::log_store::LogStore;
use orion_store::state_machine::StateMachine;
use orion_store::{Engine, TypeConfig};

struct Builder(Engine);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let io = |e: String| StorageError::IO {
            source: StorageIOError::write(&std::io::Error::other(e)),
        };
        let dir = tempfile::tempdir().map_err(|e| io(e.to_string()))?;
        let engine = open_engine(self.0, dir.path()).map_err(|e| io(e.to_string()))?;
        let replica = Arc::new(Replica::new(ClusterState::default()));
        let sm = StateMachine::open(engine.clone(), replica).map_err(|e| io(e.to_string()))?;
        Ok((dir, LogStore::new(engine), sm))
    }
}

#[test]
fn openraft_storage_suite_on_redb() {
    Suite::test_all(Builder(Engine::Redb)).expect("the redb store passes openraft's suite");
}

#[test]
fn openraft_storage_suite_on_sled() {
    Suite::test_all(Builder(Engine::Sled)).expect("the sled store passes openraft's suite");
}
