//! SST files as a restore at another parallelism sees them: where a snapshot's
//! files sit in the tree, and ingesting files that another instance wrote.
//!
//! A subtask that takes over some of another's key groups needs only the SST
//! files whose keys reach into them. Those files are moved into a fresh
//! instance as they are (no reading or rewriting of their entries), keeping
//! their sequence numbers, which requires them in the order of their data's
//! age: oldest first, so that each key's newest write ends up on top.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rocksdb::DB;

use super::{failed, split_key};
use crate::checkpoint::metadata::SstPlace;
use crate::error::{Error, Result};
use crate::keys::KeyGroupRange;

/// Where each SST file of the checkpoint in `checkpoint` (just written from
/// `db`) sits in `db`'s tree, by file name; empty when the instance's files
/// are no longer the checkpoint's (a compaction ended in between) or a file's
/// keys are unknown, and a restore then reads the whole checkpoint.
pub fn places(db: &DB, uid: &str, checkpoint: &Path) -> Result<HashMap<String, SstPlace>> {
    let mut live = db
        .live_files()
        .map_err(|e| failed(uid, "listing the live files", e))?;
    // Listed level by level, level 0's newest first: a stable sort keeps that.
    live.sort_by_key(|f| f.level);
    let mut places = HashMap::with_capacity(live.len());
    for (rank, file) in live.iter().enumerate() {
        let group = |key: &Option<Vec<u8>>| key.as_deref().and_then(split_key).map(|(g, _)| g.0);
        let (Some(first), Some(last)) = (group(&file.start_key), group(&file.end_key)) else {
            return Ok(HashMap::new());
        };
        let place = SstPlace {
            rank: rank as u32,
            key_groups: KeyGroupRange {
                start: first,
                end: last + 1,
            },
        };
        places.insert(file.name.trim_start_matches('/').to_string(), place);
    }
    if sst_names(checkpoint)? != places.keys().cloned().collect() {
        return Ok(HashMap::new());
    }
    Ok(places)
}

/// The names of the SST files in `dir`.
fn sst_names(dir: &Path) -> Result<HashSet<String>> {
    let listing = |e| Error::io("listing a RocksDB checkpoint", dir, e);
    let mut names = HashSet::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let name = entry.map_err(listing)?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".sst") {
            names.insert(name.into_owned());
        }
    }
    Ok(names)
}

/// Moves `files`, SST files another instance wrote (oldest data first), into
/// `db`, which holds nothing yet, keeping their sequence numbers.
#[allow(unsafe_code)]
pub fn ingest_db_files(db: &DB, uid: &str, files: &[PathBuf]) -> Result<()> {
    use rocksdb::AsRawPtr;
    if files.is_empty() {
        return Ok(());
    }
    let bad_path = |e| failed(uid, "ingesting another instance's files", e);
    let paths = files
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad_path)?;
    let pointers: Vec<*const c_char> = paths.iter().map(|p| p.as_ptr()).collect();
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: the options are created, used and destroyed here; `db` outlives
    // the call, and the paths (NUL-terminated, owned by `paths`) outlive it too.
    // RocksDB's C API takes the option setters' flags as 0 or 1.
    unsafe {
        let options = librocksdb_sys::rocksdb_ingestexternalfileoptions_create();
        librocksdb_sys::rocksdb_ingestexternalfileoptions_set_move_files(options, 1);
        librocksdb_sys::rocksdb_ingestexternalfileoptions_set_allow_db_generated_files(options, 1);
        librocksdb_sys::rocksdb_ingestexternalfileoptions_set_snapshot_consistency(options, 0);
        librocksdb_sys::rocksdb_ingestexternalfileoptions_set_allow_blocking_flush(options, 0);
        librocksdb_sys::rocksdb_ingest_external_file(
            db.as_raw_ptr(),
            pointers.as_ptr(),
            pointers.len(),
            options,
            &mut error,
        );
        librocksdb_sys::rocksdb_ingestexternalfileoptions_destroy(options);
    }
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null error is a NUL-terminated string RocksDB allocated,
    // read once and then freed with RocksDB's own free.
    let message = unsafe {
        let message = CStr::from_ptr(error).to_string_lossy().into_owned();
        librocksdb_sys::rocksdb_free(error.cast());
        message
    };
    Err(failed(uid, "ingesting another instance's files", message))
}
