//! `weir checkpoints <job>`: a job's deployments in checkpoint storage, their
//! checkpoints and stop markers, and what `--restore latest` would pick.

use std::fmt::Write;

use crate::checkpoint::paths::Paths;
use crate::checkpoint::recovery::{self, HeadPoint};
use crate::checkpoint::runs;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::clock::Civil;
use crate::error::{Error, Result};
use crate::ids::JobId;

/// Options of `weir checkpoints`.
#[derive(Debug, clap::Args)]
pub struct CheckpointsArgs {
    /// The job (pipeline) name.
    pub job: String,
    /// Where its checkpoints are: a directory, file:// or s3:// URI.
    #[arg(long, default_value = ".weir/checkpoints")]
    pub checkpoint_dir: String,
    /// Show only this deployment.
    #[arg(long)]
    pub job_id: Option<String>,
}

/// Runs `weir checkpoints`.
pub fn checkpoints(args: &CheckpointsArgs) -> Result<()> {
    let store = open_store(&args.checkpoint_dir)?;
    print!(
        "{}",
        listing(store.as_ref(), &args.job, args.job_id.as_deref())?
    );
    Ok(())
}

/// The text `weir checkpoints` prints.
pub fn listing(store: &dyn CheckpointStore, job: &str, only: Option<&str>) -> Result<String> {
    let deployments = runs::deployments(store, job)?;
    let where_ = store.uri(&Paths::runs(job));
    if deployments.is_empty() {
        return Err(Error::NoCheckpoint(format!(
            "{where_} (no deployment of job {job} has written anything there)"
        )));
    }
    if let Some(id) = only {
        if !deployments.iter().any(|d| d.0 == id) {
            let known: Vec<&str> = deployments.iter().map(|d| d.0.as_str()).collect();
            return Err(Error::Usage(format!(
                "job {job} has no deployment {id} under {where_} (it has: {})",
                known.join(", ")
            )));
        }
    }
    let heads = runs::heads(store, job)?;
    let latest = recovery::latest(&heads).map(|h| h.run.clone());
    let mut text = format!("job {job} in {where_}\n");
    for id in deployments.iter().filter(|d| only.is_none_or(|o| d.0 == o)) {
        describe(store, job, id, latest.as_ref() == Some(id), &mut text)?;
    }
    if latest.is_none() {
        text.push_str("nothing to restore: no deployment has a completed checkpoint\n");
    }
    Ok(text)
}

fn describe(
    store: &dyn CheckpointStore,
    job: &str,
    id: &JobId,
    latest: bool,
    text: &mut String,
) -> Result<()> {
    let paths = Paths::new(job, id);
    let mark = if latest { "   <- --restore latest" } else { "" };
    let _ = writeln!(text, "deployment {id}{mark}");
    let head = runs::head(store, &paths)?;
    if let Some(HeadPoint::Savepoint(savepoint)) = head.as_ref().map(|h| &h.point) {
        let _ = writeln!(
            text,
            "  stopped with savepoint {savepoint}: it resumes only from there"
        );
    }
    let listing = runs::listing(store, &paths)?;
    if listing.complete.is_empty() {
        let _ = writeln!(text, "  no completed checkpoint");
    }
    for chk in listing.restore_candidates() {
        let line = match runs::read_metadata(store, &paths.checkpoint_dir(chk)) {
            Ok(meta) => format!(
                "  chk-{chk}  {}  {} bytes  {}",
                Civil::of_millis(meta.timestamp_ms),
                meta.state_size(),
                store.uri(&paths.checkpoint_dir(chk))
            ),
            Err(e @ (Error::CorruptCheckpoint { .. } | Error::MissingObject { .. })) => {
                format!("  chk-{chk}  DAMAGED: {e}")
            }
            Err(e) => return Err(e),
        };
        let _ = writeln!(text, "{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::recovery::StopMarker;
    use crate::checkpoint::store::FileStore;
    use crate::ids::CheckpointId;

    fn metadata(job: &str, id: u64, at: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format_version": crate::checkpoint::metadata::FORMAT_VERSION,
            "job": job, "checkpoint_id": id, "timestamp_ms": at, "duration_ms": 1,
            "max_parallelism": 128, "operators": [],
        }))
        .unwrap()
    }

    #[test]
    fn the_listing_shows_every_deployment_and_what_latest_picks() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let (a, b) = (JobId("a".into()), JobId("b".into()));
        let (pa, pb) = (Paths::new("wc", &a), Paths::new("wc", &b));
        store
            .put(&pa.metadata(CheckpointId(3)), &metadata("wc", 3, 1_000))
            .unwrap();
        store
            .put(&pa.metadata(CheckpointId(4)), b"{ damaged")
            .unwrap();
        store
            .put(&pb.metadata(CheckpointId(1)), &metadata("wc", 1, 2_000))
            .unwrap();
        let marker = StopMarker {
            savepoint: "file:///sp-2-x".into(),
            checkpoint_id: CheckpointId(2),
            timestamp_ms: 3_000,
        };
        runs::write_marker(&store, &pb, &marker).unwrap();
        let text = listing(&store, "wc", None).unwrap();
        assert!(text.contains("deployment a\n"), "{text}");
        assert!(text.contains("chk-4  DAMAGED"), "{text}");
        assert!(text.contains("chk-3  1970-01-01 00:00:01 UTC"), "{text}");
        assert!(
            text.contains("deployment b   <- --restore latest"),
            "{text}"
        );
        assert!(
            text.contains("stopped with savepoint file:///sp-2-x"),
            "{text}"
        );

        let err = listing(&store, "wc", Some("c")).unwrap_err().to_string();
        assert!(
            err.contains("no deployment c") && err.contains("a, b"),
            "{err}"
        );
        let err = listing(&store, "other", None).unwrap_err().to_string();
        assert!(err.contains("no deployment of job other"), "{err}");
    }
}
