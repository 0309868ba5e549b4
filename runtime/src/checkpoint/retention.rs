//! Pure decisions over a listing of `checkpoints/`: which checkpoint to restore,
//! which id comes next, and what may be deleted.

use std::collections::BTreeSet;

use crate::checkpoint::paths::{Paths, METADATA};
use crate::ids::CheckpointId;

/// What a listing of a job's `checkpoints/` prefix shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Ids with a `_metadata`: completed checkpoints.
    pub complete: BTreeSet<CheckpointId>,
    /// Every id with any object, complete or not.
    pub all: BTreeSet<CheckpointId>,
}

impl Listing {
    /// Reads a listing from the keys under [`Paths::checkpoints`].
    pub fn from_keys<'k>(paths: &Paths, keys: impl IntoIterator<Item = &'k String>) -> Self {
        let mut listing = Listing::default();
        for key in keys {
            if let Some((id, rest)) = paths.parse_checkpoint_key(key) {
                listing.all.insert(id);
                if rest == METADATA {
                    listing.complete.insert(id);
                }
            }
        }
        listing
    }

    /// Completed checkpoints, newest first: the order in which to try restoring.
    pub fn restore_candidates(&self) -> impl Iterator<Item = CheckpointId> + '_ {
        self.complete.iter().rev().copied()
    }

    /// The id for the next checkpoint: above every id ever used here, so ids
    /// keep growing across restores and never reuse an abandoned directory.
    pub fn next_id(&self, at_least: CheckpointId) -> CheckpointId {
        self.all
            .last()
            .map_or(at_least, |last| last.next().max(at_least))
    }

    /// Checkpoints to delete once `latest` completed: completed ones beyond the
    /// newest `retained`, and incomplete ones older than `latest` (declined or abandoned).
    pub fn to_delete(&self, latest: CheckpointId, retained: usize) -> Vec<CheckpointId> {
        let keep: BTreeSet<_> = self.complete.iter().rev().take(retained.max(1)).collect();
        self.all
            .iter()
            .filter(|id| **id <= latest && !keep.contains(id))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(complete: &[u64], incomplete: &[u64]) -> Listing {
        let paths = Paths::new("j", &crate::ids::JobId("r".into()));
        let mut keys = Vec::new();
        for id in complete {
            keys.push(format!("j/r/checkpoints/chk-{id}/_metadata"));
            keys.push(format!("j/r/checkpoints/chk-{id}/op/0/state"));
        }
        for id in incomplete {
            keys.push(format!("j/r/checkpoints/chk-{id}/op/0/state"));
        }
        Listing::from_keys(&paths, &keys)
    }

    #[test]
    fn the_newest_complete_checkpoint_is_tried_first_and_incomplete_ones_never() {
        let l = listing(&[2, 9, 10], &[11, 12]);
        assert_eq!(
            l.restore_candidates().collect::<Vec<_>>(),
            [10, 9, 2].map(CheckpointId)
        );
    }

    #[test]
    fn next_id_is_above_every_directory_seen() {
        assert_eq!(
            listing(&[3], &[7]).next_id(CheckpointId(1)),
            CheckpointId(8)
        );
        assert_eq!(listing(&[], &[]).next_id(CheckpointId(1)), CheckpointId(1));
        assert_eq!(
            listing(&[3], &[]).next_id(CheckpointId(20)),
            CheckpointId(20)
        );
    }

    #[test]
    fn retention_keeps_the_newest_and_deletes_abandoned_older_ones() {
        let l = listing(&[1, 2, 4, 6], &[3, 5, 7]);
        let deleted = l.to_delete(CheckpointId(6), 2);
        assert_eq!(deleted, [1, 2, 3, 5].map(CheckpointId));
    }
}
