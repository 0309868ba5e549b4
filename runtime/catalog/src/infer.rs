//! Columns inferred from what a user has at hand: sample messages (JSON), an
//! Avro schema or a JSON Schema, so that registering a topic is uploading a
//! sample, not writing DDL by hand.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::table::{Column, ColumnOrigin};
use crate::types::{ColumnType, Field};

/// Reads sample messages: one JSON object per line, or one JSON array of them.
pub fn read_samples(text: &str, source_name: &str) -> Result<Vec<Map<String, Value>>> {
    let trimmed = text.trim_start();
    let values: Vec<(String, Value)> = if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|e| inference(source_name, format!("not a JSON array: {e}")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("element {}", i + 1), v))
            .collect()
    } else {
        let mut values = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value = serde_json::from_str(line)
                .map_err(|e| inference(source_name, format!("line {}: {e}", i + 1)))?;
            values.push((format!("line {}", i + 1), value));
        }
        values
    };
    if values.is_empty() {
        return Err(inference(source_name, "it holds no message"));
    }
    values
        .into_iter()
        .map(|(place, value)| match value {
            Value::Object(object) => Ok(object),
            other => Err(inference(
                source_name,
                format!("{place} is {other}, not a JSON object"),
            )),
        })
        .collect()
}

/// Splits samples by the value of their `field`: one group per message
/// structure of a topic that carries several.
pub fn split_samples(
    samples: Vec<Map<String, Value>>,
    field: &str,
    source_name: &str,
) -> Result<BTreeMap<String, Vec<Map<String, Value>>>> {
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (i, sample) in samples.into_iter().enumerate() {
        let value = match sample.get(field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(inference(
                    source_name,
                    format!(
                        "message {} has no string or number field `{field}` to tell its structure",
                        i + 1
                    ),
                ))
            }
        };
        groups.entry(value).or_default().push(sample);
    }
    Ok(groups)
}

/// Columns that carry every sample: each field seen in any of them, typed by
/// the values seen (integers and decimals together make a `DOUBLE`), nullable
/// because a sample cannot show that a field is always there.
pub fn columns_from_samples(
    samples: &[Map<String, Value>],
    source_name: &str,
) -> Result<Vec<Column>> {
    let mut fields: Vec<(String, Option<ColumnType>)> = Vec::new();
    for sample in samples {
        for (name, value) in sample {
            let seen = json_type(value, name).map_err(|m| inference(source_name, m))?;
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some((_, known)) => {
                    *known =
                        merge(known.take(), seen, name).map_err(|m| inference(source_name, m))?
                }
                None => fields.push((name.clone(), seen)),
            }
        }
    }
    fields
        .into_iter()
        .map(|(name, data_type)| {
            let data_type = data_type.ok_or_else(|| {
                inference(source_name, format!("field `{name}` is null or an empty array in every sample: give a sample where it has a value"))
            })?;
            Ok(column(name, data_type, true))
        })
        .collect()
}

/// The type of a JSON value, `None` for null (known from other samples, if any).
fn json_type(value: &Value, path: &str) -> Result<Option<ColumnType>, String> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() => ColumnType::BigInt,
        Value::Number(_) => ColumnType::Double,
        Value::String(s) => string_type(s),
        Value::Array(items) => {
            let mut element = None;
            for item in items {
                element = merge(element, json_type(item, path)?, path)?;
            }
            // An empty array says nothing of its elements: other samples may.
            let Some(element) = element else {
                return Ok(None);
            };
            ColumnType::Array(Box::new(element))
        }
        Value::Object(object) => {
            let mut fields = Vec::new();
            for (name, value) in object {
                let nested = format!("{path}.{name}");
                let data_type = json_type(value, &nested)?.ok_or_else(|| {
                    format!("nested field `{nested}` is null or an empty array: give a sample where it has a value")
                })?;
                fields.push(Field {
                    name: name.clone(),
                    data_type,
                });
            }
            ColumnType::Row(fields)
        }
    }))
}

/// A string's type: a timestamp or a date if it is written as one (ISO 8601),
/// a string otherwise.
fn string_type(s: &str) -> ColumnType {
    let digits = |range: std::ops::Range<usize>| {
        s.get(range)
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    let bytes = s.as_bytes();
    let date = s.len() >= 10
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10);
    if !date {
        return ColumnType::String;
    }
    if s.len() == 10 {
        return ColumnType::Date;
    }
    let time = s.len() >= 19
        && matches!(bytes[10], b'T' | b' ')
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    if !time {
        return ColumnType::String;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(fraction.len());
        rest = &fraction[end..];
    }
    let zoned = rest == "Z"
        || (rest.len() >= 5
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest[1..].bytes().all(|b| b.is_ascii_digit() || b == b':'));
    match (rest.is_empty(), zoned) {
        (true, _) => ColumnType::Timestamp { precision: 3 },
        (false, true) => ColumnType::TimestampLtz { precision: 3 },
        (false, false) => ColumnType::String,
    }
}

/// The type that carries values of both `a` and `b`, or why none does.
fn merge(
    a: Option<ColumnType>,
    b: Option<ColumnType>,
    path: &str,
) -> Result<Option<ColumnType>, String> {
    use ColumnType::{BigInt, Double};
    Ok(match (a, b) {
        (None, t) | (t, None) => t,
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(BigInt), Some(Double)) | (Some(Double), Some(BigInt)) => Some(Double),
        (Some(ColumnType::Row(a)), Some(ColumnType::Row(b))) => {
            let mut fields = a;
            for field in b {
                let nested = format!("{path}.{}", field.name);
                match fields.iter_mut().find(|f| f.name == field.name) {
                    Some(known) => {
                        let merged = merge(
                            Some(known.data_type.clone()),
                            Some(field.data_type),
                            &nested,
                        )?;
                        known.data_type = merged.unwrap_or(ColumnType::String);
                    }
                    None => fields.push(field),
                }
            }
            Some(ColumnType::Row(fields))
        }
        (Some(a), Some(b)) => {
            let widest = |t: &ColumnType| {
                matches!(
                    t,
                    ColumnType::String
                        | ColumnType::Date
                        | ColumnType::Timestamp { .. }
                        | ColumnType::TimestampLtz { .. }
                )
            };
            if widest(&a) && widest(&b) {
                Some(ColumnType::String)
            } else {
                return Err(format!(
                    "field `{path}` is {a} in one sample and {b} in another"
                ));
            }
        }
    })
}

/// A column of the record's value.
pub(crate) fn column(name: String, data_type: ColumnType, nullable: bool) -> Column {
    Column {
        name,
        data_type,
        nullable,
        origin: ColumnOrigin::Value,
        comment: None,
    }
}

/// An inference error about `source_name`.
pub(crate) fn inference(source_name: &str, message: impl Into<String>) -> Error {
    Error::Inference {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(text: &str) -> Result<Vec<(String, String)>> {
        let samples = read_samples(text, "sample")?;
        Ok(columns_from_samples(&samples, "sample")?
            .into_iter()
            .map(|c| (c.name, c.data_type.to_string()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_sample_message_gives_typed_columns_in_its_order() {
        let sample = r#"{"user": "ann", "clicks": 3, "score": 0.5, "ok": true, "at": "2026-12-01T10:00:00.123Z", "day": "2026-12-01", "local": "2026-12-01 10:00:00", "tags": ["a"], "geo": {"lat": 1.5, "lon": 2}}"#;
        assert_eq!(
            columns(sample).unwrap(),
            pairs(&[
                ("user", "STRING"),
                ("clicks", "BIGINT"),
                ("score", "DOUBLE"),
                ("ok", "BOOLEAN"),
                ("at", "TIMESTAMP_LTZ(3)"),
                ("day", "DATE"),
                ("local", "TIMESTAMP(3)"),
                ("tags", "ARRAY<STRING>"),
                ("geo", "ROW<`lat` DOUBLE, `lon` BIGINT>"),
            ])
        );
    }

    #[test]
    fn several_samples_widen_types_and_fill_in_nulls() {
        let samples = "{\"a\": 1, \"b\": null}\n{\"a\": 2.5, \"b\": \"x\", \"c\": false}\n";
        assert_eq!(
            columns(samples).unwrap(),
            pairs(&[("a", "DOUBLE"), ("b", "STRING"), ("c", "BOOLEAN")])
        );
    }

    #[test]
    fn what_a_sample_cannot_type_is_named() {
        let error = columns("{\"a\": null}").unwrap_err().to_string();
        assert!(
            error.contains("field `a` is null or an empty array in every sample"),
            "{error}"
        );
        let error = columns("{\"a\": 1}\n{\"a\": \"x\"}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("field `a` is BIGINT in one sample and STRING in another"),
            "{error}"
        );
        let error = columns("{\"a\": 1}\n[1]").unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        let error = columns("[{\"a\": 1}, 3]").unwrap_err().to_string();
        assert!(
            error.contains("element 2 is 3, not a JSON object"),
            "{error}"
        );
    }

    #[test]
    fn samples_split_by_their_discriminating_field() {
        let samples = read_samples("{\"kind\": \"click\", \"x\": 1}\n{\"kind\": \"view\", \"y\": \"a\"}\n{\"kind\": \"click\", \"x\": 2}", "s").unwrap();
        let groups = split_samples(samples, "kind", "s").unwrap();
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["click", "view"]);
        assert_eq!(groups["click"].len(), 2);
        let missing = read_samples("{\"x\": 1}", "s").unwrap();
        assert!(split_samples(missing, "kind", "s")
            .unwrap_err()
            .to_string()
            .contains("message 1 has no"));
    }
}
