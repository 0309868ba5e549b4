//! Which state backend keyed operators use, and its settings.

use std::path::PathBuf;

pub use crate::state::memory::DEFAULT_ROCKSDB_BYTES;

/// Where keyed state lives while a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// Hash maps in memory: fastest; every checkpoint writes the whole state.
    #[default]
    Heap,
    /// RocksDB on local disk behind an in-memory cache: state larger than memory,
    /// incremental checkpoints (only new SST files are uploaded).
    Rocksdb,
}

impl Backend {
    /// The name used on command lines and in the wire contract.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Heap => "heap",
            Backend::Rocksdb => "rocksdb",
        }
    }

    /// The backend named `name` (as [`Backend::name`] spells it).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "heap" | "" => Some(Backend::Heap),
            "rocksdb" => Some(Backend::Rocksdb),
            _ => None,
        }
    }
}

/// The state backend of a job and where it keeps local files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Heap or RocksDB.
    pub backend: Backend,
    /// Local directory of RocksDB instances (one per operator subtask beneath it,
    /// removed when the subtask ends). Scratch space only: what must survive is in
    /// the checkpoint store.
    pub local_dir: PathBuf,
    /// RocksDB only: bytes of keys and values that the operators of a process
    /// keep decoded in memory in front of RocksDB, all together (estimated from
    /// their encoded sizes). Reads of a batch's missing keys go to RocksDB in one
    /// multi-get; updates are written back when evicted and at every checkpoint.
    pub cache_bytes: usize,
    /// RocksDB only: bytes of RocksDB's own memory per process, the block cache
    /// that every instance shares, with the memtables charged to it.
    pub rocksdb_bytes: usize,
}

/// Default of [`StateConfig::cache_bytes`]: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: Backend::Heap,
            local_dir: std::env::temp_dir().join("weir-state"),
            cache_bytes: DEFAULT_CACHE_BYTES,
            rocksdb_bytes: DEFAULT_ROCKSDB_BYTES,
        }
    }
}
