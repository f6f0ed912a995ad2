//! The cluster CA record in the state machine (see [`crate::tls::rotation`]).

use super::ClusterState;
use crate::command::{Refusal, Response};
use crate::tls::rotation::CaRecord;

impl ClusterState {
    /// Takes `record` when it is the first (rotation 0, none committed) or
    /// the next rotation after one that is over; the same record again is
    /// done (a retried proposal); anything else is refused with the reason.
    pub(super) fn set_ca(&mut self, record: &CaRecord) -> Response {
        if self.ca.as_ref() == Some(record) {
            return Response::Done;
        }
        let refuse = |refusal: Refusal, reason: String| Response::Refused { refusal, reason };
        match &self.ca {
            None if record.rotation == 0 => {}
            None => {
                return refuse(
                    Refusal::Stale,
                    format!(
                        "no CA is committed yet; this is rotation {}",
                        record.rotation
                    ),
                )
            }
            Some(cur) if !cur.finished => {
                return refuse(
                    Refusal::Conflict,
                    format!(
                        "CA rotation {} is still under way ({} nodes done): wait for it to finish",
                        cur.rotation,
                        cur.adopted.len()
                    ),
                )
            }
            Some(cur) if record.rotation != cur.rotation + 1 => {
                return refuse(
                    Refusal::Stale,
                    format!(
                    "the CA is at rotation {}; this change was made for rotation {}: make it again",
                    cur.rotation,
                    record.rotation.saturating_sub(1)
                ),
                )
            }
            Some(_) => {}
        }
        self.ca = Some(record.clone());
        Response::Done
    }
}
