//! [`Rows`]: the record type of SQL operators, an Arrow record batch.
//!
//! A SQL job moves columns, not records: one [`Rows`] holds up to a batch's
//! worth of rows, so filters, projections and aggregates run vectorized over
//! Arrow arrays (DataFusion's kernels), and the engine's channels, exchanges
//! and checkpoints carry them like any other record. Between processes a
//! `Rows` travels in Arrow's IPC stream format.

use std::io::Cursor;

use datafusion_common::arrow::array::RecordBatch;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::ipc::reader::StreamReader;
use datafusion_common::arrow::ipc::writer::StreamWriter;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Rows of a SQL stream, as one Arrow record batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows(pub RecordBatch);

impl Rows {
    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.0.num_rows()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.0.num_rows() == 0
    }

    /// Its columns' names and types.
    pub fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    /// Its Arrow IPC stream encoding (schema, then the batch).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &self.0.schema())
            .map_err(|e| Error::Sql(format!("encoding rows: {e}")))?;
        writer
            .write(&self.0)
            .and_then(|()| writer.finish())
            .map_err(|e| Error::Sql(format!("encoding rows: {e}")))?;
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
        match batches.len() {
            1 => Ok(Rows(batches.remove(0))),
            0 => Ok(Rows(RecordBatch::new_empty(schema))),
            n => Err(Error::Sql(format!(
                "decoding rows: {n} record batches where one was written"
            ))),
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
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

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
        Rows(batch)
    }

    #[test]
    fn rows_cross_processes_unchanged() {
        let rows = rows();
        let bytes = bincode::serialize(&vec![rows.clone(), rows.clone()]).unwrap();
        let back: Vec<Rows> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, vec![rows.clone(), rows]);
    }

    #[test]
    fn damaged_rows_are_an_error_not_a_panic() {
        let bytes = rows().encode().unwrap();
        let error = Rows::decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(error.to_string().contains("decoding rows"), "{error}");
    }
}
