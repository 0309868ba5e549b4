//! What storage holds of a job's deployments: their checkpoints, stop markers and
//! resume points, read for restores and for `weir checkpoints`.

use crate::checkpoint::metadata::CheckpointMetadata;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::recovery::{Head, HeadPoint, StopMarker};
use crate::checkpoint::retention::Listing;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::ids::JobId;

/// The checkpoints of the deployment at `paths`.
pub fn listing(store: &dyn CheckpointStore, paths: &Paths) -> Result<Listing> {
    Ok(Listing::from_keys(
        paths,
        &store.list(&paths.checkpoints())?,
    ))
}

/// The deployments of job `job` in `store`, by identity.
pub fn deployments(store: &dyn CheckpointStore, job: &str) -> Result<Vec<JobId>> {
    Ok(store
        .children(&Paths::runs(job))?
        .iter()
        .filter_map(|name| JobId::parse(name).ok())
        .collect())
}

/// The stop marker of the deployment at `paths`, if it was stopped with a savepoint.
pub fn read_marker(store: &dyn CheckpointStore, paths: &Paths) -> Result<Option<StopMarker>> {
    match store.get(&paths.stopped()) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::CorruptCheckpoint {
                    path: store.uri(&paths.stopped()),
                    reason: format!("not a stop marker: {e}"),
                })
        }
        Err(Error::MissingObject { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records that the deployment at `paths` stopped with a savepoint.
pub fn write_marker(store: &dyn CheckpointStore, paths: &Paths, marker: &StopMarker) -> Result<()> {
    let bytes = serde_json::to_vec(marker)
        .map_err(|e| Error::Internal(format!("encoding the stop marker: {e}")))?;
    store.put(&paths.stopped(), &bytes)
}

/// Reads the `_metadata` of checkpoint directory `dir` (a key prefix ending in `/`).
pub fn read_metadata(store: &dyn CheckpointStore, dir: &str) -> Result<CheckpointMetadata> {
    let key = format!("{dir}{}", crate::checkpoint::paths::METADATA);
    let bytes = store.get(&key)?;
    CheckpointMetadata::parse(&store.uri(&key), &bytes)
}

/// The point the deployment at `paths` would resume from, if any: the savepoint it
/// stopped with, else its completed checkpoints, timed by the newest that can be
/// read (a damaged one is passed over here; restoring reports it).
pub fn head(store: &dyn CheckpointStore, paths: &Paths) -> Result<Option<Head>> {
    if let Some(marker) = read_marker(store, paths)? {
        return Ok(Some(Head {
            run: paths.id().clone(),
            timestamp_ms: marker.timestamp_ms,
            point: HeadPoint::Savepoint(marker.savepoint),
        }));
    }
    let candidates: Vec<_> = listing(store, paths)?.restore_candidates().collect();
    let mut timestamp_ms = None;
    for id in &candidates {
        match read_metadata(store, &paths.checkpoint_dir(*id)) {
            Ok(meta) => {
                timestamp_ms = Some(meta.timestamp_ms);
                break;
            }
            Err(e @ (Error::CorruptCheckpoint { .. } | Error::MissingObject { .. })) => {
                tracing::debug!(checkpoint = id.0, error = %e, "passing over an unreadable _metadata");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(match (candidates.is_empty(), timestamp_ms) {
        (true, _) => None,
        (false, at) => Some(Head {
            run: paths.id().clone(),
            timestamp_ms: at.unwrap_or(0),
            point: HeadPoint::Checkpoints(candidates),
        }),
    })
}

/// Every deployment's resume point, for `--restore latest`.
pub fn heads(store: &dyn CheckpointStore, job: &str) -> Result<Vec<Head>> {
    let mut heads = Vec::new();
    for id in deployments(store, job)? {
        if let Some(h) = head(store, &Paths::new(job, &id))? {
            heads.push(h);
        }
    }
    Ok(heads)
}
