//! [`Rows`]: the record type of SQL operators, an Arrow record batch (with
//! each row's change, in a changelog).
//!
//! A SQL job moves columns, not records: one [`Rows`] holds up to a batch's
//! worth of rows, so filters, projections and aggregates run vectorized over
//! Arrow arrays (DataFusion's kernels), and the engine's channels, exchanges
//! and checkpoints carry them like any other record. Between processes a
//! `Rows` travels in Arrow's IPC stream format.

use std::io::Cursor;

use std::sync::Arc;

use datafusion_common::arrow::array::{AsArray, Int8Array, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::datatypes::{DataType, Field, Int8Type, Schema};
use datafusion_common::arrow::error::ArrowError;
use datafusion_common::arrow::ipc::reader::StreamReader;
use datafusion_common::arrow::ipc::writer::StreamWriter;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// What a row of a changelog does, as Flink's `RowKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the row an update replaces.
    UpdateBefore = 1,
    /// `+U`: the row an update puts in its place.
    UpdateAfter = 2,
    /// `-D`: a row removed.
    Delete = 3,
}

impl RowKind {
    /// The kind of code `code`, as [`Rows::kinds`] holds it.
    pub fn from_code(code: i8) -> RowKind {
        match code {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }

    /// How Flink prints it: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }
}

/// The column that carries each row's kind across processes.
const KIND_COLUMN: &str = "$row_kind";

/// Rows of a SQL stream: one Arrow record batch, and in a changelog (the
/// result of an unbounded `GROUP BY`) what each row does.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// The rows' columns.
    pub batch: RecordBatch,
    /// Each row's [`RowKind`] code; `None`: every row is an insert.
    pub kinds: Option<Int8Array>,
}

impl Rows {
    /// Rows that are all inserts.
    pub fn inserts(batch: RecordBatch) -> Self {
        Rows { batch, kinds: None }
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Its columns' names and types.
    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    /// The kind of row `row`.
    pub fn kind(&self, row: usize) -> RowKind {
        self.kinds
            .as_ref()
            .map_or(RowKind::Insert, |k| RowKind::from_code(k.value(row)))
    }

    /// Its Arrow IPC stream encoding (schema, then the batch; the kinds as a
    /// last column).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let failed = |e: ArrowError| Error::Sql(format!("encoding rows: {e}"));
        let batch = match &self.kinds {
            None => self.batch.clone(),
            Some(kinds) => {
                let mut fields: Vec<Field> = self
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields.push(Field::new(KIND_COLUMN, DataType::Int8, false));
                let mut columns = self.batch.columns().to_vec();
                columns.push(Arc::new(kinds.clone()));
                let options = RecordBatchOptions::new().with_row_count(Some(self.batch.num_rows()));
                RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
                    .map_err(failed)?
            }
        };
        // The columns' buffers and a little for the messages: one allocation
        // instead of a doubling vector's copies.
        let size: usize = batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum();
        let mut bytes = Vec::with_capacity(size + 1024);
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(failed)?;
        writer
            .write(&batch)
            .and_then(|()| writer.finish())
            .map_err(failed)?;
        drop(writer);
        Ok(bytes)
    }

    /// Reads what [`Rows::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Rows> {
        let reader = StreamReader::try_new(Cursor::new(bytes), None)
            .map_err(|e| Error::Sql(format!("decoding rows: {e}")))?;
        let schema = reader.schema();
        let mut batches = Vec::with_capacity(1);
        for batch in reader {
            batches.push(batch.map_err(|e| Error::Sql(format!("decoding rows: {e}")))?);
        }
        let batch = match batches.len() {
            1 => batches.remove(0),
            0 => RecordBatch::new_empty(schema),
            n => {
                return Err(Error::Sql(format!(
                    "decoding rows: {n} record batches where one was written"
                )))
            }
        };
        let last = batch.num_columns().checked_sub(1);
        match last.filter(|&i| batch.schema().field(i).name() == KIND_COLUMN) {
            None => Ok(Rows::inserts(batch)),
            Some(i) => {
                let kinds = batch.column(i).as_primitive::<Int8Type>().clone();
                let mut batch = batch;
                batch.remove_column(i);
                Ok(Rows {
                    batch,
                    kinds: Some(kinds),
                })
            }
        }
    }
}

impl Serialize for Rows {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let bytes = self.encode().map_err(S::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        Rows::decode(&bytes).map_err(D::Error::custom)
    }
}

/// Reads a byte string, however the format hands it over.
fn serde_bytes_buf<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl<'de> serde::de::Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("Arrow IPC bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(
            self,
            v: Vec<u8>,
        ) -> std::result::Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element()? {
                bytes.push(b);
            }
            Ok(bytes)
        }
    }
    deserializer.deserialize_byte_buf(Bytes)
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn rows() -> Rows {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ],
        )
        .unwrap();
        Rows::inserts(batch)
    }

    #[test]
    fn rows_cross_processes_unchanged_with_their_kinds() {
        let rows = rows();
        let changes = Rows {
            kinds: Some(Int8Array::from(vec![0, 1, 2])),
            ..rows.clone()
        };
        let bytes = bincode::serialize(&vec![rows.clone(), changes.clone()]).unwrap();
        let back: Vec<Rows> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, vec![rows, changes]);
        assert_eq!(back[1].kind(1), RowKind::UpdateBefore);
    }

    #[test]
    fn damaged_rows_are_an_error_not_a_panic() {
        let bytes = rows().encode().unwrap();
        let error = Rows::decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(error.to_string().contains("decoding rows"), "{error}");
    }
}
