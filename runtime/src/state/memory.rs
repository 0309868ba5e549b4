//! The memory the keyed state of one process may use, shared by all its operators.
//!
//! Two bounds, both per process: the bytes of keys and values that RocksDB-backed
//! operators keep decoded in their caches ([`StateMemory::cache_bytes`]), and
//! RocksDB's own memory: one block cache for every instance, with the instances'
//! memtables charged to it through one write buffer manager. Every operator
//! subtask of a process with the same configuration gets the same
//! [`StateMemory`] from [`StateMemory::shared`], so adding subtasks adds no memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rocksdb::{Cache, WriteBufferManager};

/// Default of RocksDB's memory per process (block cache and memtables): 64 MiB.
pub const DEFAULT_ROCKSDB_BYTES: usize = 64 << 20;

/// The state memory of a process: the caches' byte count against its bound, and
/// RocksDB's shared block cache and write buffer manager.
pub struct StateMemory {
    cache_bytes: usize,
    used: AtomicUsize,
    block_cache: Cache,
    write_buffers: WriteBufferManager,
    write_buffer_size: usize,
}

impl std::fmt::Debug for StateMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMemory")
            .field("cache_bytes", &self.cache_bytes)
            .field("used", &self.used())
            .finish_non_exhaustive()
    }
}

/// The live [`StateMemory`] of each configuration, by (cache bytes, RocksDB bytes).
type Registry = HashMap<(usize, usize), Weak<StateMemory>>;

static SHARED: Mutex<Option<Registry>> = Mutex::new(None);

impl StateMemory {
    /// This process's state memory for caches of `cache_bytes` in all and RocksDB
    /// memory of `rocksdb_bytes`: the one already in use with these bounds, else a
    /// new one (freed when its last operator closes).
    pub fn shared(cache_bytes: usize, rocksdb_bytes: usize) -> Arc<StateMemory> {
        let key = (cache_bytes.max(1), rocksdb_bytes.max(1 << 20));
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        let registry = shared.get_or_insert_with(HashMap::new);
        if let Some(memory) = registry.get(&key).and_then(Weak::upgrade) {
            return memory;
        }
        registry.retain(|_, m| m.strong_count() > 0);
        let memory = Arc::new(StateMemory::new(key.0, key.1));
        registry.insert(key, Arc::downgrade(&memory));
        memory
    }

    fn new(cache_bytes: usize, rocksdb_bytes: usize) -> Self {
        let block_cache = Cache::new_lru_cache(rocksdb_bytes);
        // Memtables may take half of RocksDB's memory; what they take is charged
        // to the block cache, so the two together stay within its capacity.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            rocksdb_bytes / 2,
            false,
            block_cache.clone(),
        );
        StateMemory {
            cache_bytes,
            used: AtomicUsize::new(0),
            block_cache,
            write_buffers,
            write_buffer_size: (rocksdb_bytes / 4).clamp(1 << 20, 64 << 20),
        }
    }

    /// The bound of all caches' bytes together.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// The caches' bytes now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Records that a cache grew by `bytes`.
    pub fn grow(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records that a cache shrank by `bytes`.
    pub fn shrink(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// How many of its `own` bytes a cache should give up now: none while the
    /// process is within its bound, else its share of the excess (in proportion
    /// to its size) and a sixteenth of its own bytes besides, so that evictions
    /// come in batches rather than a few entries after every batch of records.
    pub fn over(&self, own: usize) -> usize {
        let used = self.used();
        if used <= self.cache_bytes || own == 0 {
            return 0;
        }
        let excess = used - self.cache_bytes;
        let share = (excess as u128 * own as u128 / used as u128) as usize;
        (share + own / 16).min(own)
    }

    /// RocksDB's block cache, shared by every instance of the process.
    pub fn block_cache(&self) -> &Cache {
        &self.block_cache
    }

    /// The write buffer manager every instance's memtables are charged to.
    pub fn write_buffers(&self) -> &WriteBufferManager {
        &self.write_buffers
    }

    /// The memtable size of one instance.
    pub fn write_buffer_size(&self) -> usize {
        self.write_buffer_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_shares_one_memory_per_configuration_while_it_is_in_use() {
        // Sizes of this test's own: other tests running beside it share the
        // memory of theirs.
        let (cache, rocksdb) = ((1 << 20) + 7, (8 << 20) + 7);
        let a = StateMemory::shared(cache, rocksdb);
        let b = StateMemory::shared(cache, rocksdb);
        assert!(Arc::ptr_eq(&a, &b));
        let other = StateMemory::shared(cache + 1, rocksdb);
        assert!(!Arc::ptr_eq(&a, &other));
        a.grow(100);
        assert_eq!(b.used(), 100);
        b.shrink(100);
        drop((a, b));
        let fresh = StateMemory::shared(cache, rocksdb);
        assert_eq!(fresh.used(), 0, "a new memory once the last user went away");
    }

    #[test]
    fn a_cache_gives_up_its_share_of_the_excess_and_a_sixteenth_besides() {
        let memory = StateMemory::new(1000, 8 << 20);
        memory.grow(1000);
        assert_eq!(memory.over(500), 0, "within the bound");
        memory.grow(200);
        // 200 over; a cache of 600 of the 1200 gives up 100 and 600/16.
        assert_eq!(memory.over(600), 100 + 37);
        assert_eq!(memory.over(10), 1, "its share, and no sixteenth of 10");
        memory.grow(100_000);
        assert_eq!(memory.over(50), 50, "never more than it has");
    }
}
