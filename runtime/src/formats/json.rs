//! JSON records: one object per Kafka value, read in place with serde_json.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes one JSON value from `bytes`; the error names the byte (counted
/// from 0) where the record stops making sense and what was wrong there.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // `from_slice` reads the bytes where they are: no text copy per record.
    serde_json::from_slice(bytes).map_err(|e| describe(bytes, &e))
}

/// Appends `record` as compact JSON to `out`.
pub fn encode<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<(), String> {
    serde_json::to_writer(out, record).map_err(|e| format!("JSON: {}", message(&e)))
}

/// `JSON at byte N: what`, N the offset serde_json stopped at.
fn describe(bytes: &[u8], error: &serde_json::Error) -> String {
    format!(
        "JSON at byte {}: {}",
        offset(bytes, error.line(), error.column()),
        message(error)
    )
}

/// The byte offset of serde_json's 1-based `line` and `column` (a column
/// counts bytes; 0 means before the line's first byte).
fn offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = match line.checked_sub(2) {
        None => 0,
        Some(newlines) => memchr::memchr_iter(b'\n', bytes)
            .nth(newlines)
            .map_or(bytes.len(), |i| i + 1),
    };
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// serde_json's message without its `at line L column C` suffix, which
/// [`describe`] gives as a byte offset instead.
fn message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) if error.line() > 0 => message.to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tests::Reading;

    fn error(bytes: &[u8]) -> String {
        decode::<Reading>(bytes).unwrap_err()
    }

    #[test]
    fn malformed_json_names_the_byte_and_the_problem() {
        let table: [(&[u8], &str); 7] = [
            (
                br#"{"id": 1, "letter": }"#,
                "JSON at byte 20: expected value",
            ),
            (b"seven,8", "JSON at byte 0: expected value"),
            (
                br#"{"id": 1, "letter": "a"}"#,
                "JSON at byte 23: missing field `name`",
            ),
            (
                br#"{"id": "1", "letter": "a", "name": "n"}"#,
                r#"JSON at byte 9: invalid type: string "1", expected i64"#,
            ),
            (
                br#"{"id": 1, "letter": "ab", "name": "n"}"#,
                r#"JSON at byte 23: invalid value: string "ab", expected a character"#,
            ),
            (
                b"{\"id\": 1,\n \"letter\": \"a\",\n \"name\": 5}",
                "JSON at byte 35: invalid type: integer `5`, expected a string",
            ),
            (
                br#"{"id": 1, "letter": "a", "name": "n"} x"#,
                "JSON at byte 38: trailing characters",
            ),
        ];
        for (bytes, expected) in table {
            assert_eq!(error(bytes), expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn records_are_compact_objects_and_read_back() {
        let record = Reading {
            id: 5,
            letter: 'a',
            name: "X".into(),
        };
        let mut out = b"prefix:".to_vec();
        encode(&record, &mut out).unwrap();
        assert_eq!(out, br#"prefix:{"id":5,"letter":"a","name":"X"}"#);
        assert_eq!(decode::<Reading>(&out[7..]).unwrap(), record);
    }
}
