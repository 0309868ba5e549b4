//! JSON records as [`Rows`] of a table: arrow-json's decoder over a batch of
//! records at once, the table's processing-time columns filled in, and a
//! record that does not fit the table named with its reason.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion_common::arrow::json::reader::{Decoder, ReaderBuilder};
use weir_catalog::{ColumnOrigin, Table};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::arrow_types::table_schema;
use crate::sql::rows::Rows;
use crate::sql::windows::{now_ms, time_column};

/// Where a table's column comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The JSON value's field, the decoded column of this index.
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

/// How a table's rows are made from JSON records, checked.
#[derive(Debug, Clone)]
pub struct JsonRowsSpec {
    table: String,
    schema: SchemaRef,
    /// The columns read from the JSON values.
    values: SchemaRef,
    columns: Vec<Source>,
}

impl JsonRowsSpec {
    /// The rows of `table`, whose records are JSON objects; metadata columns
    /// only where `connector` is `kafka`.
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
        let spec = JsonRowsSpec {
            table: table.name.clone(),
            schema,
            values: Arc::new(Schema::new(value_fields)),
            columns,
        };
        spec.decoder()?;
        Ok(spec)
    }

    fn decoder(&self) -> Result<Decoder> {
        ReaderBuilder::new(self.values.clone())
            .with_strict_mode(false)
            .build_decoder()
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", self.table)))
    }
}

/// Decodes JSON records into a table's rows.
pub struct JsonRows {
    spec: JsonRowsSpec,
    /// Made at the first batch.
    decoder: Option<Decoder>,
    text: Vec<u8>,
}

impl JsonRows {
    /// A decoder of `spec`'s rows.
    pub fn new(spec: JsonRowsSpec) -> Self {
        JsonRows {
            spec,
            decoder: None,
            text: Vec::new(),
        }
    }

    /// The rows of `records`, one JSON object each.
    pub fn decode<S: AsRef<[u8]>>(&mut self, records: &[S]) -> Result<Rows> {
        self.decode_with(records, None)
    }

    /// The rows of Kafka `records` (JSON values) of `topic`, their metadata
    /// columns filled from `metadata`, one per record.
    pub fn decode_with<S: AsRef<[u8]>>(
        &mut self,
        records: &[S],
        metadata: Option<(&str, &[RecordMetadata])>,
    ) -> Result<Rows> {
        self.text.clear();
        for record in records {
            self.text.extend_from_slice(record.as_ref());
            self.text.push(b'\n');
        }
        let values = match self.decode_text() {
            Ok(values) => values,
            Err(error) => return Err(self.name_bad_record(records, error)),
        };
        let rows = values.num_rows();
        let mut now = None;
        let spec = &self.spec;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len());
        for (source, field) in spec.columns.iter().zip(spec.schema.fields()) {
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
        RecordBatch::try_new_with_options(spec.schema.clone(), columns, &options)
            .map(Rows::inserts)
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", spec.table)))
    }

    fn decode_text(&mut self) -> std::result::Result<RecordBatch, String> {
        let decoder = match &mut self.decoder {
            Some(decoder) => decoder,
            None => self
                .decoder
                .insert(self.spec.decoder().map_err(|e| e.to_string())?),
        };
        let mut batches = Vec::new();
        let mut read = 0;
        loop {
            let used = decoder
                .decode(&self.text[read..])
                .map_err(|e| e.to_string())?;
            read += used;
            // The decoder stops at a full batch: flush it and go on.
            let flushed = decoder.flush().map_err(|e| e.to_string())?;
            let progressed = used > 0 || flushed.is_some();
            batches.extend(flushed);
            if read >= self.text.len() || !progressed {
                break;
            }
        }
        match batches.len() {
            0 => Ok(RecordBatch::new_empty(self.spec.values.clone())),
            1 => Ok(batches.remove(0)),
            _ => datafusion_common::arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .map_err(|e| e.to_string()),
        }
    }

    /// The error of the first record that fails on its own, or of them all.
    fn name_bad_record<S: AsRef<[u8]>>(&mut self, records: &[S], error: String) -> Error {
        for (i, record) in records.iter().enumerate() {
            // A decoder that failed keeps the failed rows: start afresh.
            self.decoder = None;
            self.text.clear();
            self.text.extend_from_slice(record.as_ref());
            self.text.push(b'\n');
            if let Err(reason) = self.decode_text() {
                let text: String = String::from_utf8_lossy(record.as_ref())
                    .chars()
                    .take(200)
                    .collect();
                return Error::Sql(format!(
                    "table `{}`: record {} of a batch of {} does not fit the table: {reason}: {text}",
                    self.spec.table,
                    i + 1,
                    records.len()
                ));
            }
        }
        self.decoder = None;
        Error::Sql(format!("table `{}`: {error}", self.spec.table))
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

impl Operator for JsonRows {
    type In = String;
    type Out = Rows;

    fn process(&mut self, input: &mut Batch<String>, output: &mut Batch<Rows>) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let rows = self.decode(input)?;
        input.clear();
        output.push(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use weir_catalog::parse_table;

    use super::*;
    use crate::sql::encode::{json_lines, lines};

    fn decoder() -> JsonRows {
        let table = parse_table(
            "CREATE TABLE clicks (user_id STRING, n BIGINT, ts TIMESTAMP(3), seen AS PROCTIME()) WITH ('connector' = 'blackhole')",
        )
        .unwrap();
        JsonRows::new(JsonRowsSpec::new(&table, "filesystem").unwrap())
    }

    #[test]
    fn records_decode_into_the_tables_columns() {
        let mut decoder = decoder();
        let rows = decoder
            .decode(&[
                r#"{"user_id": "a", "n": 1, "ts": "2020-01-01 00:00:01"}"#,
                r#"{"n": 2, "user_id": "b", "extra": true}"#,
            ])
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.schema().fields().len(), 4);
        let json = lines(
            &Rows::inserts(rows.batch.project(&[0, 1, 2]).unwrap()),
            json_lines,
        )
        .unwrap();
        assert_eq!(
            json,
            "{\"user_id\":\"a\",\"n\":1,\"ts\":\"2020-01-01T00:00:01\"}\n{\"user_id\":\"b\",\"n\":2}"
        );
    }

    #[test]
    fn a_record_that_does_not_fit_is_named() {
        let mut decoder = decoder();
        let error = decoder
            .decode(&[
                r#"{"user_id": "a", "n": 1}"#,
                r#"{"user_id": "b", "n": "many"}"#,
            ])
            .unwrap_err()
            .to_string();
        assert!(error.contains("record 2 of a batch of 2"), "{error}");
        assert!(error.contains("\"many\""), "{error}");
    }
}
