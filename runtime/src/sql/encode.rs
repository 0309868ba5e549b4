//! Rows as the text sinks write them: JSON objects, one per line (the
//! `filesystem` and `kafka` connectors' `json` format), or Flink's `print`
//! lines (`+I[1, alice, 2020-01-01T00:00:00]`).

use datafusion_common::arrow::json::LineDelimitedWriter;
use datafusion_common::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::rows::Rows;

/// The rows as JSON objects, one per line, each line ended.
pub fn json_lines(rows: &Rows, out: &mut Vec<u8>) -> Result<()> {
    let mut writer = LineDelimitedWriter::new(out);
    writer
        .write(&rows.batch)
        .and_then(|()| writer.finish())
        .map_err(|e| Error::Sql(format!("encoding rows as JSON: {e}")))
}

/// The rows as Flink's print connector writes them: the change kind (`+I`,
/// `-U`, `+U`, `-D`), then the values in brackets, after `prefix`.
pub fn print_lines(rows: &Rows, prefix: &str, out: &mut Vec<u8>) -> Result<()> {
    let batch = &rows.batch;
    let options = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Sql(format!("printing rows: {e}")))?;
    use std::io::Write;
    for row in 0..batch.num_rows() {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(rows.kind(row).short().as_bytes());
        out.push(b'[');
        for (i, f) in formatters.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            write!(out, "{}", f.value(row))
                .map_err(|e| Error::Sql(format!("printing rows: {e}")))?;
        }
        out.extend_from_slice(b"]\n");
    }
    Ok(())
}

/// Lines for a line sink: `rows` encoded by `encode`, without the last
/// newline (the sink ends each record with one).
pub fn lines(rows: &Rows, encode: impl Fn(&Rows, &mut Vec<u8>) -> Result<()>) -> Result<String> {
    let mut out = Vec::with_capacity(rows.len() * 64);
    encode(rows, &mut out)?;
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    String::from_utf8(out).map_err(|e| Error::Sql(format!("encoded rows are not UTF-8: {e}")))
}

/// Each row as its own JSON record, for sinks that write a record per row (Kafka).
pub struct JsonRecords;

impl Operator for JsonRecords {
    type In = Rows;
    type Out = String;

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<String>) -> Result<()> {
        for rows in input.drain(..).filter(|rows| !rows.is_empty()) {
            let text = lines(&rows, json_lines)?;
            output.extend(text.split('\n').map(str::to_string));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use datafusion_common::arrow::array::RecordBatch;

    use super::*;

    fn rows() -> Rows {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        Rows::inserts(
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(vec![1, 2])),
                    Arc::new(StringArray::from(vec![Some("a"), None])),
                ],
            )
            .unwrap(),
        )
    }

    #[test]
    fn an_empty_batch_is_no_json_record() {
        let mut input: Batch<Rows> = vec![Rows::inserts(rows().batch.slice(0, 0)), rows()];
        let mut output = Batch::new();
        JsonRecords.process(&mut input, &mut output).unwrap();
        assert_eq!(output, vec![r#"{"id":1,"name":"a"}"#, r#"{"id":2}"#]);
    }

    #[test]
    fn rows_become_json_lines_and_print_lines() {
        let json = lines(&rows(), json_lines).unwrap();
        assert_eq!(json, "{\"id\":1,\"name\":\"a\"}\n{\"id\":2}");
        let printed = lines(&rows(), |b, out| print_lines(b, "out> ", out)).unwrap();
        assert_eq!(printed, "out> +I[1, a]\nout> +I[2, NULL]");
    }
}
