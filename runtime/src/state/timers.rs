//! Timers as keyed state: event-time and processing-time timers of keyed
//! operators, stored beside the keys' values in one [`KeyedState`].
//!
//! A timer is an entry `(time, key)` in the key's key group, so it is
//! checkpointed, restored and rescaled with the key's value in either backend.
//! The entries sort by time within a key group (see [`TimedKey`]): RocksDB finds
//! the due timers by a range scan of each key group's timer prefix and never
//! holds them on the heap; the heap backend keeps an ordered index beside the map.
//! Only the earliest pending time of each kind is kept in memory, so that a
//! watermark with nothing due costs no scan.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::data::{Barrier, Batch, EventTime};
use crate::error::{Error, Result};
use crate::keys::StableHash;
use crate::operator::OperatorContext;
use crate::state::{KeyOf, KeyedMap, KeyedState, OperatorSnapshot, RestoredState};

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the watermark reaches its time.
    EventTime,
    /// Fires when the wall clock (ms since the Unix epoch) reaches its time.
    ProcessingTime,
}

/// A time that sorts as its bytes: the `i64` with its sign bit flipped, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SortableTime([u8; 8]);

impl SortableTime {
    /// The encoding of `time`.
    pub fn new(time: EventTime) -> Self {
        SortableTime(((time as u64) ^ (1 << 63)).to_be_bytes())
    }

    /// The time encoded.
    pub fn time(self) -> EventTime {
        (u64::from_be_bytes(self.0) ^ (1 << 63)) as EventTime
    }
}

/// A state key of an operator with timers. The variant order is the RocksDB
/// key order within a key group: bincode writes the variant index as a `u32`
/// little-endian before the fields, so event-time timers (index 0) come first,
/// sorted by time, then processing-time timers, then the keys' values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimedKey<K> {
    /// An event-time timer of a key.
    EventTimer(SortableTime, K),
    /// A processing-time timer of a key.
    ProcessingTimer(SortableTime, K),
    /// A key's value.
    Value(K),
}

impl<K: Hash> Hash for TimedKey<K> {
    /// A value hashes as its key alone, so that a borrowed key finds it
    /// ([`KeyOf`]); a timer hashes its time too.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            TimedKey::EventTimer(at, k) | TimedKey::ProcessingTimer(at, k) => {
                at.hash(state);
                k.hash(state);
            }
            TimedKey::Value(k) => k.hash(state),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyOf<K> for TimedKey<K> {
    #[inline]
    fn is(&self, query: &K) -> bool {
        matches!(self, TimedKey::Value(k) if k == query)
    }

    fn from_query(query: &K) -> Self {
        TimedKey::Value(query.clone())
    }
}

impl<K: StableHash> StableHash for TimedKey<K> {
    /// The key's hash: a key's timers live in its key group.
    #[inline]
    fn stable_hash(&self) -> u64 {
        match self {
            TimedKey::EventTimer(_, k) | TimedKey::ProcessingTimer(_, k) | TimedKey::Value(k) => {
                k.stable_hash()
            }
        }
    }
}

/// Where a key's value begins in an encoded [`TimedValue`]: after the
/// variant's tag (bincode's `u32`). A timer's entry is the tag alone.
pub const STAMP_AFTER_TAG: usize = 4;

/// A state value of an operator with timers: a timer's (none) or a key's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TimedValue<V> {
    /// A timer entry.
    Timer,
    /// A key's value.
    Value(V),
}

/// The encoded key prefix of the timers of `domain` at `time` and later (up to
/// the next domain), for range scans.
fn prefix(domain: TimeDomain, time: Option<EventTime>) -> Vec<u8> {
    let index: u32 = match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    };
    let mut bytes = match time {
        Some(_) => index.to_le_bytes().to_vec(),
        None => (index + 1).to_le_bytes().to_vec(),
    };
    if let Some(time) = time {
        bytes.extend_from_slice(&SortableTime::new(time).0);
    }
    bytes
}

/// A timer registration or deletion, applied after the call that made it.
#[derive(Debug, Clone)]
struct Change<K> {
    domain: TimeDomain,
    time: EventTime,
    key: K,
    register: bool,
}

/// What a keyed function may do with the timers of the key it handles.
pub struct Timers<'a, K> {
    key: &'a K,
    changes: &'a mut Vec<Change<K>>,
    watermark: EventTime,
    now: EventTime,
}

impl<K: Clone> Timers<'_, K> {
    /// Asks for a call when the watermark reaches `time` (one call per key and time).
    pub fn register_event_time(&mut self, time: EventTime) {
        self.change(TimeDomain::EventTime, time, true);
    }

    /// Asks for a call when the wall clock reaches `time` (ms since the Unix epoch).
    pub fn register_processing_time(&mut self, time: EventTime) {
        self.change(TimeDomain::ProcessingTime, time, true);
    }

    /// Cancels the event-time timer at `time`, if any.
    pub fn delete_event_time(&mut self, time: EventTime) {
        self.change(TimeDomain::EventTime, time, false);
    }

    /// Cancels the processing-time timer at `time`, if any.
    pub fn delete_processing_time(&mut self, time: EventTime) {
        self.change(TimeDomain::ProcessingTime, time, false);
    }

    /// The task's current watermark (`EventTime::MIN` before the first).
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The wall clock when the batch or timer began, ms since the Unix epoch.
    pub fn now(&self) -> EventTime {
        self.now
    }

    fn change(&mut self, domain: TimeDomain, time: EventTime, register: bool) {
        self.changes.push(Change {
            domain,
            time,
            key: self.key.clone(),
            register,
        });
    }
}

/// Calls `f` with the key that `key` names, its value in `slot` (taken out of
/// its [`TimedValue`] and put back), `arg`, and the key's timers; `clock` is the
/// watermark and the wall clock.
fn with_value<K, V, A>(
    key: &TimedKey<K>,
    slot: &mut Option<TimedValue<V>>,
    changes: &mut Vec<Change<K>>,
    clock: (EventTime, EventTime),
    arg: A,
    f: &mut impl FnMut(&K, &mut Option<V>, A, &mut Timers<'_, K>) -> Result<()>,
) -> Result<()> {
    let TimedKey::Value(k) = key else {
        return Err(Error::Internal("a value under a timer's key".into()));
    };
    let mut value = match slot.take() {
        Some(TimedValue::Value(v)) => Some(v),
        _ => None,
    };
    let mut timers = Timers {
        key: k,
        changes,
        watermark: clock.0,
        now: clock.1,
    };
    f(k, &mut value, arg, &mut timers)?;
    *slot = value.map(TimedValue::Value);
    Ok(())
}

/// The heap backend's ordered index of one domain's timers.
type Index<K> = BTreeMap<EventTime, KeyedMap<K, ()>>;

/// Keyed values of type `V` and timers, of one operator subtask.
pub struct TimedState<K, V> {
    state: KeyedState<TimedKey<K>, TimedValue<V>>,
    /// Heap backend: the timers by time, per domain.
    index: [Index<K>; 2],
    /// The earliest pending timer per domain (a lower bound with RocksDB).
    earliest: [Option<EventTime>; 2],
    changes: Vec<Change<K>>,
    due: Batch<(EventTime, K)>,
    watermark: EventTime,
}

impl<K, V> Default for TimedState<K, V> {
    fn default() -> Self {
        TimedState {
            state: KeyedState::default(),
            index: [BTreeMap::new(), BTreeMap::new()],
            earliest: [None, None],
            changes: Vec::new(),
            due: Vec::new(),
            watermark: EventTime::MIN,
        }
    }
}

fn slot(domain: TimeDomain) -> usize {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

/// The wall clock in ms since the Unix epoch.
pub fn wall_clock_ms() -> EventTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EventTime)
}

impl<K, V> TimedState<K, V> {
    /// State whose keys' values are [`crate::state::ttl::Stamped`], dropped by
    /// RocksDB's compactions once `expiry` says so (timers stay).
    pub(crate) fn expiring(expiry: crate::state::ttl::Expiry) -> Self {
        TimedState {
            state: KeyedState::expiring(expiry),
            ..TimedState::default()
        }
    }
}

impl<K, V> TimedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Heap backend only: drops the keys' values of one shard (see
    /// [`KeyedState::retain_heap_shard`]) that `keep` refuses; timers stay.
    pub(crate) fn retain_heap_values(&mut self, shard: usize, mut keep: impl FnMut(&V) -> bool) {
        self.state.retain_heap_shard(shard, |_, value| match value {
            TimedValue::Value(v) => keep(v),
            TimedValue::Timer => true,
        });
    }

    /// Entries in memory, values and timers (see [`KeyedState::cached_keys`]).
    pub fn cached_entries(&self) -> usize {
        self.state.cached_keys()
    }

    /// Opens the backend and restores values and timers.
    pub fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.state.open(ctx, restored)?;
        for (key, _) in self.state.heap_entries() {
            match key {
                TimedKey::EventTimer(at, k) => {
                    self.index[0]
                        .entry(at.time())
                        .or_default()
                        .insert(k.clone(), ());
                }
                TimedKey::ProcessingTimer(at, k) => {
                    self.index[1]
                        .entry(at.time())
                        .or_default()
                        .insert(k.clone(), ());
                }
                TimedKey::Value(_) => {}
            }
        }
        for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
            self.earliest[slot(domain)] = self.first_pending(domain)?;
        }
        Ok(())
    }

    /// The earliest timer of `domain` in the backend.
    fn first_pending(&mut self, domain: TimeDomain) -> Result<Option<EventTime>> {
        if !self.state.in_rocksdb() {
            return Ok(self.index[slot(domain)].keys().next().copied());
        }
        let mut first: Option<EventTime> = None;
        self.state.scan_between(
            &prefix(domain, Some(EventTime::MIN)),
            &prefix(domain, None),
            |_, key, _| {
                if let TimedKey::EventTimer(at, _) | TimedKey::ProcessingTimer(at, _) = key {
                    first = Some(first.map_or(at.time(), |f| f.min(at.time())));
                }
                Ok(false)
            },
        )?;
        Ok(first)
    }

    /// Hands each record of `input` (emptied) to `f` with its key, that key's
    /// value (`None` if it has none; set it to `None` to delete it) and its timers.
    pub fn update<T>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, K>,
        mut f: impl FnMut(&K, &mut Option<V>, T, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let clock = (self.watermark, wall_clock_ms());
        let changes = &mut self.changes;
        self.state.update(input, key, |k, slot, record| {
            with_value(k, slot, changes, clock, record, &mut f)
        })?;
        self.apply_changes()
    }

    /// Stores the timers registered and deleted since the last call.
    fn apply_changes(&mut self) -> Result<()> {
        let rocks = self.state.in_rocksdb();
        // The buffer goes back afterwards, keeping its allocation.
        let mut changes = std::mem::take(&mut self.changes);
        for change in changes.drain(..) {
            let at = SortableTime::new(change.time);
            let i = slot(change.domain);
            if change.register {
                let earliest = &mut self.earliest[i];
                *earliest = Some(earliest.map_or(change.time, |e| e.min(change.time)));
            }
            if !rocks {
                let index = &mut self.index[i];
                if change.register {
                    index
                        .entry(change.time)
                        .or_default()
                        .insert(change.key.clone(), ());
                } else if let Some(keys) = index.get_mut(&change.time) {
                    keys.remove(&change.key);
                    if keys.is_empty() {
                        index.remove(&change.time);
                    }
                }
            }
            let key = match change.domain {
                TimeDomain::EventTime => TimedKey::EventTimer(at, change.key),
                TimeDomain::ProcessingTime => TimedKey::ProcessingTimer(at, change.key),
            };
            self.state
                .put(key, change.register.then_some(TimedValue::Timer))?;
        }
        self.changes = changes;
        Ok(())
    }

    /// The earliest pending processing-time timer, ms since the Unix epoch.
    pub fn next_processing_timer(&self) -> Option<EventTime> {
        self.earliest[1]
    }

    /// Advances event time to `watermark` and fires the event-time timers due
    /// by then, in time order (also those that firing registers at or before
    /// it): `f` gets each key's value and timers, and the timer's time.
    pub fn advance_watermark(
        &mut self,
        watermark: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.fire(TimeDomain::EventTime, watermark, false, f)
    }

    /// Fires the processing-time timers due at `now` (ms since the Unix epoch).
    pub fn advance_processing_time(
        &mut self,
        now: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, false, f)
    }

    /// At the end of input: fires every pending processing-time timer, once.
    /// Timers that firing registers stay pending: they would never come due
    /// (a periodic timer would fire forever), and the job is ending.
    pub fn end_processing_time(
        &mut self,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, EventTime::MAX, true, f)
    }

    /// Fires the timers of `domain` due by `until`, and those that firing
    /// registers by then too, unless `once`.
    fn fire(
        &mut self,
        domain: TimeDomain,
        until: EventTime,
        once: bool,
        mut f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let i = slot(domain);
        let mut rounds = 0;
        while self.earliest[i].is_some_and(|e| e <= until) && !(once && rounds == 1) {
            rounds += 1;
            self.take_due(domain, until)?;
            self.earliest[i] = self.first_pending(domain)?;
            // Timers at one time fire in the order the backend listed them.
            let mut firing = std::mem::take(&mut self.due);
            firing.sort_by_key(|(time, _)| *time);
            let clock = (self.watermark, wall_clock_ms());
            let changes = &mut self.changes;
            self.state.update(
                &mut firing,
                |(_, k): &(EventTime, K)| Cow::Borrowed(k),
                |k, slot, (time, _)| with_value(k, slot, changes, clock, time, &mut f),
            )?;
            self.due = firing;
            self.apply_changes()?;
        }
        Ok(())
    }

    /// Moves the timers of `domain` due by `until` out of the state into `self.due`.
    fn take_due(&mut self, domain: TimeDomain, until: EventTime) -> Result<()> {
        let i = slot(domain);
        if !self.state.in_rocksdb() {
            let later = match until.checked_add(1) {
                Some(next) => self.index[i].split_off(&next),
                None => BTreeMap::new(),
            };
            let due = std::mem::replace(&mut self.index[i], later);
            for (time, keys) in due {
                for (key, ()) in keys {
                    self.due.push((time, key));
                }
            }
        } else {
            let to = match until.checked_add(1) {
                Some(next) => prefix(domain, Some(next)),
                None => prefix(domain, None),
            };
            let due = &mut self.due;
            self.state
                .scan_between(&prefix(domain, Some(EventTime::MIN)), &to, |_, key, _| {
                    match key {
                        TimedKey::EventTimer(at, k) | TimedKey::ProcessingTimer(at, k) => {
                            due.push((at.time(), k))
                        }
                        TimedKey::Value(_) => {}
                    }
                    Ok(true)
                })?;
        }
        for (time, key) in &self.due {
            let at = SortableTime::new(*time);
            let entry = match domain {
                TimeDomain::EventTime => TimedKey::EventTimer(at, key.clone()),
                TimeDomain::ProcessingTime => TimedKey::ProcessingTimer(at, key.clone()),
            };
            self.state.put(entry, None)?;
        }
        Ok(())
    }

    /// Snapshots values and timers for `barrier`.
    pub fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.state.snapshot(barrier)
    }
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
