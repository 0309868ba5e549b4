//! The exactly-once file sink: part files made visible only when their checkpoint completes.
//!
//! Two-phase commit over a directory, per subtask `s`:
//! - records are appended to the hidden in-progress file `.part-s-a<attempt>.inprogress`;
//! - at the barrier of checkpoint `n` (pre-commit) the file is synced and renamed to
//!   the hidden `.part-s-n.pending`, and `n` joins the pending list in the snapshot;
//! - when `n` completes (commit), every pending file up to `n` is renamed to its
//!   visible name `part-s-n`, never over an existing file;
//! - on restore from checkpoint `c`, the pending list in `c` is committed again
//!   (a file already renamed stays as it is) and every other hidden file of the
//!   subtask is deleted: it holds records of checkpoints that never completed,
//!   which the sources will replay. Restored at another parallelism, subtask `i`
//!   does this for every old subtask `j` with `j % parallelism == i`.
//!
//! Every rename is followed by a sync of the directory, so a commit survives a
//! crash of the machine. Readers that ignore hidden files therefore see each
//! record exactly once.
//!
//! A restore never goes behind committed output: if the directory holds a part
//! file of a checkpoint after `c` (committed by a run that went on from `c`, or
//! before a newer checkpoint was found damaged and skipped), replaying from `c`
//! would write its records again, so the sink refuses to open
//! ([`Error::OutputConflict`]); so does a fresh start in a directory that holds
//! committed output.

use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::data::{Barrier, Batch, Data};
use crate::durable;
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::operator::{Operator, OperatorContext};
use crate::state::{OperatorSnapshot, RestoredState};

/// Writes a record as one line (without the newline) into a buffer.
pub type LineFormat<T> = fn(&T, &mut Vec<u8>);

/// Writes records as lines into part files, exactly once.
pub struct FileSink<T> {
    dir: PathBuf,
    format: LineFormat<T>,
    subtask: u32,
    attempt: u64,
    uid: String,
    writer: Option<BufWriter<File>>,
    line: Vec<u8>,
    /// Checkpoints whose part files are pre-committed but not yet committed.
    pending: Vec<CheckpointId>,
}

impl<T> FileSink<T> {
    /// A sink writing into `dir`, formatting records with `format`.
    pub fn new(dir: impl Into<PathBuf>, format: LineFormat<T>) -> Self {
        FileSink {
            dir: dir.into(),
            format,
            subtask: 0,
            attempt: 0,
            uid: String::new(),
            writer: None,
            line: Vec::with_capacity(256),
            pending: Vec::new(),
        }
    }

    /// The file records go to until the next barrier. Its name carries the attempt,
    /// so a stale attempt (a worker back from a stall) never appends to the file
    /// of the current one: `File::create` on a shared name would reuse the inode
    /// the stale writer still holds.
    fn in_progress(&self) -> PathBuf {
        self.dir.join(format!(
            ".part-{:04}-a{:x}.inprogress",
            self.subtask, self.attempt
        ))
    }

    fn pending_path(&self, subtask: u32, id: CheckpointId) -> PathBuf {
        self.dir
            .join(format!(".part-{subtask:04}-{:010}.pending", id.0))
    }

    fn committed_path(&self, subtask: u32, id: CheckpointId) -> PathBuf {
        self.dir.join(format!("part-{subtask:04}-{:010}", id.0))
    }

    /// Renames subtask `subtask`'s pending file of `id` to its visible name, never
    /// over another file; done already is fine.
    fn commit(&self, subtask: u32, id: CheckpointId) -> Result<()> {
        let (from, to) = (
            self.pending_path(subtask, id),
            self.committed_path(subtask, id),
        );
        match durable::rename_new(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::OutputConflict {
                path: to,
                reason: format!(
                    "another file of this name exists already (checkpoint {id} of another run?); \
                     it is never overwritten, and {} is kept beside it",
                    from.display()
                ),
            }),
            Err(e) => Err(Error::io("committing part file", from, e)),
        }
    }

    /// Refuses to start where replaying from checkpoint `restored` (none: a fresh
    /// start) would write again records that the directory holds committed.
    fn check_nothing_committed_after(&self, restored: Option<CheckpointId>) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("listing", &self.dir, e))?;
        let mut newest: Option<(CheckpointId, String)> = None;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = committed_id(&name) else {
                continue;
            };
            if restored.is_none_or(|r| id > r) && newest.as_ref().is_none_or(|(n, _)| id > *n) {
                newest = Some((id, name));
            }
        }
        let Some((id, name)) = newest else {
            return Ok(());
        };
        let reason = match restored {
            None => format!(
                "it holds committed output ({name}); a fresh run would add its own beside \
                 it. Write to an empty directory, or resume the run that wrote it (--restore latest)"
            ),
            Some(r) => format!(
                "it holds output committed at checkpoint {id} ({name}), after checkpoint {r} \
                 that the job restores: replaying from there would write those records \
                 again. Restore the newest checkpoint, or write to an empty directory"
            ),
        };
        Err(Error::OutputConflict {
            path: self.dir.clone(),
            reason,
        })
    }

    /// Deletes every hidden file of subtask `subtask` that is not pending in `keep`.
    /// The deletions are synced with the directory (so that a pending file of a
    /// checkpoint that never completed cannot come back after a crash).
    fn discard_uncommitted(&self, subtask: u32, keep: &[CheckpointId]) -> Result<()> {
        let prefix = format!(".part-{subtask:04}");
        let keep: Vec<String> = keep
            .iter()
            .map(|id| format!(".part-{subtask:04}-{:010}.pending", id.0))
            .collect();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("listing", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&format!("{prefix}-"))
                && (name.ends_with(".inprogress") || name.ends_with(".pending"));
            if ours && !keep.contains(&name) {
                remove(&entry.path())?;
            }
        }
        durable::sync_dir(&self.dir).map_err(|e| Error::io("syncing", &self.dir, e))
    }
}

impl<T> FileSink<T> {
    /// Commits old subtask `old`'s pending files again and deletes its other hidden
    /// files (records of checkpoints that never completed).
    fn recover(&self, old: u32, pending: &[CheckpointId]) -> Result<()> {
        self.discard_uncommitted(old, pending)?;
        for &id in pending {
            if !self.pending_path(old, id).exists() && !self.committed_path(old, id).exists() {
                return Err(Error::State {
                    uid: self.uid.clone(),
                    reason: format!(
                        "part file {} of checkpoint {id} is missing: its records are lost",
                        self.pending_path(old, id).display()
                    ),
                });
            }
            self.commit(old, id)?;
        }
        Ok(())
    }
}

/// The checkpoint of a committed part file's name (`part-{subtask}-{checkpoint}`).
fn committed_id(name: &str) -> Option<CheckpointId> {
    let rest = name.strip_prefix("part-")?;
    let (subtask, id) = rest.split_once('-')?;
    subtask.parse::<u32>().ok()?;
    id.parse().ok().map(CheckpointId)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("deleting", path, e)),
        _ => Ok(()),
    }
}

impl<T: Data> Operator for FileSink<T> {
    type In = T;
    type Out = ();

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.subtask = ctx.subtask.index;
        self.attempt = ctx.attempt;
        self.uid = ctx.uid.0.clone();
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("creating output directory", &self.dir, e))?;
        let decode = |bytes: &[u8]| -> Result<Vec<CheckpointId>> {
            bincode::deserialize(bytes).map_err(|e| Error::State {
                uid: self.uid.clone(),
                reason: format!("pending part files: {e}"),
            })
        };
        // The old subtasks whose files this one takes over: itself, and at another
        // parallelism every old subtask j with j % parallelism == index.
        let (index, parallelism) = (ctx.subtask.index, ctx.subtask.parallelism);
        let mut inherited = vec![(index, Vec::new())];
        self.check_nothing_committed_after(restored.as_ref().map(|r| r.checkpoint))?;
        if let Some(restored) = restored {
            if let Some(bytes) = &restored.operator_state {
                inherited[0].1 = decode(bytes)?;
            }
            for (old, bytes) in restored.union.iter().flat_map(|u| &u.states) {
                if old % parallelism != index {
                    continue;
                }
                let pending = decode(bytes)?;
                match inherited.iter_mut().find(|(j, _)| j == old) {
                    Some((_, list)) => *list = pending,
                    None => inherited.push((*old, pending)),
                }
            }
        }
        for (old, pending) in inherited {
            self.recover(old, &pending)?;
        }
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let path = self.in_progress();
                let file =
                    File::create(&path).map_err(|e| Error::io("creating part file", &path, e))?;
                self.writer.insert(BufWriter::with_capacity(1 << 20, file))
            }
        };
        for record in input.drain(..) {
            self.line.clear();
            (self.format)(&record, &mut self.line);
            self.line.push(b'\n');
            writer
                .write_all(&self.line)
                .map_err(|e| Error::io("writing part file", self.dir.clone(), e))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        if let Some(writer) = self.writer.take() {
            let path = self.in_progress();
            let file = writer
                .into_inner()
                .map_err(|e| Error::io("flushing part file", &path, e.into_error()))?;
            file.sync_data()
                .map_err(|e| Error::io("syncing part file", &path, e))?;
            let pending = self.pending_path(self.subtask, barrier.id);
            fs::rename(&path, &pending)
                .and_then(|()| durable::sync_dir(&self.dir))
                .map_err(|e| Error::io("pre-committing part file", &path, e))?;
            self.pending.push(barrier.id);
        }
        let state = bincode::serialize(&self.pending).map_err(|e| Error::State {
            uid: self.uid.clone(),
            reason: e.to_string(),
        })?;
        Ok(OperatorSnapshot {
            operator_state: Some(state),
            ..Default::default()
        })
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        let (done, later): (Vec<_>, Vec<_>) = self.pending.iter().partition(|p| **p <= id);
        for p in done {
            self.commit(self.subtask, p)?;
        }
        self.pending = later;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OperatorUid, Subtask};
    use crate::keys::KeyGroupRange;

    fn ctx(attempt: u64) -> OperatorContext {
        OperatorContext {
            job: "job".into(),
            uid: OperatorUid("sink".into()),
            name: "sink".into(),
            subtask: Subtask {
                index: 0,
                parallelism: 1,
            },
            max_parallelism: 128,
            key_groups: KeyGroupRange { start: 0, end: 128 },
            attempt,
            state: Default::default(),
            checkpoint_interval: None,
            metrics: Default::default(),
        }
    }

    fn line(n: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(n.to_string().as_bytes());
    }

    fn committed(dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
            {
                lines.extend(fs::read_to_string(p).unwrap().lines().map(str::to_string));
            }
        }
        lines
    }

    #[test]
    fn records_become_visible_only_when_their_checkpoint_completes() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), line as LineFormat<u64>);
        sink.open(&ctx(1), None).unwrap();
        sink.process(&mut vec![1, 2], &mut Vec::new()).unwrap();
        let state = sink
            .snapshot(&Barrier::checkpoint(CheckpointId(1), None))
            .unwrap();
        sink.process(&mut vec![3], &mut Vec::new()).unwrap();
        assert!(
            committed(dir.path()).is_empty(),
            "nothing visible before the checkpoint completes"
        );
        sink.checkpoint_complete(CheckpointId(1)).unwrap();
        assert_eq!(committed(dir.path()), ["1", "2"]);

        // A restore from checkpoint 1 re-commits idempotently and drops record 3.
        let mut again = FileSink::new(dir.path(), line as LineFormat<u64>);
        let restored = RestoredState {
            checkpoint: CheckpointId(1),
            operator_state: state.operator_state,
            ..Default::default()
        };
        again.open(&ctx(2), Some(restored)).unwrap();
        assert_eq!(committed(dir.path()), ["1", "2"]);
        let hidden = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(
            hidden, 0,
            "the uncommitted file of the failed attempt is gone"
        );
    }

    #[test]
    fn a_restore_behind_committed_output_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), line as LineFormat<u64>);
        sink.open(&ctx(1), None).unwrap();
        sink.process(&mut vec![1], &mut Vec::new()).unwrap();
        let older = sink
            .snapshot(&Barrier::checkpoint(CheckpointId(1), None))
            .unwrap();
        sink.checkpoint_complete(CheckpointId(1)).unwrap();
        sink.process(&mut vec![2], &mut Vec::new()).unwrap();
        sink.snapshot(&Barrier::checkpoint(CheckpointId(2), None))
            .unwrap();
        sink.checkpoint_complete(CheckpointId(2)).unwrap();
        // Checkpoint 2 is found damaged; a restore falls back to checkpoint 1.
        let mut again = FileSink::new(dir.path(), line as LineFormat<u64>);
        let restored = RestoredState {
            checkpoint: CheckpointId(1),
            operator_state: older.operator_state,
            ..Default::default()
        };
        let err = again.open(&ctx(2), Some(restored)).unwrap_err();
        assert!(matches!(err, Error::OutputConflict { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("checkpoint 2") && msg.contains("part-0000-0000000002"),
            "{msg}"
        );
        assert_eq!(
            committed(dir.path()),
            ["1", "2"],
            "nothing is written again"
        );

        // A fresh run into the same directory is refused as well.
        let mut fresh = FileSink::new(dir.path(), line as LineFormat<u64>);
        let err = fresh.open(&ctx(3), None).unwrap_err().to_string();
        assert!(err.contains("fresh run"), "{err}");
    }

    #[test]
    fn a_commit_never_replaces_a_visible_file() {
        let dir = tempfile::tempdir().unwrap();
        // Another run's committed file of the same subtask and checkpoint id.
        fs::write(dir.path().join("part-0000-0000000001"), "theirs\n").unwrap();
        let mut sink = FileSink::new(dir.path(), line as LineFormat<u64>);
        sink.subtask = 0;
        sink.uid = "sink".into();
        sink.process(&mut vec![1], &mut Vec::new()).unwrap();
        sink.snapshot(&Barrier::checkpoint(CheckpointId(1), None))
            .unwrap();
        let err = sink.checkpoint_complete(CheckpointId(1)).unwrap_err();
        assert!(matches!(err, Error::OutputConflict { .. }), "{err}");
        assert_eq!(committed(dir.path()), ["theirs"]);
        assert!(dir.path().join(".part-0000-0000000001.pending").exists());
    }

    #[test]
    fn restored_at_another_parallelism_each_old_subtasks_files_are_committed_once() {
        let dir = tempfile::tempdir().unwrap();
        let ctx_of = |index: u32, parallelism: u32| OperatorContext {
            subtask: Subtask { index, parallelism },
            ..ctx(7)
        };
        // Three subtasks pre-commit at checkpoint 4; it never completes for them.
        let mut union = Vec::new();
        for i in 0..3u32 {
            let mut sink = FileSink::new(dir.path(), line as LineFormat<u64>);
            sink.open(&ctx_of(i, 3), None).unwrap();
            sink.process(&mut vec![u64::from(i)], &mut Vec::new())
                .unwrap();
            let state = sink
                .snapshot(&Barrier::checkpoint(CheckpointId(4), None))
                .unwrap();
            union.push((i, state.operator_state.unwrap()));
            // Records after the barrier belong to a checkpoint that never completes.
            sink.process(&mut vec![100 + u64::from(i)], &mut Vec::new())
                .unwrap();
        }
        // Restored at parallelism 2: subtask 0 takes over old 0 and 2, subtask 1 old 1.
        for i in 0..2u32 {
            let mut sink = FileSink::new(dir.path(), line as LineFormat<u64>);
            let restored = RestoredState {
                checkpoint: CheckpointId(4),
                union: Some(crate::state::UnionState {
                    parallelism: 3,
                    states: union.clone(),
                }),
                ..Default::default()
            };
            sink.open(&ctx_of(i, 2), Some(restored)).unwrap();
        }
        let mut lines = committed(dir.path());
        lines.sort();
        assert_eq!(lines, ["0", "1", "2"]);
        let hidden = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(hidden, 0, "in-progress files of the old subtasks are gone");
    }

    #[test]
    fn a_stale_attempt_cannot_write_into_the_current_attempts_files() {
        let dir = tempfile::tempdir().unwrap();
        // An attempt whose worker stalled (SIGSTOP) between two checkpoints.
        let mut stale = FileSink::new(dir.path(), line as LineFormat<u64>);
        stale.open(&ctx(1), None).unwrap();
        // The job was redeployed meanwhile; the current attempt is writing.
        let mut current = FileSink::new(dir.path(), line as LineFormat<u64>);
        current.open(&ctx(2), None).unwrap();
        current
            .process(&mut vec![7, 8, 9], &mut Vec::new())
            .unwrap();
        // The stale attempt wakes up, writes and flushes what it had queued.
        stale
            .process(&mut (100..200).collect(), &mut Vec::new())
            .unwrap();
        drop(stale);
        current
            .snapshot(&Barrier::checkpoint(CheckpointId(5), None))
            .unwrap();
        current.checkpoint_complete(CheckpointId(5)).unwrap();
        assert_eq!(committed(dir.path()), ["7", "8", "9"]);
    }
}
