//! Key groups of SQL rows: a stable hash of a row's key columns, and the
//! splitter that sends each row of a batch to the subtask owning its group.
//!
//! The hash is weir's own, over each value's canonical bytes (integers
//! sign-extended to 64 bits as [`StableHash`] does, strings and binaries by
//! xxh3, floats by their bits, null as a constant): it never changes across
//! versions or machines, so state restores to the right subtask. Keys of
//! types without a canonical form here are refused when the job is built.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion_common::arrow::compute::{take, take_record_batch};
use datafusion_common::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use datafusion_physical_expr::PhysicalExpr;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::exec::exchange::RowSplitter;
use crate::keys::{mix, StableHash};
use crate::sql::calc::evaluate;
use crate::sql::rows::Rows;

/// The hash of a null value.
const NULL: u64 = 0x6e75_6c6c_6e75_6c6c;

/// Whether columns of `data_type` can key rows.
pub fn hashable(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | LargeUtf8
            | Utf8View
            | Binary
            | LargeBinary
            | Date32
            | Timestamp(_, _)
            | Decimal128(_, _)
    )
}

/// Sets `hashes` (one per row) to the stable hash of each row's values in `keys`.
pub fn hash_rows(keys: &[ArrayRef], rows: usize, hashes: &mut Vec<u64>) -> Result<()> {
    hashes.clear();
    hashes.resize(rows, 0);
    for array in keys {
        hash_column(array.as_ref(), hashes)?;
    }
    Ok(())
}

/// Folds the hash of each value of `array` into `hashes`.
fn hash_column(array: &dyn Array, hashes: &mut [u64]) -> Result<()> {
    let fold = |hashes: &mut [u64], value: &dyn Fn(usize) -> u64| {
        for (i, h) in hashes.iter_mut().enumerate() {
            let v = if array.is_null(i) { NULL } else { value(i) };
            *h = mix(h.rotate_left(5) ^ v);
        }
    };
    macro_rules! ints {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            fold(hashes, &|i| (a.value(i) as i64).stable_hash());
        }};
    }
    match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            fold(hashes, &|i| u64::from(a.value(i)).stable_hash());
        }
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Date32 => ints!(Date32Type),
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            fold(hashes, &|i| mix(f64::from(a.value(i)).to_bits()));
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            fold(hashes, &|i| mix(a.value(i).to_bits()));
        }
        DataType::Timestamp(TimeUnit::Second, _) => ints!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => ints!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => ints!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => ints!(TimestampNanosecondType),
        DataType::Decimal128(_, _) => {
            let a = array.as_primitive::<datafusion_common::arrow::datatypes::Decimal128Type>();
            fold(hashes, &|i| xxh3_64(&a.value(i).to_le_bytes()));
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            fold(hashes, &|i| xxh3_64(a.value(i).as_bytes()));
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            fold(hashes, &|i| xxh3_64(a.value(i).as_bytes()));
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            fold(hashes, &|i| xxh3_64(a.value(i).as_bytes()));
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            fold(hashes, &|i| xxh3_64(a.value(i)));
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            fold(hashes, &|i| xxh3_64(a.value(i)));
        }
        other => {
            return Err(Error::Sql(format!(
                "a key of type {other} cannot place rows in key groups"
            )))
        }
    }
    Ok(())
}

/// The keys `keys` of every row of `batch`, in `converter`'s row format,
/// and each row's key group (of `groups`) in `key_groups`.
pub fn batch_keys(
    keys: &[Arc<dyn PhysicalExpr>],
    converter: &RowConverter,
    batch: &RecordBatch,
    groups: u64,
    key_groups: &mut Vec<u64>,
) -> Result<KeyRows> {
    let columns = keys
        .iter()
        .map(|k| evaluate(k.as_ref(), batch))
        .collect::<Result<Vec<_>>>()?;
    let rows = converter
        .convert_columns(&columns)
        .map_err(|e| Error::Sql(format!("aggregate keys: {e}")))?;
    hash_rows(&columns, batch.num_rows(), key_groups)?;
    for h in key_groups.iter_mut() {
        *h %= groups;
    }
    Ok(rows)
}

/// Splits batches of rows by the key groups of the values of `keys`.
pub struct KeySplitter {
    keys: Vec<Arc<dyn PhysicalExpr>>,
}

impl KeySplitter {
    /// A splitter keying rows by `keys` (none: every row in one group).
    pub fn new(keys: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        KeySplitter { keys }
    }

    /// The key group of each row of `batch`, of `groups` in all.
    pub fn key_groups(&self, batch: &RecordBatch, groups: usize, out: &mut Vec<u64>) -> Result<()> {
        let keys = self
            .keys
            .iter()
            .map(|k| evaluate(k.as_ref(), batch))
            .collect::<Result<Vec<_>>>()?;
        hash_rows(&keys, batch.num_rows(), out)?;
        for h in out.iter_mut() {
            *h %= groups as u64;
        }
        Ok(())
    }
}

impl RowSplitter<Rows> for KeySplitter {
    fn split(&self, rows: Rows, owners: &[u32], parts: &mut Vec<(usize, Rows)>) -> Result<()> {
        let mut groups = Vec::with_capacity(rows.len());
        self.key_groups(&rows.batch, owners.len(), &mut groups)?;
        let channels = owners.iter().max().map_or(1, |&m| m as usize + 1);
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); channels];
        for (row, &group) in groups.iter().enumerate() {
            indices[owners[group as usize] as usize].push(row as u32);
        }
        if let Some(only) = indices.iter().position(|i| i.len() == rows.len()) {
            parts.push((only, rows));
            return Ok(());
        }
        for (channel, taken) in indices.into_iter().enumerate() {
            if taken.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(taken);
            let failed = |e| Error::Sql(format!("splitting rows by key: {e}"));
            let batch = take_record_batch(&rows.batch, &indices).map_err(failed)?;
            let kinds = match &rows.kinds {
                None => None,
                Some(kinds) => Some(
                    take(kinds, &indices, None)
                        .map_err(failed)?
                        .as_primitive::<Int8Type>()
                        .clone(),
                ),
            };
            parts.push((channel, Rows { batch, kinds }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::{
        Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
    };

    use super::*;

    #[test]
    fn the_hash_of_a_key_is_fixed_and_ignores_the_integer_width() {
        let mut wide = Vec::new();
        let mut narrow = Vec::new();
        hash_rows(&[Arc::new(Int64Array::from(vec![-1, 7]))], 2, &mut wide).unwrap();
        hash_rows(&[Arc::new(Int32Array::from(vec![-1, 7]))], 2, &mut narrow).unwrap();
        assert_eq!(wide, narrow);
        let mut text = Vec::new();
        hash_rows(&[Arc::new(StringArray::from(vec!["weir"]))], 1, &mut text).unwrap();
        // Pinned: a changed hash would send restored state to the wrong subtask.
        assert_eq!(text, vec![mix(0u64.rotate_left(5) ^ xxh3_64(b"weir"))]);
    }

    #[test]
    fn a_timestamp_key_hashes_as_its_count_of_units() {
        let mut times = Vec::new();
        let millis = TimestampMillisecondArray::from(vec![-1, 7]);
        hash_rows(&[Arc::new(millis)], 2, &mut times).unwrap();
        let mut wide = Vec::new();
        hash_rows(&[Arc::new(Int64Array::from(vec![-1, 7]))], 2, &mut wide).unwrap();
        assert_eq!(times, wide);
    }
}
