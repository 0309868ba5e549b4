//! The narrow store trait checkpoints are written through, and its local-disk implementation.

use std::fmt::Debug;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Object storage for checkpoints, addressed by `/`-separated keys relative to a base.
///
/// Consistency it needs: a `put` is atomic (a reader sees the whole old object
/// or the whole new one, never a part) and visible to `get` and `list` once it
/// returns. That is what makes `_metadata`, written last, a commit marker.
pub trait CheckpointStore: Send + Sync + Debug {
    /// Writes `bytes` at `key`, replacing any object there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Reads the object at `key`; a missing object is an error naming it.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Keys of every object under `prefix` (recursively), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
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
/// syncs it and renames it into place, so readers never see a partial object.
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
        if name.starts_with(".tmp-") {
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
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".tmp-{}", name.unwrap_or_default()));
        let mut file = fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into", &path, e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key);
        fs::read(&path).map_err(|e| Error::Store {
            action: "reading",
            key: path.display().to_string(),
            reason: e.to_string(),
        })
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
        // Remove directories left empty, deepest first; failures here are harmless.
        if let Some(dir) = prefix.strip_suffix('/') {
            remove_empty_dirs(&self.path(dir));
        }
        Ok(())
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.path(key).display())
    }

    fn copy(&self, from: &str, to: &str) -> Result<()> {
        let (source, path) = (self.path(from), self.path(to));
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".tmp-{}", name.unwrap_or_default()));
        fs::copy(&source, &tmp).map_err(|e| Error::io("copying", &source, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::io("syncing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into", &path, e))
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
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
    fn a_missing_object_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileStore::new(dir.path())
            .get("nope/_metadata")
            .unwrap_err();
        assert!(err.to_string().contains("nope/_metadata"), "{err}");
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = open_store("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("gs://") && err.contains("s3://"), "{err}");
    }
}
