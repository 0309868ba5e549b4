//! A registered table: its columns, its event-time watermark, its key and the
//! connector options (Flink's `WITH (...)`) that say where its records live.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::ColumnType;

/// A table in the data dictionary: what a query reads from or inserts into by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Its name, unique in the catalog: lower-case letters, digits and `_`.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// Event time: the column that carries it and how late records may be.
    pub watermark: Option<WatermarkSpec>,
    /// The columns that key the table (`PRIMARY KEY (...) NOT ENFORCED`): an
    /// upsert sink writes one record per key, and the key is its Kafka key.
    pub primary_key: Vec<String>,
    /// The `WITH (...)` options, `connector` among them.
    pub options: BTreeMap<String, String>,
    /// What the table holds, for the people who read the dictionary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: ColumnType,
    /// Whether it may be null (columns may, unless declared `NOT NULL`).
    pub nullable: bool,
    /// Where its value comes from, if not from the record's value.
    pub origin: ColumnOrigin,
    /// What it means (`COMMENT '...'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnOrigin {
    /// A field of the record's value, of the same name.
    Value,
    /// Metadata of the connector (`METADATA FROM 'timestamp'`): for Kafka,
    /// `timestamp`, `partition`, `offset` or `topic`.
    Metadata(String),
    /// The processing time at which the record is read (`name AS PROCTIME()`).
    ProcessingTime,
}

/// `WATERMARK FOR column AS column - INTERVAL ...`: the column carries event
/// time, and the watermark trails the largest event time seen by `delay_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkSpec {
    /// The event-time column, of a timestamp type.
    pub column: String,
    /// How far the watermark trails the largest event time, in milliseconds.
    pub delay_ms: u64,
}

impl Table {
    /// The column named `name`, compared as SQL compares unquoted names.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The value of option `key`, if set.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The connector's name (`kafka`, `upsert-kafka`, `filesystem`, ...).
    pub fn connector(&self) -> &str {
        self.option("connector").unwrap_or_default()
    }

    /// Where its records are: the Kafka topic, or the filesystem path.
    pub fn location(&self) -> Option<&str> {
        self.option("topic").or(self.option("path"))
    }

    /// The format of its records' values (`format`, or `value.format`).
    pub fn format(&self) -> Option<&str> {
        self.option("format").or(self.option("value.format"))
    }
}

/// Whether `name` is a valid table name: a letter or `_`, then letters,
/// digits or `_`, at most 63 characters (a Kubernetes name once `_` becomes `-`).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_identifiers() {
        for good in ["bids", "_x", "clicks_v2"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "Bids", "2x", "a-b", "a.b", &"x".repeat(64)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
