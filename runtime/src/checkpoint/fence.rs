//! Fencing a superseded coordinator: epochs claimed in checkpoint storage.
//!
//! Every coordinator of a deployment (and every `weir run`) claims the next epoch
//! when it starts, by creating `leaders/{epoch}` with a create-only put: of two
//! that race for one epoch, one wins and the other takes the next. Before each
//! step that commits or deletes in the deployment's storage (deploying tasks whose
//! sinks clean up, writing a `_metadata` or a savepoint or the stop marker,
//! retention, collecting shared files) the holder checks that no later epoch has
//! been claimed; if one has, it was superseded (it was frozen, or cut off from
//! the cluster while a successor started) and it stops with [`Error::Fenced`].
//!
//! What the check leaves open is the moment between a check and the write it
//! guards; a `_metadata` is written create-only as well, so even then two
//! coordinators can never both commit one checkpoint id.

use std::sync::Arc;

use crate::checkpoint::paths::Paths;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, Result};

/// Epochs kept in storage below the newest (older ones are deleted when claiming).
const KEPT: u64 = 3;

/// This process's claim on a deployment's storage.
#[derive(Debug, Clone)]
pub struct Fence {
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
    epoch: u64,
}

impl Fence {
    /// Claims the next epoch of the deployment.
    pub fn claim(store: Arc<dyn CheckpointStore>, paths: &Paths) -> Result<Self> {
        let mut epoch = newest(store.as_ref(), paths)?.map_or(1, |e| e + 1);
        loop {
            match store.put_new(
                &paths.leader(epoch),
                std::process::id().to_string().as_bytes(),
            ) {
                Ok(()) => break,
                Err(Error::AlreadyExists { .. }) => epoch += 1,
                Err(e) => return Err(e),
            }
        }
        let old: Vec<String> = store
            .list(&paths.leaders())?
            .into_iter()
            .filter(|k| paths.parse_leader_key(k).is_some_and(|e| e + KEPT <= epoch))
            .collect();
        if let Err(e) = store.delete(&old) {
            tracing::debug!(error = %e, "could not delete old coordinator epochs");
        }
        tracing::info!(job = %paths.run(), epoch, "claimed the coordinator epoch");
        Ok(Fence {
            store,
            paths: paths.clone(),
            epoch,
        })
    }

    /// This process's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fails with [`Error::Fenced`] if a later epoch has been claimed.
    pub fn check(&self) -> Result<()> {
        match newest(self.store.as_ref(), &self.paths)? {
            Some(successor) if successor > self.epoch => Err(Error::Fenced {
                job: self.paths.run().trim_end_matches('/').to_string(),
                epoch: self.epoch,
                successor,
            }),
            _ => Ok(()),
        }
    }
}

fn newest(store: &dyn CheckpointStore, paths: &Paths) -> Result<Option<u64>> {
    Ok(store
        .list(&paths.leaders())?
        .iter()
        .filter_map(|k| paths.parse_leader_key(k))
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::FileStore;
    use crate::ids::JobId;

    #[test]
    fn a_later_claim_fences_the_earlier_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir.path()));
        let paths = Paths::new("job", &JobId("r".into()));
        let first = Fence::claim(store.clone(), &paths).unwrap();
        first.check().unwrap();
        let second = Fence::claim(store.clone(), &paths).unwrap();
        assert_eq!((first.epoch(), second.epoch()), (1, 2));
        second.check().unwrap();
        let err = first.check().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Fenced {
                    epoch: 1,
                    successor: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("job/r"), "{err}");
    }

    #[test]
    fn a_claim_takes_the_epoch_after_the_newest_and_old_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir.path()));
        let paths = Paths::new("job", &JobId("r".into()));
        for _ in 0..5 {
            Fence::claim(store.clone(), &paths).unwrap();
        }
        // Another process claimed epoch 6 meanwhile.
        store.put_new(&paths.leader(6), b"other").unwrap();
        let late = Fence::claim(store.clone(), &paths).unwrap();
        assert_eq!(late.epoch(), 7);
        let kept: Vec<u64> = store
            .list(&paths.leaders())
            .unwrap()
            .iter()
            .filter_map(|k| paths.parse_leader_key(k))
            .collect();
        assert_eq!(kept, [5, 6, 7]);
    }
}
