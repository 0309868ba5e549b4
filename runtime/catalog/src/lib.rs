//! weir's data dictionary: the tables that SQL jobs read from and insert
//! into by name, declared in Flink's `CREATE TABLE` DDL, inferred from a
//! sample message or a schema, and kept in a catalog.
//!
//! This crate depends on sqlparser alone (no engine, no DataFusion), so that
//! the controller checks a `StreamTable` with the same code as `weir catalog`.
//!
//! # Layout
//!
//! - [`types`]: column types as Flink SQL spells them.
//! - [`table`]: a table: columns, watermark, key, connector options.
//! - [`ddl`]: reads `CREATE TABLE` and splits a script into statements.
//! - [`dialect`]: Flink's window table-function arguments in sqlparser's terms.
//! - [`validate`]: what makes a table hold together, per connector.
//! - [`render`]: a table back as its `CREATE TABLE`.
//! - [`interval`]: interval literals as milliseconds.
//! - [`infer`]: columns from sample messages; [`schemas`]: from an Avro
//!   schema or a JSON Schema.
//! - [`dir`]: the catalog on a local directory.
//! - [`builtin`]: the tables every job can name (Nexmark's).
//! - [`references`]: which tables a script names.

pub mod builtin;
pub mod ddl;
pub mod dialect;
pub mod dir;
pub mod error;
pub mod infer;
pub mod interval;
pub mod references;
pub mod render;
pub mod schemas;
pub mod table;
pub mod types;
pub mod validate;

#[cfg(test)]
mod ddl_tests;

pub use builtin::builtin_tables;
pub use ddl::{parse_script, parse_table, ScriptStatement};
pub use dir::Catalog;
pub use error::{Error, Result};
pub use references::{script_tables, ScriptTables};
pub use table::{Column, ColumnOrigin, Table, WatermarkSpec};
pub use types::ColumnType;

/// The sqlparser this crate reads SQL with, for callers that walk its statements.
pub use sqlparser;
