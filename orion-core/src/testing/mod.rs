//! Fakes of the seams, for testing logic without I/O (feature `testing`).
//!
//! - [`MemStore`]: a single-replica store that commits by applying at once.
//! - [`FakeRuntime`]: containers as entries in a map; records calls, injects failures.
//! - [`StaticMembership`]: a scripted member list and event stream.

pub mod fixtures;
mod membership;
mod runtime;
pub mod runtime_suite;
pub mod sim;
mod store;
pub mod store_suite;

pub use membership::StaticMembership;
pub use runtime::{FakeRuntime, RuntimeCall};
pub use store::MemStore;
