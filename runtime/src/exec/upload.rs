//! The uploader: writes tasks' snapshots to the checkpoint store off the task threads,
//! then acknowledges them to the coordinator.
//!
//! Tasks hand over their snapshot as soon as it is taken and go back to their
//! records; the upload (the slow part) runs here, which is what keeps checkpoints
//! asynchronous for the tasks. A RocksDB snapshot arrives as a local checkpoint
//! directory: its new files are uploaded here (or, for a savepoint, its entries
//! turned into canonical blobs), and the directory is removed afterwards.

use std::collections::VecDeque;
use std::sync::Arc;

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
/// timed out. That bounds the backlog to one snapshot per task.
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
        let Some(upload) = queue.pop_front() else {
            continue;
        };
        if queue.iter().any(|later| later.task == upload.task) {
            tracing::debug!(task = %upload.task, checkpoint = upload.id.0, "dropping a superseded snapshot");
            continue;
        }
        let (task, id) = (upload.task, upload.id);
        let event = match store_upload(store.as_ref(), &paths, upload) {
            Ok(ack) => TaskEvent::Ack(ack),
            Err(e) => TaskEvent::Decline {
                task,
                id,
                reason: e.to_string(),
            },
        };
        if events.send(event).is_err() {
            return;
        }
    }
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
                NativeFormat::Incremental { registry, attempt } => {
                    let done = native::upload(
                        store,
                        paths,
                        &dir,
                        upload.id,
                        &part.uid,
                        part.subtask.index,
                        native.dir.path(),
                        registry,
                        *attempt,
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
