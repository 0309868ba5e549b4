//! Rows as Avro records for a `kafka` sink of format `avro`, and for the
//! keys and values of an `upsert-kafka` sink of that format: arrow-avro's
//! encoder writes a batch at a time, each row one plain binary datum of the
//! writer schema (a value's: the `avro.schema` option or the one the table's
//! columns give; a key's: the one its key columns give), as Flink's `avro`
//! format writes them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_avro::schema::{AvroSchema, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::AvroBinaryFormat;
use arrow_avro::writer::{Encoder, WriterBuilder};
use datafusion_common::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{Field, Schema, SchemaRef};
use weir_catalog::Table;

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::arrow_types::table_schema;
use crate::sql::avro_rows::writer_schema;
use crate::sql::record_columns::RecordColumns;
use crate::sql::rows::Rows;

/// How a table's rows become Avro records, checked.
#[derive(Debug, Clone)]
pub struct AvroRecordsSpec {
    table: String,
    /// The table's value columns, the writer schema in their metadata.
    schema: SchemaRef,
}

impl AvroRecordsSpec {
    /// The records of `table`, written with its writer schema.
    pub fn new(table: &Table) -> Result<Self> {
        let columns = RecordColumns::new(table, "kafka")?;
        let avro = writer_schema(table, &columns)?;
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), avro)]);
        let spec = AvroRecordsSpec {
            table: table.name.clone(),
            schema: Arc::new(Schema::new_with_metadata(
                columns.values().fields().clone(),
                metadata,
            )),
        };
        spec.encoder()?;
        Ok(spec)
    }

    /// The keys of `table`: its columns `key`, by index, written with the
    /// schema they give, NOT NULL (as Flink takes a `PRIMARY KEY`'s columns).
    pub fn key(table: &Table, key: &[usize]) -> Result<Self> {
        let schema = table_schema(table);
        let fields: Vec<Field> = key
            .iter()
            .map(|&k| schema.field(k).clone().with_nullable(false))
            .collect();
        let columns = Schema::new(fields);
        let avro = AvroSchema::try_from(&columns).map_err(|e| {
            Error::Sql(format!(
                "table `{}`: no Avro schema for its key columns ({e})",
                table.name
            ))
        })?;
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), avro.json_string)]);
        let spec = AvroRecordsSpec {
            table: table.name.clone(),
            schema: Arc::new(Schema::new_with_metadata(
                columns.fields().clone(),
                metadata,
            )),
        };
        spec.encoder()?;
        Ok(spec)
    }

    fn encoder(&self) -> Result<Encoder> {
        WriterBuilder::new(self.schema.as_ref().clone())
            .build_encoder::<AvroBinaryFormat>()
            .map_err(|e| {
                Error::Sql(format!(
                    "table `{}`: its columns cannot be written with its Avro schema: {e}",
                    self.table
                ))
            })
    }
}

/// Each row as its own Avro record.
pub struct AvroRecords {
    spec: AvroRecordsSpec,
    /// Made at the first batch.
    encoder: Option<Encoder>,
}

impl AvroRecords {
    /// An encoder of `spec`'s records.
    pub fn new(spec: AvroRecordsSpec) -> Self {
        AvroRecords {
            spec,
            encoder: None,
        }
    }

    /// `batch` as the spec's columns, by position, cast to their types.
    fn as_table(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let fields = self.spec.schema.fields();
        if batch.num_columns() != fields.len() {
            return Err(Error::Internal(format!(
                "{} columns for table `{}` of {}",
                batch.num_columns(),
                self.spec.table,
                fields.len()
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(fields)
            .map(|(column, field)| cast(column, field.data_type()))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", self.spec.table)))?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", self.spec.table)))
    }

    /// Each row of `batch` as a record, appended to `out`.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<Vec<u8>>) -> Result<()> {
        let batch = self.as_table(batch)?;
        let encoder = match &mut self.encoder {
            Some(encoder) => encoder,
            None => self.encoder.insert(self.spec.encoder()?),
        };
        encoder
            .encode(&batch)
            .map_err(|e| Error::Sql(format!("writing table `{}` as Avro: {e}", self.spec.table)))?;
        out.extend(encoder.flush().iter().map(|record| record.to_vec()));
        Ok(())
    }
}

impl Operator for AvroRecords {
    type In = Rows;
    type Out = Vec<u8>;

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Vec<u8>>) -> Result<()> {
        for rows in input.drain(..) {
            self.encode(&rows.batch, output)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use weir_catalog::parse_table;

    use super::*;
    use crate::sql::avro_rows::{AvroRows, AvroRowsSpec};
    use crate::sql::encode::{json_lines, lines};

    #[test]
    fn rows_written_as_avro_read_back_the_same() {
        let table = parse_table(
            "CREATE TABLE out (user_id STRING NOT NULL, n BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'avro')",
        )
        .unwrap();
        let rows = Rows::inserts(
            RecordBatch::try_new(
                crate::sql::arrow_types::table_schema(&table),
                vec![
                    Arc::new(StringArray::from(vec!["a", "b"])),
                    Arc::new(Int64Array::from(vec![Some(1), None])),
                    Arc::new(TimestampMillisecondArray::from(vec![Some(1_000), None])),
                ],
            )
            .unwrap(),
        );
        let mut records = Vec::new();
        AvroRecords::new(AvroRecordsSpec::new(&table).unwrap())
            .process(&mut vec![rows.clone()], &mut records)
            .unwrap();
        assert_eq!(records.len(), 2);
        let mut back = AvroRows::new(AvroRowsSpec::new(&table, "kafka").unwrap());
        let back = back.decode_with(&records, None).unwrap();
        assert_eq!(
            lines(&back, json_lines).unwrap(),
            lines(&rows, json_lines).unwrap()
        );
    }
}
