//! An upsert table's records: each insert and update as its key (the
//! `PRIMARY KEY` columns) and its row, each deletion as its key and no value
//! (a tombstone); an update's old row (`-U`) is not written, as Flink's
//! upsert sinks do not. Keys and values are each JSON or Avro, as the
//! table's `key.format` and `value.format` say.

use datafusion_common::arrow::array::RecordBatch;
use weir_catalog::Table;

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::avro_records::{AvroRecords, AvroRecordsSpec};
use crate::sql::encode::{json_lines, lines};
use crate::sql::rows::{RowKind, Rows};

/// A key and its row's value, `None` for a deletion.
pub type Upsert = (Vec<u8>, Option<Vec<u8>>);

/// How a key or a value is written, checked.
#[derive(Debug, Clone)]
enum FormatSpec {
    Json,
    Avro(AvroRecordsSpec),
}

/// How an upsert table's rows become records, checked.
#[derive(Debug, Clone)]
pub struct UpsertSpec {
    /// The key columns, by index.
    key: Vec<usize>,
    key_format: FormatSpec,
    value_format: FormatSpec,
}

impl UpsertSpec {
    /// The records of `table`, keyed by its `PRIMARY KEY`.
    pub fn new(table: &Table) -> Result<Self> {
        let key = table
            .primary_key
            .iter()
            .map(|k| {
                table
                    .columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        Error::Sql(format!("table `{}`: no key column `{k}`", table.name))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let key_format = match table.option("key.format") {
            Some("avro") => FormatSpec::Avro(AvroRecordsSpec::key(table, &key)?),
            _ => FormatSpec::Json,
        };
        let value_format = match table.option("value.format").or(table.option("format")) {
            Some("avro") => FormatSpec::Avro(AvroRecordsSpec::new(table)?),
            _ => FormatSpec::Json,
        };
        Ok(UpsertSpec {
            key,
            key_format,
            value_format,
        })
    }
}

/// A key's or a value's writer.
enum Format {
    Json,
    Avro(AvroRecords),
}

impl Format {
    fn new(spec: &FormatSpec) -> Self {
        match spec {
            FormatSpec::Json => Format::Json,
            FormatSpec::Avro(spec) => Format::Avro(AvroRecords::new(spec.clone())),
        }
    }

    /// Each row of `batch` as a record, appended to `out`.
    fn encode(&mut self, batch: RecordBatch, out: &mut Vec<Vec<u8>>) -> Result<()> {
        match self {
            Format::Json => {
                let text = lines(&Rows::inserts(batch), json_lines)?;
                out.extend(text.split('\n').map(|line| line.as_bytes().to_vec()));
                Ok(())
            }
            Format::Avro(records) => records.encode(&batch, out),
        }
    }
}

/// Writes an upsert table's records.
pub struct UpsertRecords {
    key: Vec<usize>,
    key_format: Format,
    value_format: Format,
    /// The keys of the batch at hand.
    keys: Vec<Vec<u8>>,
    /// The values of the batch at hand.
    values: Vec<Vec<u8>>,
}

impl UpsertRecords {
    /// A writer of `spec`'s records.
    pub fn new(spec: &UpsertSpec) -> Self {
        UpsertRecords {
            key: spec.key.clone(),
            key_format: Format::new(&spec.key_format),
            value_format: Format::new(&spec.value_format),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl Operator for UpsertRecords {
    type In = Rows;
    type Out = Upsert;

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Upsert>) -> Result<()> {
        for rows in input.drain(..).filter(|rows| !rows.is_empty()) {
            let keys = rows
                .batch
                .project(&self.key)
                .map_err(|e| Error::Sql(format!("upsert keys: {e}")))?;
            self.key_format.encode(keys, &mut self.keys)?;
            self.value_format
                .encode(rows.batch.clone(), &mut self.values)?;
            if self.keys.len() != rows.len() || self.values.len() != rows.len() {
                return Err(Error::Internal(format!(
                    "{} keys and {} values for {} rows",
                    self.keys.len(),
                    self.values.len(),
                    rows.len()
                )));
            }
            let records = self.keys.drain(..).zip(self.values.drain(..));
            for (row, (key, value)) in records.enumerate() {
                match rows.kind(row) {
                    RowKind::Insert | RowKind::UpdateAfter => output.push((key, Some(value))),
                    RowKind::UpdateBefore => {}
                    RowKind::Delete => output.push((key, None)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::Schema;
    use datafusion_common::arrow::array::{Int64Array, Int8Array, StringArray};
    use weir_catalog::parse_table;

    use super::*;
    use crate::sql::arrow_types::table_schema;

    fn table(key_format: &str, value_format: &str) -> Table {
        parse_table(&format!(
            "CREATE TABLE out (id BIGINT, name STRING, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'upsert-kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'localhost:9092', 'key.format' = '{key_format}', 'value.format' = '{value_format}')"
        ))
        .unwrap()
    }

    /// Ids 1 and 2 inserted, then 2's old row, then 2 deleted.
    fn written(table: &Table) -> Vec<Upsert> {
        let batch = |kinds: Option<Vec<RowKind>>| {
            let mut rows = Rows::inserts(
                RecordBatch::try_new(
                    table_schema(table),
                    vec![
                        Arc::new(Int64Array::from(vec![1, 2])),
                        Arc::new(StringArray::from(vec![Some("a"), None])),
                    ],
                )
                .unwrap(),
            );
            rows.kinds = kinds.map(|k| Int8Array::from_iter_values(k.into_iter().map(|k| k as i8)));
            rows
        };
        let mut input = vec![
            batch(None),
            batch(Some(vec![RowKind::UpdateBefore, RowKind::Delete])),
        ];
        let mut output = Batch::new();
        UpsertRecords::new(&UpsertSpec::new(table).unwrap())
            .process(&mut input, &mut output)
            .unwrap();
        output
    }

    #[test]
    fn an_upsert_table_writes_inserts_and_updates_and_a_tombstone_for_a_deletion() {
        let json = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            written(&table("json", "json")),
            vec![
                (json(r#"{"id":1}"#), Some(json(r#"{"id":1,"name":"a"}"#))),
                (json(r#"{"id":2}"#), Some(json(r#"{"id":2}"#))),
                (json(r#"{"id":2}"#), None),
            ]
        );
    }

    #[test]
    fn a_null_key_is_an_error_that_names_the_table() {
        let table = table("avro", "json");
        let mut rows = vec![Rows::inserts(
            RecordBatch::try_new(
                table_schema(&table),
                vec![
                    Arc::new(Int64Array::from(vec![None, Some(2)])),
                    Arc::new(StringArray::from(vec!["a", "b"])),
                ],
            )
            .unwrap(),
        )];
        let err = UpsertRecords::new(&UpsertSpec::new(&table).unwrap())
            .process(&mut rows, &mut Batch::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("table `out`") && err.contains("id"), "{err}");
    }

    #[test]
    fn avro_keys_and_values_are_datums_of_the_schemas_their_columns_give() {
        let table = table("avro", "avro");
        let written = written(&table);
        let key_schema = Schema::parse_str(
            r#"{"type": "record", "name": "k", "fields": [{"name": "id", "type": "long"}]}"#,
        )
        .unwrap();
        let value_schema = Schema::parse_str(
            r#"{"type": "record", "name": "v", "fields": [{"name": "id", "type": ["null", "long"]}, {"name": "name", "type": ["null", "string"]}]}"#,
        )
        .unwrap();
        let read = |schema: &Schema, bytes: &[u8]| {
            let mut bytes = bytes;
            let value = GenericDatumReader::builder(schema)
                .build()
                .unwrap()
                .read_value(&mut bytes)
                .unwrap();
            assert!(bytes.is_empty(), "bytes left after a datum");
            value
        };
        let long = |n| Value::Union(1, Box::new(Value::Long(n)));
        let decoded: Vec<(Value, Option<Value>)> = written
            .iter()
            .map(|(k, v)| {
                (
                    read(&key_schema, k),
                    v.as_ref().map(|v| read(&value_schema, v)),
                )
            })
            .collect();
        let key = |n| Value::Record(vec![("id".into(), Value::Long(n))]);
        let value = |n, name: Option<&str>| {
            let name = match name {
                Some(s) => Value::Union(1, Box::new(Value::String(s.into()))),
                None => Value::Union(0, Box::new(Value::Null)),
            };
            Value::Record(vec![("id".into(), long(n)), ("name".into(), name)])
        };
        assert_eq!(
            decoded,
            vec![
                (key(1), Some(value(1, Some("a")))),
                (key(2), Some(value(2, None))),
                (key(2), None),
            ]
        );
    }
}
