//! Operator state: keyed state on the heap or in RocksDB, its canonical encoding by
//! key group, and what operators hand over at snapshots and get back on restore.

pub mod backend;
mod cache;
pub mod codec;
mod heap;
mod keyed;
pub mod lookup;
pub mod memory;
pub mod rocks;
mod snapshot;
pub mod timers;
pub mod ttl;
pub mod ttl_timed;

pub use backend::{Backend, StateConfig};
pub use codec::{decode_keyed, encode_keyed};
pub use keyed::{KeyedMap, KeyedState, KeyedValues};
pub use lookup::{KeyOf, Query};
pub use snapshot::{DeferredKeyed, OperatorSnapshot, RestoredState, UnionState};
pub use timers::{TimeDomain, TimedState, Timers};
pub use ttl::ExpiringState;
pub use ttl_timed::{ExpiringTimedState, TimedValues};
