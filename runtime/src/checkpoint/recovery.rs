//! Where a run starts and restarts from: pure decisions over what storage shows.
//!
//! A deployment (one [`JobId`]) restores only what it is told to restore or what
//! it wrote itself:
//! - [`start`]: at start, its own newest completed checkpoint (a restarted
//!   coordinator of the same identity: high availability) or the point it was
//!   given (`--restore`, `initialSavepoint`, the operator's restore point),
//!   whichever is newer; a deployment stopped with a savepoint is held there
//!   until it is started from that savepoint;
//! - [`restart`]: after a failure, its own newest checkpoint if it is newer than
//!   the point it started from, else that point, else a fresh start;
//! - [`latest`]: `--restore latest` is the newest resume point of any of the
//!   job's deployments (the savepoint of one that was stopped, else its newest
//!   checkpoint).
//!
//! Candidates come newest first; the caller loads them in order and skips only
//! verified damage (see `checkpoint::restore::load_first`).

use serde::{Deserialize, Serialize};

use crate::checkpoint::retention::Listing;
use crate::ids::{CheckpointId, JobId};

/// The marker a stop-with-savepoint leaves in its deployment's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopMarker {
    /// The savepoint's directory.
    pub savepoint: String,
    /// The checkpoint id it was taken as.
    #[serde(default)]
    pub checkpoint_id: CheckpointId,
    /// When it was triggered, in ms since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: u64,
}

/// A point a run was told to start from, as its `_metadata` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Where it is (a checkpoint or savepoint directory).
    pub location: String,
    /// Its checkpoint id.
    pub checkpoint_id: CheckpointId,
}

/// How a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From nothing.
    Fresh,
    /// From the requested point.
    Requested,
    /// From the deployment's own checkpoints, tried in this order.
    Own(Vec<CheckpointId>),
    /// Not at all: the deployment was stopped with this savepoint, and starts
    /// again only from it.
    Held(String),
}

/// How a run starts: `own` is what its deployment wrote, `requested` what it was
/// told to start from.
pub fn start(own: &Listing, stopped: Option<&StopMarker>, requested: Option<&Requested>) -> Start {
    // A marker older than the deployment's newest checkpoint is stale: the job
    // resumed from its savepoint and checkpointed since (its removal failed).
    let stopped = stopped.filter(|m| own.complete.last().is_none_or(|c| *c < m.checkpoint_id));
    if let Some(marker) = stopped {
        return match requested {
            Some(r) if same_location(&r.location, &marker.savepoint) => Start::Requested,
            _ => Start::Held(marker.savepoint.clone()),
        };
    }
    let own_is_newer = own
        .complete
        .last()
        .is_some_and(|newest| requested.is_none_or(|r| r.checkpoint_id <= *newest));
    match requested {
        _ if own_is_newer => Start::Own(own.restore_candidates().collect()),
        Some(_) => Start::Requested,
        None => Start::Fresh,
    }
}

/// How a run restarts after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// From nothing: it never completed a checkpoint and was started from nothing.
    Fresh,
    /// From the point it started from (still newer than anything it wrote).
    Initial,
    /// From its own checkpoints newer than its start point, tried in this order;
    /// if all are damaged the job fails (it never falls back behind them).
    Own(Vec<CheckpointId>),
}

/// How a run that started from checkpoint `initial` (if any) restarts, given its
/// own checkpoints.
pub fn restart(own: &Listing, initial: Option<CheckpointId>) -> Restart {
    let newer: Vec<CheckpointId> = own
        .restore_candidates()
        .filter(|id| initial.is_none_or(|i| *id > i))
        .collect();
    match (newer.is_empty(), initial) {
        (false, _) => Restart::Own(newer),
        (true, Some(_)) => Restart::Initial,
        (true, None) => Restart::Fresh,
    }
}

/// The point a deployment would resume from, and when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The deployment.
    pub run: JobId,
    /// When its resume point was taken, in ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// What it is.
    pub point: HeadPoint,
}

/// A deployment's resume point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadPoint {
    /// The savepoint it was stopped with.
    Savepoint(String),
    /// Its completed checkpoints, newest first.
    Checkpoints(Vec<CheckpointId>),
}

/// `--restore latest`: the newest resume point over the job's deployments (the
/// larger identity breaks a tie).
pub fn latest(heads: &[Head]) -> Option<&Head> {
    heads
        .iter()
        .max_by(|a, b| (a.timestamp_ms, &a.run).cmp(&(b.timestamp_ms, &b.run)))
}

/// Whether two spellings name one checkpoint directory (`file://` or not, with
/// or without `_metadata` and a trailing `/`).
pub fn same_location(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        p.trim_end_matches(crate::checkpoint::paths::METADATA)
            .trim_end_matches('/')
            .trim_start_matches("file://")
            .to_string()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::paths::Paths;

    fn own(complete: &[u64]) -> Listing {
        let paths = Paths::new("j", &JobId("me".into()));
        let keys: Vec<String> = complete
            .iter()
            .map(|id| paths.metadata(CheckpointId(*id)))
            .collect();
        Listing::from_keys(&paths, &keys)
    }

    fn requested(location: &str, id: u64) -> Requested {
        Requested {
            location: location.into(),
            checkpoint_id: CheckpointId(id),
        }
    }

    fn ids(v: &[u64]) -> Vec<CheckpointId> {
        v.iter().copied().map(CheckpointId).collect()
    }

    fn marker(path: &str) -> StopMarker {
        StopMarker {
            savepoint: path.into(),
            checkpoint_id: CheckpointId(9),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn where_a_run_starts() {
        let sp = "s3://b/j/me/savepoints/sp-9-abc";
        type Case = (
            &'static str,
            Listing,
            Option<StopMarker>,
            Option<Requested>,
            Start,
        );
        let cases: Vec<Case> = vec![
            ("a fresh deployment told nothing starts fresh", own(&[]), None, None, Start::Fresh),
            (
                "a fresh deployment starts from what it is told",
                own(&[]),
                None,
                Some(requested("/old/chk-4", 4)),
                Start::Requested,
            ),
            (
                "a restarted coordinator resumes its own newest checkpoint",
                own(&[3, 5]),
                None,
                None,
                Start::Own(ids(&[5, 3])),
            ),
            (
                "its own checkpoints win over an older requested point (written after it)",
                own(&[7, 8]),
                None,
                Some(requested(sp, 6)),
                Start::Own(ids(&[8, 7])),
            ),
            (
                "a requested point newer than its own checkpoints wins (a savepoint taken after them)",
                own(&[7, 8]),
                None,
                Some(requested(sp, 9)),
                Start::Requested,
            ),
            (
                "a deployment stopped with a savepoint is held without it",
                own(&[7, 8]),
                Some(marker(sp)),
                None,
                Start::Held(sp.into()),
            ),
            (
                "a deployment stopped with a savepoint is held when told another point",
                own(&[7, 8]),
                Some(marker(sp)),
                Some(requested("/else/chk-8", 8)),
                Start::Held(sp.into()),
            ),
            (
                "a deployment stopped with a savepoint starts from that savepoint",
                own(&[7, 8]),
                Some(marker(sp)),
                Some(requested(&format!("{sp}/_metadata"), 9)),
                Start::Requested,
            ),
            (
                "a marker older than the deployment's checkpoints is stale",
                own(&[10, 11]),
                Some(marker(sp)),
                None,
                Start::Own(ids(&[11, 10])),
            ),
        ];
        for (name, listing, stopped, req, expected) in cases {
            assert_eq!(
                start(&listing, stopped.as_ref(), req.as_ref()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn where_a_run_restarts() {
        let cases = [
            (
                "nothing done, nothing given: fresh",
                own(&[]),
                None,
                Restart::Fresh,
            ),
            (
                "nothing done since the start point: it again",
                own(&[]),
                Some(4),
                Restart::Initial,
            ),
            (
                "checkpoints older than the start point are an earlier deployment's",
                own(&[2, 3]),
                Some(4),
                Restart::Initial,
            ),
            (
                "its own newer checkpoints, newest first, never those behind the start point",
                own(&[3, 5, 6]),
                Some(4),
                Restart::Own(ids(&[6, 5])),
            ),
            (
                "a fresh run's own checkpoints",
                own(&[1, 2]),
                None,
                Restart::Own(ids(&[2, 1])),
            ),
        ];
        for (name, listing, initial, expected) in cases {
            assert_eq!(
                restart(&listing, initial.map(CheckpointId)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn latest_is_the_newest_resume_point_of_any_deployment() {
        let head = |run: &str, at: u64, point: HeadPoint| Head {
            run: JobId(run.into()),
            timestamp_ms: at,
            point,
        };
        let heads = [
            head("a", 100, HeadPoint::Checkpoints(ids(&[12, 11]))),
            head("b", 300, HeadPoint::Savepoint("sp".into())),
            head("c", 200, HeadPoint::Checkpoints(ids(&[3]))),
        ];
        assert_eq!(latest(&heads).map(|h| h.run.0.as_str()), Some("b"));
        assert_eq!(latest(&heads[..1]).map(|h| h.run.0.as_str()), Some("a"));
        assert_eq!(latest(&[]), None);
    }
}
