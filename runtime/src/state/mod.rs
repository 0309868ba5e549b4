//! Operator state as it is snapshotted and restored, and helpers to encode keyed state by key group.

mod keyed;
mod snapshot;

pub use keyed::{decode_keyed, encode_keyed, HeapState, KeyedMap};
pub use snapshot::{OperatorSnapshot, RestoredState};
