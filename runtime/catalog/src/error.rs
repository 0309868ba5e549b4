//! The catalog's one error type: every variant names the table, the option or
//! the place in the DDL that is wrong.

use std::path::PathBuf;

/// What went wrong reading, checking or storing a table definition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL does not parse or uses a construct the catalog does not take;
    /// the message names the construct and where it is (`Line: 3, Column: 5`).
    #[error("{0}")]
    Syntax(String),
    /// A table's definition parsed but does not hold together (an unknown
    /// connector option, a watermark on a column that does not exist).
    #[error("table `{table}`: {message}")]
    Invalid {
        /// The table's name.
        table: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sample message or schema from which columns were to be inferred
    /// cannot give them.
    #[error("cannot infer columns from {source_name}: {message}")]
    Inference {
        /// What was read: `sample.json line 3`, `schema.avsc`.
        source_name: String,
        /// Why it gives no columns.
        message: String,
    },
    /// The catalog has no table of this name.
    #[error("no table `{0}` in the catalog")]
    NotFound(String),
    /// A table of this name is registered already.
    #[error("table `{0}` is already in the catalog (drop it first to replace it)")]
    Exists(String),
    /// A catalog file does not hold the table its name says.
    #[error("catalog file {path} is damaged: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing the catalog's files failed.
    #[error("catalog file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The catalog's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A user error about table `table`.
    pub(crate) fn invalid(table: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            table: table.to_string(),
            message: message.into(),
        }
    }
}
