//! The narrow store trait checkpoints are written through, and its local-disk implementation.

use std::fmt::Debug;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::durable::{self, TEMP_PREFIX};
use crate::error::{Error, Result};

/// Object storage for checkpoints, addressed by `/`-separated keys relative to a base.
///
/// Consistency it needs: a `put` is atomic (a reader sees the whole old object
/// or the whole new one, never a part) and visible to `get` and `list` once it
/// returns; a `put_new` is atomic against other writers of the same key (S3's
/// conditional `If-None-Match: *`, a hard link on a file system). That is what
/// makes `_metadata`, written last and once, a commit marker.
pub trait CheckpointStore: Send + Sync + Debug {
    /// Writes `bytes` at `key`, replacing any object there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Writes `bytes` at `key` only if no object is there ([`Error::AlreadyExists`]
    /// otherwise, and the object is left as it is): what commits a checkpoint, so
    /// that two writers of one id can never both believe they committed it.
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Reads the object at `key`. A missing object is [`Error::MissingObject`];
    /// any other failure (unreachable, refused, timed out) is [`Error::Store`],
    /// which retrying may cure: the two are never confused.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Keys of every object under `prefix` (recursively), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Names of the entries directly under `prefix` (ending in `/`): objects and
    /// directories (the next `/`-separated part of deeper keys), sorted, each once.
    fn children(&self, prefix: &str) -> Result<Vec<String>>;
    /// Keys and sizes in bytes of every object under `prefix` (recursively), sorted.
    fn sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>>;
    /// Deletes every object under `prefix`; deleting nothing is not an error.
    fn delete_prefix(&self, prefix: &str) -> Result<()>;
    /// Deletes the objects `keys`; a missing one is not an error.
    fn delete(&self, keys: &[String]) -> Result<()>;
    /// The full location of `key`, for messages and for users.
    fn uri(&self, key: &str) -> String;
    /// Copies the object at `from` to `to` within this store (by default through
    /// this process; stores that can copy on their side do).
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        let bytes = self.get(from)?;
        self.put(to, &bytes)
    }
    /// Gives the object at `key` the local name `to` without copying it, where
    /// this store can (a hard link: stored objects are only ever replaced, never
    /// changed in place), and says whether it did; when it did not, nothing
    /// changed. Only for files their new user never changes in place either.
    fn link_to(&self, key: &str, to: &Path) -> Result<bool> {
        let _ = (key, to);
        Ok(false)
    }
}

/// Opens the store for a base URI: `s3://bucket/prefix`, `file:///path` or a plain path.
pub fn open_store(uri: &str) -> Result<Box<dyn CheckpointStore>> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Box::new(FileStore::new(path)));
    }
    if uri.starts_with("s3://") {
        return Ok(Box::new(crate::checkpoint::s3::S3Store::open(uri)?));
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return Err(Error::Usage(format!(
            "checkpoint storage {uri}: scheme {scheme}:// is not supported (use s3://, file:// or a path)"
        )));
    }
    Ok(Box::new(FileStore::new(uri)))
}

/// A checkpoint store in a local directory. `put` writes a temporary file,
/// syncs it and renames it into place (then syncs the directory), so readers
/// never see a partial object and a completed write survives a crash; a write
/// that fails (a full disk) removes its temporary file.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        // Absolute, so that the locations printed for users work from anywhere.
        let root = std::path::absolute(&root).unwrap_or(root);
        FileStore { root }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The path of `key`, its directory created.
    fn dir_for(&self, key: &str) -> Result<PathBuf> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        Ok(path)
    }

    /// The error for a failed operation on `key`: a missing object, one that
    /// exists already, or a failure that retrying may cure.
    fn failed(&self, action: &'static str, key: &str, e: &std::io::Error) -> Error {
        let key = self.uri(key);
        match e.kind() {
            ErrorKind::NotFound => Error::MissingObject { key },
            ErrorKind::AlreadyExists => Error::AlreadyExists { key },
            _ => Error::Store {
                action,
                key,
                reason: e.to_string(),
            },
        }
    }
}

fn list_into(dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            list_into(&entry.path(), &key, out)?;
        } else {
            out.push(key);
        }
    }
    Ok(())
}

impl CheckpointStore for FileStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir_for(key)?;
        durable::write_atomic(&path, bytes).map_err(|e| self.failed("writing", key, &e))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir_for(key)?;
        durable::write_new(&path, bytes).map_err(|e| self.failed("writing", key, &e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        fs::read(self.path(key)).map_err(|e| self.failed("reading", key, &e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let (dir, rel) = match prefix.rsplit_once('/') {
            Some((dir, _)) => (self.path(dir), dir.to_string()),
            None => (self.root.clone(), String::new()),
        };
        let mut keys = Vec::new();
        list_into(&dir, &rel, &mut keys).map_err(|e| Error::io("listing", &dir, e))?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    fn children(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed("listing", prefix, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.failed("listing", prefix, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TEMP_PREFIX) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.list(prefix)?
            .into_iter()
            .map(|key| {
                let path = self.path(&key);
                let size = fs::metadata(&path)
                    .map_err(|e| Error::io("reading the size of", &path, e))?
                    .len();
                Ok((key, size))
            })
            .collect()
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            let path = self.path(key);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(Error::io("deleting", &path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.delete(&self.list(prefix)?)?;
        // Temporary files of failed or abandoned writes go too (listings skip
        // them), then directories left empty, deepest first.
        if let Some(dir) = prefix.strip_suffix('/') {
            remove_leftovers(&self.path(dir));
        }
        Ok(())
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.path(key).display())
    }

    fn link_to(&self, key: &str, to: &Path) -> Result<bool> {
        match fs::hard_link(self.path(key), to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(self.failed("linking", key, &e)),
            // Another file system, or links refused: the caller copies.
            Err(_) => Ok(false),
        }
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        let path = self.dir_for(to)?;
        // Stored files are only ever replaced, never changed in place: a link is a copy.
        durable::link_or_copy_atomic(&self.path(from), &path)
            .map_err(|e| self.failed("copying", from, &e))
    }
}

/// Removes temporary files under `dir`, then the directories left empty; what
/// cannot be removed (a write still going on) is left for the next time.
fn remove_leftovers(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            match entry.file_type() {
                Ok(t) if t.is_dir() => remove_leftovers(&entry.path()),
                Ok(_) if temp => {
                    let _ = fs::remove_file(entry.path());
                }
                _ => {}
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.put("job/checkpoints/chk-1/_metadata", b"{}").unwrap();
        store
            .put("job/checkpoints/chk-1/op/0/state", b"abc")
            .unwrap();
        store.put("job/checkpoints/chk-2/_metadata", b"{}").unwrap();
        assert_eq!(
            store.get("job/checkpoints/chk-1/op/0/state").unwrap(),
            b"abc"
        );
        assert_eq!(store.list("job/checkpoints/chk-1/").unwrap().len(), 2);
        assert_eq!(store.list("job/checkpoints/").unwrap().len(), 3);
        store.delete_prefix("job/checkpoints/chk-1/").unwrap();
        assert_eq!(
            store.list("job/checkpoints/").unwrap(),
            vec!["job/checkpoints/chk-2/_metadata"]
        );
        assert!(!dir.path().join("job/checkpoints/chk-1").exists());
    }

    #[test]
    fn children_are_the_next_level_of_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store
            .put("job/r2/checkpoints/chk-1/_metadata", b"{}")
            .unwrap();
        store.put("job/r1/stopped", b"{}").unwrap();
        store.put("job/marker", b"").unwrap();
        assert_eq!(store.children("job/").unwrap(), ["marker", "r1", "r2"]);
        assert!(store.children("nothing/").unwrap().is_empty());
    }

    #[test]
    fn a_missing_object_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileStore::new(dir.path())
            .get("nope/_metadata")
            .unwrap_err();
        assert!(matches!(err, Error::MissingObject { .. }), "{err:?}");
        assert!(err.to_string().contains("nope/_metadata"), "{err}");
    }

    #[test]
    fn a_read_that_fails_for_another_reason_is_not_a_missing_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        // A directory where the object should be: the read fails (EISDIR), as a
        // refused or broken read would, but nothing says the object is gone.
        fs::create_dir_all(dir.path().join("job/x")).unwrap();
        let err = store.get("job/x").unwrap_err();
        assert!(matches!(err, Error::Store { .. }), "{err:?}");
        assert_eq!(err.class(), crate::error::ErrorClass::External);
    }

    #[test]
    fn put_new_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.put_new("j/chk-1/_metadata", b"mine").unwrap();
        let err = store.put_new("j/chk-1/_metadata", b"theirs").unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        assert_eq!(store.get("j/chk-1/_metadata").unwrap(), b"mine");
    }

    #[test]
    fn deleting_a_prefix_removes_temporary_files_of_failed_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.put("j/chk-3/op/0/state", b"abc").unwrap();
        // What a write cut short by a full disk, or a crash, leaves.
        fs::write(dir.path().join("j/chk-3/op/0/.tmp-state-1-2"), b"ab").unwrap();
        assert_eq!(store.list("j/").unwrap().len(), 1, "listings skip it");
        store.delete_prefix("j/chk-3/").unwrap();
        assert!(
            !dir.path().join("j/chk-3").exists(),
            "nothing is left behind"
        );
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = open_store("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("gs://") && err.contains("s3://"), "{err}");
    }
}
