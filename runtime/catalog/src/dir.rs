//! The catalog on a local directory: one `{name}.sql` file per table, holding
//! the `CREATE TABLE` that declares it, readable and diffable as it is.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::ddl::parse_table;
use crate::error::{Error, Result};
use crate::render::render;
use crate::table::{is_valid_name, Table};

/// A catalog kept in a directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
}

impl Catalog {
    /// The catalog in `dir` (created by the first [`Catalog::add`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Catalog { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds table `name`: the one place its path is built.
    fn path(&self, name: &str) -> Result<PathBuf> {
        if !is_valid_name(name) {
            return Err(Error::NotFound(name.to_string()));
        }
        Ok(self.dir.join(format!("{name}.sql")))
    }

    /// Registers `table`; a table of the same name is never overwritten.
    /// The file is written whole and renamed into place, so a reader sees
    /// the old catalog or the new one.
    pub fn add(&self, table: &Table) -> Result<PathBuf> {
        let path = self.path(&table.name)?;
        fs::create_dir_all(&self.dir).map_err(|source| io(&self.dir, source))?;
        let partial = self.dir.join(format!(".{}.sql.partial", table.name));
        fs::write(&partial, render(table)).map_err(|source| io(&partial, source))?;
        // A hard link fails if the name is taken, which `rename` would overwrite.
        let linked = fs::hard_link(&partial, &path);
        let _ = fs::remove_file(&partial);
        match linked {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(Error::Exists(table.name.clone()))
            }
            Err(source) => Err(io(&path, source)),
        }
    }

    /// The table `name`.
    pub fn get(&self, name: &str) -> Result<Table> {
        let path = self.path(name)?;
        match fs::read_to_string(&path) {
            Ok(text) => read(&path, &text),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(name.to_string())),
            Err(source) => Err(io(&path, source)),
        }
    }

    /// Every table, by name; a file that does not hold a valid table is an
    /// error naming it, never skipped.
    pub fn list(&self) -> Result<Vec<Table>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io(&self.dir, source)),
        };
        let mut tables = Vec::new();
        for entry in entries {
            let path = entry.map_err(|source| io(&self.dir, source))?.path();
            let is_table = path.extension().is_some_and(|e| e == "sql")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if is_table {
                let text = fs::read_to_string(&path).map_err(|source| io(&path, source))?;
                tables.push(read(&path, &text)?);
            }
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    /// Removes table `name`.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NotFound(name.to_string())),
            Err(source) => Err(io(&path, source)),
        }
    }
}

/// The table in the file at `path`, which must be named after it.
fn read(path: &Path, text: &str) -> Result<Table> {
    let damaged = |message: String| Error::Damaged {
        path: path.to_path_buf(),
        message,
    };
    let table = parse_table(text).map_err(|e| damaged(e.to_string()))?;
    if path
        .file_stem()
        .is_some_and(|stem| stem != table.name.as_str())
    {
        return Err(damaged(format!(
            "it declares table `{}`, not the one its name says",
            table.name
        )));
    }
    Ok(table)
}

/// An I/O error on `path`.
fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLICKS: &str = "CREATE TABLE clicks (user STRING, at TIMESTAMP(3), WATERMARK FOR at AS at - INTERVAL '5' SECOND) \
        WITH ('connector' = 'kafka', 'topic' = 'clicks', 'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json')";

    #[test]
    fn tables_are_added_listed_read_and_dropped_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path().join("catalog"));
        assert!(catalog.list().unwrap().is_empty());
        let clicks = parse_table(CLICKS).unwrap();
        catalog.add(&clicks).unwrap();
        assert_eq!(catalog.get("clicks").unwrap(), clicks);
        assert!(matches!(catalog.add(&clicks), Err(Error::Exists(name)) if name == "clicks"));
        let views = Table {
            name: "views".to_string(),
            ..clicks
        };
        catalog.add(&views).unwrap();
        let names: Vec<_> = catalog
            .list()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["clicks", "views"]);
        catalog.drop_table("clicks").unwrap();
        assert!(matches!(catalog.get("clicks"), Err(Error::NotFound(_))));
        assert!(matches!(
            catalog.drop_table("clicks"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(catalog.get("../etc"), Err(Error::NotFound(_))));
    }

    #[test]
    fn a_damaged_file_is_named_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(dir.path());
        fs::write(
            dir.path().join("clicks.sql"),
            "CREATE TABLE clicks (user STRING",
        )
        .unwrap();
        let error = catalog.list().unwrap_err().to_string();
        assert!(error.contains("clicks.sql"), "{error}");
        fs::write(
            dir.path().join("clicks.sql"),
            CLICKS.replace("TABLE clicks", "TABLE other"),
        )
        .unwrap();
        let error = catalog.get("clicks").unwrap_err().to_string();
        assert!(error.contains("declares table `other`"), "{error}");
    }
}
