//! Durable local file operations: atomic writes, renames that never replace a
//! file, and directory syncs, so that what a rename made visible survives a crash.
//!
//! A rename is durable only once the directory holding the new name is synced:
//! until then a power loss can bring the old name back. Every rename that commits
//! something (a checkpoint object, a part file) goes through here.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of the temporary files [`write_atomic`] writes before renaming them;
/// listings skip them and deleting a directory's objects removes them too.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Makes the names created, renamed or deleted in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A temporary name beside `path`, unique to this process and call, so that two
/// writers of the same object never write into one temporary file.
fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id()))
}

/// Writes `bytes` to a synced temporary file beside `path` and returns its name;
/// on failure (a full disk, say) the temporary file is removed again.
fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_beside(path);
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_data()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` at `path` atomically (readers see the old file or the new one)
/// and durably, replacing any file there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path)
}

/// Gives the contents of `from` the name `to` as well, atomically and durably,
/// replacing any file at `to`: a hard link where the file system allows one,
/// else a copy through the kernel. Only for files that are never changed in
/// place (every write of them replaces the file), so that the two names can
/// share one: deleting either leaves the other whole.
pub fn link_or_copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let tmp = temp_beside(to);
    let copied = fs::hard_link(from, &tmp)
        .or_else(|_| {
            fs::copy(from, &tmp)?;
            File::open(&tmp)?.sync_data()
        })
        .and_then(|()| fs::rename(&tmp, to));
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(to)
}

/// Writes `bytes` at `path` atomically and durably, only if nothing is there:
/// an existing file fails with [`ErrorKind::AlreadyExists`] and is left as it is.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_parent(path)
}

/// Renames `from` to `to` unless `to` exists, durably. Done already (the same
/// file under both names, as a crash between the two steps leaves it, or only
/// under `to`) is success; another file at `to` fails with
/// [`ErrorKind::AlreadyExists`] and neither name is touched.
pub fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let (a, b) = (fs::metadata(from)?, fs::metadata(to)?);
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                return Err(e);
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound && to.exists() && !from.exists() => {
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    fs::remove_file(from)?;
    sync_parent(to)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        write_new(&path, b"first").unwrap();
        let err = write_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn rename_new_refuses_to_replace_and_finishes_a_half_done_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        assert_eq!(
            rename_new(&a, &b).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&b).unwrap(), b"old", "the visible file is kept");
        assert!(a.exists());

        // A crash between the link and the unlink leaves one file under both names.
        fs::remove_file(&b).unwrap();
        fs::hard_link(&a, &b).unwrap();
        rename_new(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"new");
        rename_new(&a, &b).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way of the rename makes the write fail after the
        // temporary file was written.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"data").is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["taken"]);
    }
}
