//! The uploader: writes tasks' snapshots to the checkpoint store off the task threads,
//! then acknowledges them to the coordinator.
//!
//! Tasks hand over their snapshot as soon as it is taken and go back to their
//! records; the upload (the slow part) runs here, which is what keeps checkpoints
//! asynchronous for the tasks. A RocksDB snapshot arrives as a local checkpoint
//! directory: its new files are uploaded here (or, for a canonical savepoint, its
//! entries turned into key-group blobs), and the directory is removed afterwards. Heap
//! state arrives as shards shared copy-on-write with the task, and is encoded here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::checkpoint::coordinator::Ack;
use crate::checkpoint::metadata::SubtaskState;
use crate::checkpoint::paths::{state_file, Paths};
use crate::checkpoint::state_file::encode;
use crate::checkpoint::store::CheckpointStore;
use crate::error::Result;
use crate::exec::task::{TaskEvent, Upload};
use crate::state::rocks::{native, NativeFormat};

/// Uploads snapshots from `uploads` until every sender is gone.
///
/// When storage is slow or down, snapshots queue up here. A task's snapshot with a
/// later snapshot of the same task queued behind it is dropped unwritten: one
/// checkpoint is in flight at a time, so its checkpoint was already declined or
/// timed out. That bounds the backlog to one snapshot per task. The snapshots
/// queued at a time are stored side by side, on as many threads as there are
/// cores: encoding heap state and reading and writing files take CPU.
pub fn run_uploader(
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
    uploads: Receiver<Upload>,
    events: Sender<TaskEvent>,
) {
    let mut queue: VecDeque<Upload> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match uploads.recv() {
                Ok(upload) => queue.push_back(upload),
                Err(_) => return,
            }
        }
        queue.extend(uploads.try_iter());
        let mut current = Vec::with_capacity(queue.len());
        while let Some(upload) = queue.pop_front() {
            if queue.iter().any(|later| later.task == upload.task) {
                tracing::debug!(task = %upload.task, checkpoint = upload.id.0, "dropping a superseded snapshot");
                continue;
            }
            current.push(upload);
        }
        if !store_side_by_side(store.as_ref(), &paths, current, &events) {
            return;
        }
    }
}

/// Stores `uploads` on up to one thread per core (this one included) and sends
/// each one's acknowledgement or refusal; false once nobody listens any more.
fn store_side_by_side(
    store: &dyn CheckpointStore,
    paths: &Paths,
    uploads: Vec<Upload>,
    events: &Sender<TaskEvent>,
) -> bool {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let width = cores.min(uploads.len());
    let pending = Mutex::new(uploads.into_iter());
    let listening = AtomicBool::new(true);
    let work = || loop {
        let next = pending.lock().ok().and_then(|mut p| p.next());
        let Some(upload) = next else { return };
        let (task, id) = (upload.task, upload.id);
        let event = match store_upload(store, paths, upload) {
            Ok(ack) => TaskEvent::Ack(ack),
            Err(e) => TaskEvent::Decline {
                task,
                id,
                reason: e.to_string(),
            },
        };
        if events.send(event).is_err() {
            listening.store(false, Ordering::Relaxed);
            return;
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..width {
            let spawned = std::thread::Builder::new()
                .name("weir-uploader".into())
                .spawn_scoped(scope, work);
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "uploading on fewer threads: one could not start");
            }
        }
        work();
    });
    listening.load(Ordering::Relaxed)
}

fn store_upload(store: &dyn CheckpointStore, paths: &Paths, upload: Upload) -> Result<Ack> {
    let dir = paths.checkpoint_dir(upload.id);
    let mut states = Vec::with_capacity(upload.parts.len());
    let mut uploaded_bytes = 0;
    for part in upload.parts {
        let mut snapshot = part.snapshot.encoded()?;
        let mut rocksdb = None;
        if let Some(native) = snapshot.native.take() {
            match &native.format {
                NativeFormat::Incremental(incremental) => {
                    let done = native::upload(
                        store,
                        paths,
                        &dir,
                        upload.id,
                        &part.uid,
                        part.subtask.index,
                        native.dir.path(),
                        incremental,
                    )?;
                    uploaded_bytes += done.bytes;
                    rocksdb = Some(done.state);
                }
                NativeFormat::Canonical { key_groups } => {
                    let blobs = native::to_canonical(&part.uid, native.dir.path(), *key_groups)?;
                    snapshot.keyed.extend(blobs);
                }
            }
        }
        let path = state_file(&part.uid, part.subtask.index);
        let file = match encode(path, &snapshot)? {
            Some((bytes, file)) => {
                store.put(&format!("{dir}{}", file.path), &bytes)?;
                uploaded_bytes += bytes.len() as u64;
                Some(file)
            }
            None => None,
        };
        states.push((
            part.uid,
            part.subtask.parallelism,
            SubtaskState {
                subtask: part.subtask.index,
                key_groups: part.key_groups,
                position: snapshot.position,
                file,
                rocksdb,
            },
        ));
    }
    Ok(Ack {
        task: upload.task,
        id: upload.id,
        states,
        uploaded_bytes,
    })
}
