//! JSON records as [`Rows`] of a table: arrow-json's decoder over a batch of
//! records at once, and a record that does not fit the table named with its
//! reason.

use datafusion_common::arrow::array::RecordBatch;
use datafusion_common::arrow::json::reader::{Decoder, ReaderBuilder};
use weir_catalog::Table;

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::record_columns::{RecordColumns, RecordMetadata};
use crate::sql::rows::Rows;

/// How a table's rows are made from JSON records, checked.
#[derive(Debug, Clone)]
pub struct JsonRowsSpec {
    columns: RecordColumns,
}

impl JsonRowsSpec {
    /// The rows of `table`, whose records are JSON objects; metadata columns
    /// only where `connector` is `kafka`.
    pub fn new(table: &Table, connector: &str) -> Result<Self> {
        let spec = JsonRowsSpec {
            columns: RecordColumns::new(table, connector)?,
        };
        spec.decoder()?;
        Ok(spec)
    }

    fn decoder(&self) -> Result<Decoder> {
        ReaderBuilder::new(self.columns.values().clone())
            .with_strict_mode(false)
            .build_decoder()
            .map_err(|e| Error::Sql(format!("table `{}`: {e}", self.columns.table())))
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
        self.spec.columns.rows(&values, metadata)
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
            0 => Ok(RecordBatch::new_empty(self.spec.columns.values().clone())),
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
                    self.spec.columns.table(),
                    i + 1,
                    records.len()
                ));
            }
        }
        self.decoder = None;
        Error::Sql(format!("table `{}`: {error}", self.spec.columns.table()))
    }
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
