//! Catalog column types as Arrow types: the schema DataFusion plans against
//! and the batches SQL operators move.
//!
//! Timestamps keep their precision's unit (milliseconds up to `TIMESTAMP(3)`,
//! microseconds up to 6, nanoseconds beyond); a `TIMESTAMP_LTZ` is an instant,
//! so it carries the UTC zone, and a `TIMESTAMP` none (a wall-clock time).

use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use weir_catalog::{ColumnType, Table};

/// The Arrow type of a column of type `column_type`.
pub fn arrow_type(column_type: &ColumnType) -> DataType {
    match column_type {
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::TinyInt => DataType::Int8,
        ColumnType::SmallInt => DataType::Int16,
        ColumnType::Int => DataType::Int32,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Float => DataType::Float32,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal { precision, scale } => {
            DataType::Decimal128(*precision, i8::try_from(*scale).unwrap_or(i8::MAX))
        }
        ColumnType::String => DataType::Utf8,
        ColumnType::Bytes => DataType::Binary,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp { precision } => DataType::Timestamp(unit(*precision), None),
        ColumnType::TimestampLtz { precision } => {
            DataType::Timestamp(unit(*precision), Some("UTC".into()))
        }
        ColumnType::Array(element) => {
            DataType::List(Arc::new(Field::new("element", arrow_type(element), true)))
        }
        ColumnType::Map(key, value) => {
            let entries = Fields::from(vec![
                Field::new("key", arrow_type(key), false),
                Field::new("value", arrow_type(value), true),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            )
        }
        ColumnType::Row(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(&f.name, arrow_type(&f.data_type), true))
                .collect(),
        ),
    }
}

/// The unit of a timestamp of `precision` fractional digits.
fn unit(precision: u8) -> TimeUnit {
    match precision {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// The Arrow schema of `table`'s rows: every column, in order.
pub fn table_schema(table: &Table) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(&c.data_type), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_unit_and_zone() {
        assert_eq!(
            arrow_type(&ColumnType::Timestamp { precision: 3 }),
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(
            arrow_type(&ColumnType::TimestampLtz { precision: 6 }),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            arrow_type(&ColumnType::Decimal {
                precision: 12,
                scale: 2
            }),
            DataType::Decimal128(12, 2)
        );
    }
}
