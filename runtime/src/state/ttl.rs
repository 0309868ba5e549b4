//! State TTL: keyed values that expire a fixed time after they were last
//! written, in processing time (as Flink's `StateTtlConfig` with
//! `OnCreateAndWrite` and `NeverReturnExpired`).
//!
//! Each value is stored with the wall-clock time it was written ([`Stamped`]:
//! 8 bytes little-endian, then the value), so expiry needs no decoding of the
//! value. An expired value never reaches the operator: a record whose key's
//! value expired sees none, and its key starts over. Expired values go on
//! access; on the heap a sweep looks at one of its shards at a time, each once
//! per half TTL; in RocksDB compactions drop them (a compaction filter reads
//! the stamp), with a periodic compaction so that cold files are looked at too.
//!
//! A `process` function's values sit beside its timers: see
//! [`crate::state::ttl_timed`], which stamps them the same way.
//!
//! Values with and without a stamp do not decode as each other, so a
//! checkpoint says which it holds ([`TTL_MARKER`] as the operator's non-keyed
//! state) and restoring one into the other fails and says why.

use std::borrow::Cow;
use std::hash::Hash;
use std::time::Duration;

use rocksdb::compaction_filter::Decision;
use rocksdb::Options;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::StableHash;
use crate::operator::OperatorContext;
use crate::state::heap::SHARDS;
use crate::state::keyed::KeyedValues;
use crate::state::lookup::KeyOf;
use crate::state::timers::wall_clock_ms;
use crate::state::{KeyedState, OperatorSnapshot, RestoredState};

/// The non-keyed state of an operator whose keyed values carry stamps.
pub const TTL_MARKER: &[u8] = b"weir.state-ttl.v1";

/// How many values a compaction filter checks between two readings of the clock.
const CLOCK_EVERY: u32 = 1024;

/// How the values of a state expire in RocksDB's compactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// How long a value outlives its last write.
    pub ttl: Duration,
    /// Where in an encoded value its [`Stamped`] begins: 0 for a plain value,
    /// [`crate::state::timers::STAMP_AFTER_TAG`] for a value beside timers.
    /// Shorter values hold no stamp (timers) and never expire.
    pub stamp_at: usize,
}

impl Expiry {
    /// Plain stamped values, expiring `ttl` after they were written.
    pub fn plain(ttl: Duration) -> Self {
        Expiry { ttl, stamp_at: 0 }
    }
}

/// A value and when it was written, ms since the Unix epoch (encoded first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped<V> {
    /// When the value was last written.
    pub written_ms: i64,
    /// The value.
    pub value: V,
}

/// Keyed values that expire `ttl` after they were last written.
pub struct ExpiringState<K, V> {
    state: KeyedState<K, Stamped<V>>,
    sweep: Sweep,
}

impl<K, V> ExpiringState<K, V> {
    /// State whose values expire `ttl` after they were last written.
    pub fn new(ttl: Duration) -> Self {
        ExpiringState {
            state: KeyedState::expiring(Expiry::plain(ttl)),
            sweep: Sweep::new(ttl),
        }
    }
}

/// The heap backend's sweep of expired values: one of its shards at a time,
/// each once per half TTL.
pub(crate) struct Sweep {
    /// The TTL in ms.
    ttl_ms: i64,
    /// When the sweep looks at its next shard, and which.
    next_sweep_ms: i64,
    next_shard: usize,
}

impl Sweep {
    /// The sweep of values that expire `ttl` after they were written.
    pub fn new(ttl: Duration) -> Self {
        Sweep {
            ttl_ms: millis(ttl),
            next_sweep_ms: i64::MIN,
            next_shard: 0,
        }
    }

    /// Values written at or before this had expired at `now_ms`.
    pub fn oldest_kept(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.ttl_ms)
    }

    /// The shard to sweep at `now_ms`, if one is due.
    pub fn due(&mut self, now_ms: i64) -> Option<usize> {
        if now_ms < self.next_sweep_ms {
            return None;
        }
        let shard = self.next_shard;
        self.next_shard = (self.next_shard + 1) % SHARDS;
        self.next_sweep_ms = now_ms + (self.ttl_ms / 2 / SHARDS as i64).max(1);
        Some(shard)
    }
}

impl<K, V> ExpiringState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// [`KeyedValues::update`] as if the clock read `now_ms`.
    pub fn update_at<T, Q>(
        &mut self,
        now_ms: i64,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        mut f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone,
    {
        let oldest = self.sweep.oldest_kept(now_ms);
        self.state.update(input, key, |k, slot, record| {
            restamped(slot, oldest, now_ms, |value| f(k, value, record))
        })?;
        if let Some(shard) = self.sweep.due(now_ms) {
            self.state
                .retain_heap_shard(shard, |_, s| s.written_ms > oldest);
        }
        Ok(())
    }

    /// Number of keys in memory, expired or not (see [`KeyedState::cached_keys`]).
    pub fn cached_keys(&self) -> usize {
        self.state.cached_keys()
    }
}

impl<K, V> KeyedValues<K, V> for ExpiringState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        check_stamps(&ctx.uid.0, restored.as_ref(), true)?;
        self.state.open(ctx, restored)
    }

    fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone,
    {
        self.update_at(wall_clock_ms(), input, key, f)
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut snapshot = self.state.snapshot(barrier)?;
        snapshot.operator_state = Some(TTL_MARKER.to_vec());
        Ok(snapshot)
    }
}

/// Calls `f` with the value in `slot` (none if it was written at or before
/// `oldest`) and puts what `f` leaves back, stamped `written_ms`.
pub(crate) fn restamped<V>(
    slot: &mut Option<Stamped<V>>,
    oldest: i64,
    written_ms: i64,
    f: impl FnOnce(&mut Option<V>) -> Result<()>,
) -> Result<()> {
    let mut value = slot
        .take()
        .filter(|s| s.written_ms > oldest)
        .map(|s| s.value);
    f(&mut value)?;
    *slot = value.map(|value| Stamped { written_ms, value });
    Ok(())
}

/// Refuses `restored` keyed state whose values are stamped (or not) unlike
/// the operator's (`stamped`): they would not decode, or decode as garbage.
/// The job fails at once, saying why.
pub fn check_stamps(uid: &str, restored: Option<&RestoredState>, stamped: bool) -> Result<()> {
    let Some(restored) = restored else {
        return Ok(());
    };
    if restored.keyed.is_empty() && restored.native.is_empty() {
        return Ok(());
    }
    let marked = match (&restored.operator_state, &restored.union) {
        (Some(state), _) => state == TTL_MARKER,
        (None, Some(union)) => union.states.iter().any(|(_, s)| s == TTL_MARKER),
        (None, None) => false,
    };
    let reason = match (marked, stamped) {
        (false, true) => "the checkpoint holds its state without a TTL, and a TTL cannot be added to existing state: give the operator a new uid (its state starts empty) or drop the TTL",
        (true, false) => "the checkpoint holds its state with a TTL, and the job now sets none: keep the TTL, or give the operator a new uid (its state starts empty)",
        _ => return Ok(()),
    };
    // The job as written cannot run on this checkpoint: restarts cannot help.
    Err(Error::InvalidJob(format!("state of {uid}: {reason}")))
}

/// Has RocksDB's compactions drop the values (each holding a [`Stamped`] at
/// `expiry.stamp_at`) written `expiry.ttl` ago or earlier, and compact each
/// file at least once per TTL (at least hourly, not more often) so that
/// expired values in cold files go too.
pub fn drop_expired_in_compactions(options: &mut Options, expiry: Expiry) {
    let (ttl, at) = (expiry.ttl, expiry.stamp_at);
    let ttl_ms = millis(ttl);
    let (mut oldest, mut checked) = (i64::MIN, 0u32);
    options.set_compaction_filter(
        "weir-state-ttl",
        move |_level: u32, _key: &[u8], value: &[u8]| {
            if checked % CLOCK_EVERY == 0 {
                oldest = wall_clock_ms().saturating_sub(ttl_ms);
            }
            checked = checked.wrapping_add(1);
            match value.get(at..).and_then(|v| v.first_chunk::<8>()) {
                Some(stamp) if i64::from_le_bytes(*stamp) <= oldest => Decision::Remove,
                _ => Decision::Keep,
            }
        },
    );
    options.set_periodic_compaction_seconds(ttl.as_secs().max(3_600));
}

/// `duration` in whole milliseconds, saturating.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "ttl_tests.rs"]
mod tests;
