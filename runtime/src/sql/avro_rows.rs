//! Avro records as [`Rows`] of a table: arrow-avro's decoder over a batch of
//! records at once, each a plain binary datum (no container file, no
//! registry header, as Flink's `avro` format writes them) of the table's
//! writer schema: the `avro.schema` option, or one derived from the table's
//! columns as Flink derives it.
//!
//! arrow-avro's streaming decoder reads single-object encoded records, so
//! each datum is framed in a reused buffer with the single-object marker and
//! the schema's fingerprint; the table's value columns are projected from the
//! writer's fields by name and cast to the table's types.

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, SchemaStore, SINGLE_OBJECT_MAGIC};
use datafusion_common::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::compute::{cast, concat_batches};
use serde_json::Value;
use weir_catalog::Table;

use crate::error::{Error, Result};
use crate::sql::record_columns::{RecordColumns, RecordMetadata};
use crate::sql::rows::Rows;

/// How a table's rows are made from Avro records, checked.
#[derive(Debug, Clone)]
pub struct AvroRowsSpec {
    columns: RecordColumns,
    /// The writer schema, JSON.
    schema: String,
    /// For each value column, the index of its writer field.
    projection: Vec<usize>,
}

/// The writer schema of `table`: its `avro.schema` option, or the one its
/// value columns give (nullable columns a union with `null` first, as Flink).
pub fn writer_schema(table: &Table, columns: &RecordColumns) -> Result<String> {
    match table.option("avro.schema") {
        Some(text) => Ok(text.to_string()),
        None => AvroSchema::try_from(columns.values().as_ref())
            .map(|schema| schema.json_string)
            .map_err(|e| {
                Error::Sql(format!(
                    "table `{}`: no Avro schema for its columns ({e}); give one in 'avro.schema'",
                    table.name
                ))
            }),
    }
}

impl AvroRowsSpec {
    /// The rows of `table`, whose records are Avro datums; metadata columns
    /// only where `connector` is `kafka`.
    pub fn new(table: &Table, connector: &str) -> Result<Self> {
        let columns = RecordColumns::new(table, connector)?;
        let schema = writer_schema(table, &columns)?;
        let bad = |why: String| Error::Sql(format!("table `{}`: {why}", table.name));
        let json: Value = serde_json::from_str(&schema)
            .map_err(|e| bad(format!("'avro.schema' is not JSON: {e}")))?;
        let fields: Vec<&str> = match (json.get("type"), json.get("fields")) {
            (Some(kind), Some(Value::Array(fields))) if kind == "record" => {
                fields.iter().filter_map(|f| f["name"].as_str()).collect()
            }
            _ => return Err(bad("'avro.schema' is not an Avro record schema".into())),
        };
        let projection = columns
            .values()
            .fields()
            .iter()
            .map(|column| {
                let name = column.name();
                fields
                    .iter()
                    .position(|f| f == name)
                    .or_else(|| fields.iter().position(|f| f.eq_ignore_ascii_case(name)))
                    .ok_or_else(|| {
                        bad(format!(
                            "column `{name}` is no field of the Avro schema (its fields: {})",
                            fields.join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let spec = AvroRowsSpec {
            columns,
            schema,
            projection,
        };
        spec.decoder()?;
        Ok(spec)
    }

    /// The writer schema, JSON.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A decoder of the writer schema, and the prefix that frames a datum of it.
    fn decoder(&self) -> Result<(Decoder, Vec<u8>)> {
        let bad = |e: String| {
            Error::Sql(format!(
                "table `{}`: the Avro schema: {e}",
                self.columns.table()
            ))
        };
        let mut store = SchemaStore::new();
        let fingerprint = store
            .register(AvroSchema::new(self.schema.clone()))
            .map_err(|e| bad(e.to_string()))?;
        let Fingerprint::Rabin(rabin) = fingerprint else {
            return Err(bad(format!(
                "a fingerprint {fingerprint:?} that is no Rabin one"
            )));
        };
        let mut prefix = SINGLE_OBJECT_MAGIC.to_vec();
        prefix.extend_from_slice(&rabin.to_le_bytes());
        let decoder = ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_active_fingerprint(fingerprint)
            .with_projection(self.projection.clone())
            .build_decoder()
            .map_err(|e| bad(e.to_string()))?;
        Ok((decoder, prefix))
    }
}

/// Decodes Avro records into a table's rows.
pub struct AvroRows {
    spec: AvroRowsSpec,
    /// Made at the first batch, with its datum prefix.
    decoder: Option<(Decoder, Vec<u8>)>,
    framed: Vec<u8>,
}

impl AvroRows {
    /// A decoder of `spec`'s rows.
    pub fn new(spec: AvroRowsSpec) -> Self {
        AvroRows {
            spec,
            decoder: None,
            framed: Vec::new(),
        }
    }

    /// The rows of Kafka `records` (Avro values) of `topic`, their metadata
    /// columns filled from `metadata`, one per record.
    pub fn decode_with<S: AsRef<[u8]>>(
        &mut self,
        records: &[S],
        metadata: Option<(&str, &[RecordMetadata])>,
    ) -> Result<Rows> {
        let values = match self.decode_datums(records) {
            Ok(values) => values,
            Err(error) => return Err(self.name_bad_record(records, error)),
        };
        self.spec.columns.rows(&values, metadata)
    }

    /// The value columns of `records`, cast to the table's types.
    fn decode_datums<S: AsRef<[u8]>>(
        &mut self,
        records: &[S],
    ) -> std::result::Result<RecordBatch, String> {
        let (decoder, prefix) = match &mut self.decoder {
            Some(decoder) => decoder,
            None => self
                .decoder
                .insert(self.spec.decoder().map_err(|e| e.to_string())?),
        };
        self.framed.clear();
        for record in records {
            self.framed.extend_from_slice(prefix);
            self.framed.extend_from_slice(record.as_ref());
        }
        let mut batches = Vec::new();
        let mut read = 0;
        while read < self.framed.len() {
            let used = decoder
                .decode(&self.framed[read..])
                .map_err(|e| e.to_string())?;
            read += used;
            let flushed = decoder.flush().map_err(|e| e.to_string())?;
            if used == 0 && flushed.is_none() {
                break;
            }
            batches.extend(flushed);
        }
        if read < self.framed.len() {
            return Err("the record ends early (written with another schema?)".into());
        }
        let values = self.spec.columns.values();
        let decoded = match batches.len() {
            0 => return Ok(RecordBatch::new_empty(values.clone())),
            1 => batches.remove(0),
            _ => concat_batches(&batches[0].schema(), &batches).map_err(|e| e.to_string())?,
        };
        if decoded.num_rows() != records.len() {
            return Err(format!(
                "{} rows from {} records (written with another schema?)",
                decoded.num_rows(),
                records.len()
            ));
        }
        let columns = decoded
            .columns()
            .iter()
            .zip(values.fields())
            .map(|(column, field)| {
                cast(column, field.data_type())
                    .map_err(|e| format!("column `{}`: {e}", field.name()))
            })
            .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(decoded.num_rows()));
        RecordBatch::try_new_with_options(values.clone(), columns, &options)
            .map_err(|e| e.to_string())
    }

    /// The error of the first record that fails on its own, or of them all.
    fn name_bad_record<S: AsRef<[u8]>>(&mut self, records: &[S], error: String) -> Error {
        let table = self.spec.columns.table().to_string();
        for (i, record) in records.iter().enumerate() {
            // A decoder that failed keeps the failed rows: start afresh.
            self.decoder = None;
            if let Err(reason) = self.decode_datums(std::slice::from_ref(record)) {
                self.decoder = None;
                return Error::Sql(format!(
                    "table `{table}`: record {} of a batch of {} does not fit the table's Avro schema: {reason}",
                    i + 1,
                    records.len()
                ));
            }
        }
        self.decoder = None;
        Error::Sql(format!("table `{table}`: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as Avro;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::Schema;
    use weir_catalog::parse_table;

    use super::*;
    use crate::sql::encode::{json_lines, lines};

    const CLICK: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "extra", "type": {"type": "array", "items": "long"}},
        {"name": "n", "type": ["null", "long"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;

    fn table(options: &str) -> Table {
        parse_table(&format!(
            "CREATE TABLE clicks (user_id STRING, n BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'kafka', 'topic' = 'c', 'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'avro'{options})"
        ))
        .unwrap()
    }

    fn click(user: &str, n: Option<i64>, ts: i64) -> Vec<u8> {
        let schema = Schema::parse_str(CLICK).unwrap();
        let n = match n {
            Some(n) => Avro::Union(1, Box::new(Avro::Long(n))),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        let value = Avro::Record(vec![
            ("user_id".into(), Avro::String(user.into())),
            ("extra".into(), Avro::Array(vec![Avro::Long(9)])),
            ("n".into(), n),
            ("ts".into(), Avro::TimestampMillis(ts)),
        ]);
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn with_schema() -> String {
        format!(", 'avro.schema' = '{}'", CLICK.replace('\n', " "))
    }

    #[test]
    fn datums_decode_into_the_tables_columns_by_field_name() {
        let spec = AvroRowsSpec::new(&table(&with_schema()), "filesystem").unwrap();
        let mut rows = AvroRows::new(spec);
        let records = [click("a", Some(1), 1_000), click("b", None, 2_000)];
        let rows = rows.decode_with(&records, None).unwrap();
        assert_eq!(
            lines(&rows, json_lines).unwrap(),
            "{\"user_id\":\"a\",\"n\":1,\"ts\":\"1970-01-01T00:00:01\"}\n{\"user_id\":\"b\",\"ts\":\"1970-01-01T00:00:02\"}"
        );
    }

    #[test]
    fn without_a_schema_the_columns_give_it() {
        let spec = AvroRowsSpec::new(&table(""), "filesystem").unwrap();
        let json: Value = serde_json::from_str(spec.schema()).unwrap();
        assert_eq!(json["fields"][1]["type"][0], "null", "{json}");
    }

    #[test]
    fn a_record_of_another_schema_and_a_missing_field_are_named() {
        let spec = AvroRowsSpec::new(&table(&with_schema()), "filesystem").unwrap();
        let mut rows = AvroRows::new(spec);
        let good = click("a", Some(1), 1_000);
        let error = rows
            .decode_with(&[&good[..], &good[..3]], None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("record 2 of a batch of 2"), "{error}");
        let narrow =
            r#"{"type": "record", "name": "C", "fields": [{"name": "user_id", "type": "string"}]}"#;
        let error = AvroRowsSpec::new(
            &table(&format!(", 'avro.schema' = '{narrow}'")),
            "filesystem",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("column `n` is no field of the Avro schema"),
            "{error}"
        );
    }
}
