//! `weir bench state-size`: checkpoint, savepoint, restore and rescale of large keyed state.
//!
//! One job writes a value of `--value-bytes` for each of `--keys` keys (a keyed
//! reduce keeping the last value per key), in five runs against the same
//! checkpoint storage, each printing a `RESULT` line:
//! 1. `full`: every key written once at parallelism 2; the job's final checkpoint
//!    holds the whole state (`sync_ms`: the longest its snapshot held up a task).
//! 2. `incremental`: restored from it, 1 % of the keys rewritten; its final
//!    checkpoint uploads what changed (`uploaded_bytes`), not the state.
//! 3. `savepoint`: restored again, and once it has rewritten another 1 % of the
//!    keys (no checkpoint in between), stopped with a savepoint (MB/s over the
//!    savepoint's bytes, from the request to the savepoint being complete): a
//!    native one uploads the change and copies what the checkpoint uploaded.
//! 4. `rescale`: the savepoint restored at parallelism 3 (restore MB/s: reading
//!    the savepoint and starting the tasks); the rescale time is the savepoint's
//!    time plus this restore's.
//! 5. `fresh-savepoint`: the savepoint restored at parallelism 2 and stopped with
//!    a savepoint at once. A savepoint's files are never a deployment's own, so
//!    nothing is in storage for this one to copy: it writes the whole state.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{JobBuilder, JobGraph};
use crate::checkpoint::metadata::CheckpointMetadata;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore;
use crate::checkpoint::runs;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::data::{Batch, SavepointFormat};
use crate::error::{Error, Result};
use crate::exec::requests::SavepointProgress;
use crate::exec::runner::{LocalRunner, RestoreFrom, RunConfig};
use crate::ids::JobId;
use crate::keys::mix;
use crate::metrics::JobMetrics;
use crate::operators::DiscardSink;
use crate::pipelines::generator::{block_share, generate_blocks, Generator, GeneratorSource};

const JOB: &str = "state-size";

/// Writes of `(key, value)`: record `i` writes key `(i * stride) % keys` with
/// `value_bytes` pseudo-random bytes (so compression cannot shrink the state).
#[derive(Clone)]
struct Writes {
    keys: u64,
    stride: u64,
    value_bytes: usize,
    split: u32,
    splits: u32,
}

impl Generator for Writes {
    type Out = (u64, Vec<u8>);

    fn open(&mut self, split: u32, splits: u32, _: Option<&[u8]>) -> Result<()> {
        (self.split, self.splits) = (split, splits);
        Ok(())
    }

    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<(u64, Vec<u8>)>) {
        let (keys, stride, len) = (self.keys, self.stride, self.value_bytes);
        generate_blocks(position, count, self.split, self.splits, out, |i| {
            let mut value = Vec::with_capacity(len);
            let mut word = mix(i);
            while value.len() < len {
                value.extend_from_slice(&word.to_le_bytes()[..(len - value.len()).min(8)]);
                word = mix(word);
            }
            ((i.wrapping_mul(stride)) % keys, value)
        });
    }

    fn share(&self, total: u64, split: u32, splits: u32) -> u64 {
        block_share(total, split, splits)
    }
}

/// The job of one phase: its source (named after the phase, so that each phase's
/// writes start afresh) writes `records` values, `stride` keys apart, at once;
/// with `keep_running`, a second source then trickles (a record a second), so
/// that the job runs until stopped.
fn job(
    phase: &str,
    keys: u64,
    stride: u64,
    value_bytes: usize,
    records: u64,
    keep_running: bool,
    parallelism: u32,
) -> Result<JobGraph> {
    let mut job = JobBuilder::new(JOB);
    job.parallelism(parallelism);
    let writes = Writes {
        keys,
        stride,
        value_bytes,
        split: 0,
        splits: 1,
    };
    let trickle = writes.clone();
    let mut stream = job.source(&format!("writes-{phase}"), move |_| {
        GeneratorSource::new(writes.clone(), Some(records), None)
    });
    if keep_running {
        stream = stream.union(job.source(&format!("trickle-{phase}"), move |_| {
            GeneratorSource::new(trickle.clone(), None, Some(1.0))
        }));
    }
    stream
        .key_by(|r: &(u64, Vec<u8>)| r.0)
        .reduce("values", |acc: &mut (u64, Vec<u8>), r: (u64, Vec<u8>)| {
            *acc = r
        })
        .sink("discard", |_| DiscardSink::new());
    job.build()
}

/// The newest completed checkpoint's `_metadata` of the deployment `id`.
fn latest(store: &Arc<dyn CheckpointStore>, id: &JobId) -> Result<CheckpointMetadata> {
    let paths = Paths::new(JOB, id);
    let newest = runs::listing(store.as_ref(), &paths)?
        .restore_candidates()
        .next()
        .ok_or_else(|| Error::Internal("the run left no checkpoint".into()))?;
    runs::read_metadata(store.as_ref(), &paths.checkpoint_dir(newest))
}

/// The longest any operator subtask's snapshot held up its task, in ms: the
/// synchronous part of the run's checkpoints.
fn sync_ms(metrics: &JobMetrics) -> f64 {
    let longest = metrics
        .operators()
        .iter()
        .map(|o| o.metrics.snapshot_sync_max_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    longest as f64 / 1e6
}

/// Reading the checkpoint to start from plus deploying (and so restoring) the tasks.
fn restore_time_ms(metrics: &JobMetrics) -> u64 {
    metrics.restore_load_ms.load(Ordering::Relaxed) + metrics.last_deploy_ms.load(Ordering::Relaxed)
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

/// Runs the five phases with `base` as the run configuration (checkpoint storage
/// and state backend); prints one `RESULT` line per phase.
pub fn run(keys: u64, value_bytes: usize, format: SavepointFormat, base: RunConfig) -> Result<()> {
    if keys < 100 {
        return Err(Error::Usage(
            "state-size needs --keys of at least 100".into(),
        ));
    }
    let store: Arc<dyn CheckpointStore> = Arc::from(open_store(&base.checkpoint_dir)?);
    let backend = base.exec.state.backend.name();
    let label =
        format!("scenario=state-size state={backend} keys={keys} value_bytes={value_bytes}");
    // Every phase is the same deployment, so each resumes the state of the one
    // before as its own (and the incremental phase uploads only what changed).
    let id = JobId::generate();
    let config = |restore: RestoreFrom| RunConfig {
        job_id: Some(id.clone()),
        checkpoint_interval: None,
        checkpoint_timeout: Duration::from_secs(3600),
        restore,
        // Each phase's source is new; the values are what carries over.
        allow_non_restored_state: true,
        ..base.clone()
    };

    // 1. Full: every key once.
    let runner = LocalRunner::new(
        job("full", keys, 1, value_bytes, keys, false, 2)?,
        config(RestoreFrom::Nothing),
    )?;
    let metrics = runner.metrics();
    runner.run()?;
    let full = latest(&store, &id)?;
    println!(
        "RESULT {label} phase=full parallelism=2 state_bytes={} uploaded_bytes={} checkpoint_ms={} sync_ms={:.3}",
        full.state_size(),
        full.uploaded_bytes,
        full.duration_ms,
        sync_ms(&metrics),
    );

    // 2. Incremental: 1 % of the keys, spread over all key groups.
    let changed = keys / 100;
    let runner = LocalRunner::new(
        job("incremental", keys, 100, value_bytes, changed, false, 2)?,
        config(RestoreFrom::Nothing),
    )?;
    let metrics = runner.metrics();
    runner.run()?;
    let incremental = latest(&store, &id)?;
    let restore_ms = restore_time_ms(&metrics);
    println!(
        "RESULT {label} phase=incremental parallelism=2 changed_keys={changed} state_bytes={} uploaded_bytes={} checkpoint_ms={} sync_ms={:.3} restore_ms={restore_ms} restore_mb_per_s={:.1}",
        incremental.state_size(),
        incremental.uploaded_bytes,
        incremental.duration_ms,
        sync_ms(&metrics),
        mb_per_s(full.state_size(), restore_ms as f64 / 1e3),
    );

    // 3. Savepoint: restore, change 1 % of the keys, then stop with a savepoint.
    let (path, bytes, savepoint_s) = stop_with_savepoint(
        job("savepoint", keys, 100, value_bytes, changed, true, 2)?,
        config(RestoreFrom::Nothing),
        changed,
        format,
    )?;
    println!(
        "RESULT {label} phase=savepoint format={} parallelism=2 savepoint_bytes={bytes} seconds={savepoint_s:.3} mb_per_s={:.1}",
        format.name(),
        mb_per_s(bytes, savepoint_s)
    );

    // 4. Rescale: the savepoint restored at parallelism 3.
    let runner = LocalRunner::new(
        job("rescale", keys, 1, value_bytes, 0, false, 3)?,
        config(RestoreFrom::Path(path.clone())),
    )?;
    let metrics = runner.metrics();
    runner.run()?;
    let restore_s = restore_time_ms(&metrics) as f64 / 1e3;
    println!(
        "RESULT {label} phase=rescale from=2 to=3 restore_seconds={restore_s:.3} restore_mb_per_s={:.1} rescale_seconds={:.3}",
        mb_per_s(bytes, restore_s),
        savepoint_s + restore_s
    );

    // 5. A savepoint of state that storage holds nothing of yet.
    let (_, bytes, fresh_s) = stop_with_savepoint(
        job("fresh-savepoint", keys, 1, value_bytes, 0, true, 2)?,
        config(RestoreFrom::Path(path)),
        0,
        format,
    )?;
    println!(
        "RESULT {label} phase=fresh-savepoint format={} parallelism=2 savepoint_bytes={bytes} seconds={fresh_s:.3} mb_per_s={:.1}",
        format.name(),
        mb_per_s(bytes, fresh_s)
    );
    Ok(())
}

/// Runs `graph` and, once it is deployed (its state restored) and its sources
/// have read `records`, stops it with a savepoint in `format`; returns the
/// savepoint's path, its bytes and the seconds from the request to the
/// savepoint being complete.
fn stop_with_savepoint(
    graph: JobGraph,
    config: RunConfig,
    records: u64,
    format: SavepointFormat,
) -> Result<(String, u64, f64)> {
    let runner = LocalRunner::new(graph, config)?;
    let (handle, metrics) = (runner.handle(), runner.metrics());
    let running = std::thread::spawn(move || runner.run());
    while metrics.deployments.load(Ordering::Relaxed) == 0 || metrics.source_records() < records {
        if running.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let request = handle.trigger_savepoint(None, true, format);
    let path = loop {
        match handle.savepoint(&request) {
            Some(SavepointProgress::Completed { path, .. }) => break path,
            Some(SavepointProgress::Failed(reason)) => {
                return Err(Error::Internal(format!("the savepoint failed: {reason}")))
            }
            _ if running.is_finished() => {
                running
                    .join()
                    .map_err(|_| Error::Internal("the savepoint run panicked".into()))??;
                return Err(Error::Internal(
                    "the job ended before its savepoint completed".into(),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    running
        .join()
        .map_err(|_| Error::Internal("the savepoint run panicked".into()))??;
    let bytes = restore::explicit(&path)?.metadata.state_size();
    Ok((path, bytes, seconds))
}
