//! A table's columns made from decoded record values: the value columns a
//! format decoded, the processing-time columns filled in with the time of
//! reading, and the Kafka metadata columns from each record's metadata.
//! Every value format (JSON, Avro) decodes into the value schema here and
//! leaves the rest to [`RecordColumns::rows`].

use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, Schema, SchemaRef};
use weir_catalog::{ColumnOrigin, Table};

use crate::error::{Error, Result};
use crate::sql::arrow_types::table_schema;
use crate::sql::rows::Rows;
use crate::sql::windows::{now_ms, time_column};

/// Where a table's column comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The record value's field, the decoded column of this index.
    Value(usize),
    /// The time the record is read.
    ProcessingTime,
    /// The Kafka record's metadata.
    Metadata(Metadata),
}

/// A Kafka record's metadata a column can hold (`METADATA FROM '...'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    Timestamp,
    Partition,
    Offset,
    Topic,
}

/// Where a Kafka record came from: what its metadata columns hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch.
    pub timestamp: i64,
}

/// How a table's columns are made from its records, checked.
#[derive(Debug, Clone)]
pub struct RecordColumns {
    table: String,
    schema: SchemaRef,
    /// The columns read from the record values, in table order.
    values: SchemaRef,
    columns: Vec<Source>,
}

impl RecordColumns {
    /// The columns of `table`; metadata columns only where `connector` is
    /// `kafka`.
    pub fn new(table: &Table, connector: &str) -> Result<Self> {
        let schema = table_schema(table);
        let mut value_fields = Vec::new();
        let mut columns = Vec::new();
        for (column, field) in table.columns.iter().zip(schema.fields()) {
            columns.push(match &column.origin {
                ColumnOrigin::Value => {
                    value_fields.push(field.clone());
                    Source::Value(value_fields.len() - 1)
                }
                ColumnOrigin::ProcessingTime => Source::ProcessingTime,
                ColumnOrigin::Metadata(key) => {
                    let metadata = match (connector, key.as_str()) {
                        ("kafka", "timestamp") => Metadata::Timestamp,
                        ("kafka", "partition") => Metadata::Partition,
                        ("kafka", "offset") => Metadata::Offset,
                        ("kafka", "topic") => Metadata::Topic,
                        _ => {
                            return Err(Error::Sql(format!(
                                "table `{}`: the {connector} connector has no metadata '{key}' (column `{}`){}",
                                table.name,
                                column.name,
                                if connector == "kafka" { "; it has timestamp, partition, offset and topic" } else { "" }
                            )))
                        }
                    };
                    Source::Metadata(metadata)
                }
            });
        }
        Ok(RecordColumns {
            table: table.name.clone(),
            schema,
            values: Arc::new(Schema::new(value_fields)),
            columns,
        })
    }

    /// The table's name, for errors.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The columns a format decodes from each record's value, in table order.
    pub fn values(&self) -> &SchemaRef {
        &self.values
    }

    /// The table's rows, from the `values` a format decoded (of the schema
    /// [`Self::values`]) and, for Kafka records, their `topic` and metadata,
    /// one per row.
    pub fn rows(
        &self,
        values: &RecordBatch,
        metadata: Option<(&str, &[RecordMetadata])>,
    ) -> Result<Rows> {
        let rows = values.num_rows();
        let mut now = None;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (source, field) in self.columns.iter().zip(self.schema.fields()) {
            columns.push(match source {
                Source::Value(i) => values.column(*i).clone(),
                Source::ProcessingTime => {
                    let at = *now.get_or_insert_with(now_ms);
                    time_column(vec![at; rows], field.data_type())?
                }
                Source::Metadata(what) => {
                    metadata_column(*what, metadata, rows, field.data_type())?
                }
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map(Rows::inserts)
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", self.table)))
    }
}

/// A metadata column of `rows` rows of type `data_type`.
fn metadata_column(
    what: Metadata,
    metadata: Option<(&str, &[RecordMetadata])>,
    rows: usize,
    data_type: &DataType,
) -> Result<ArrayRef> {
    let Some((topic, records)) = metadata.filter(|(_, m)| m.len() == rows) else {
        return Err(Error::Internal(format!(
            "{rows} rows without their Kafka metadata"
        )));
    };
    let array: ArrayRef = match what {
        Metadata::Timestamp => {
            return time_column(records.iter().map(|m| m.timestamp).collect(), data_type)
        }
        Metadata::Partition => Arc::new(Int32Array::from_iter_values(
            records.iter().map(|m| m.partition),
        )),
        Metadata::Offset => Arc::new(Int64Array::from_iter_values(
            records.iter().map(|m| m.offset),
        )),
        Metadata::Topic => Arc::new(StringArray::from(vec![topic; rows])),
    };
    cast(&array, data_type)
        .map_err(|e| Error::Sql(format!("metadata column of type {data_type}: {e}")))
}
