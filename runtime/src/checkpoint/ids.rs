//! Checkpoint ids that are never used twice, reserved in blocks in storage.
//!
//! A declined checkpoint, or a savepoint's staging directory, leaves nothing in
//! `checkpoints/` to show that its id was used; a coordinator restarted after it
//! would pick the id again, and what the first use left behind (a sink's
//! pre-committed file) would be taken for the second's. So ids are reserved
//! before use: `checkpoint-ids` holds the highest reserved id, raised a block at
//! a time (one write per [`BLOCK`] checkpoints), and a coordinator starts above it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::checkpoint::paths::Paths;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;

/// Ids reserved by one write.
pub const BLOCK: u64 = 32;

/// The ids a deployment has reserved.
#[derive(Debug)]
pub struct IdReservation {
    store: Arc<dyn CheckpointStore>,
    key: String,
    reserved: AtomicU64,
}

impl IdReservation {
    /// Reads the reservation of the deployment at `paths` (none yet: 0).
    pub fn open(store: Arc<dyn CheckpointStore>, paths: &Paths) -> Result<Self> {
        let key = paths.checkpoint_ids();
        let reserved = match store.get(&key) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse()
                .map_err(|_| Error::CorruptCheckpoint {
                    path: store.uri(&key),
                    reason: "not a checkpoint id".into(),
                })?,
            Err(Error::MissingObject { .. }) => 0,
            Err(e) => return Err(e),
        };
        Ok(IdReservation {
            store,
            key,
            reserved: AtomicU64::new(reserved),
        })
    }

    /// The first id above every reserved one.
    pub fn next_free(&self) -> CheckpointId {
        CheckpointId(self.reserved.load(Ordering::Relaxed) + 1)
    }

    /// Whether `id` is reserved already (using it writes nothing).
    pub fn covers(&self, id: CheckpointId) -> bool {
        id.0 <= self.reserved.load(Ordering::Relaxed)
    }

    /// Makes sure `id` is reserved before it is used (writing a new block if not).
    /// One coordinator loop calls it, so no two reservations race.
    pub fn reserve(&self, id: CheckpointId) -> Result<()> {
        if id.0 <= self.reserved.load(Ordering::Relaxed) {
            return Ok(());
        }
        let upto = id.0 + BLOCK - 1;
        self.store.put(&self.key, upto.to_string().as_bytes())?;
        self.reserved.store(upto, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::FileStore;
    use crate::ids::JobId;

    #[test]
    fn a_new_reader_starts_above_every_reserved_id() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir.path()));
        let paths = Paths::new("job", &JobId("r".into()));
        let ids = IdReservation::open(store.clone(), &paths).unwrap();
        assert_eq!(ids.next_free(), CheckpointId(1));
        ids.reserve(CheckpointId(1)).unwrap();
        ids.reserve(CheckpointId(5)).unwrap();
        // A coordinator restarted now, whatever checkpoints 1 to 5 left behind.
        let again = IdReservation::open(store.clone(), &paths).unwrap();
        assert_eq!(again.next_free(), CheckpointId(BLOCK + 1));
        ids.reserve(CheckpointId(BLOCK + 1)).unwrap();
        let after = IdReservation::open(store, &paths).unwrap();
        assert_eq!(after.next_free(), CheckpointId(2 * BLOCK + 1));
    }
}
