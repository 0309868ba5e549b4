//! Columns from a schema the producers already have: an Avro record schema
//! (`.avsc`) or a JSON Schema of an object.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::Result;
use crate::infer::{column, inference};
use crate::table::Column;
use crate::types::{ColumnType, Field};

/// The columns of an Avro record schema: one per field, `NOT NULL` unless the
/// field's type is a union with `"null"`. Avro's `timestamp-millis` is an
/// instant, so it becomes `TIMESTAMP_LTZ(3)`; `local-timestamp-millis` a `TIMESTAMP(3)`.
pub fn columns_from_avro(text: &str, source_name: &str) -> Result<Vec<Column>> {
    let schema: Value =
        serde_json::from_str(text).map_err(|e| inference(source_name, format!("not JSON: {e}")))?;
    let mut named = HashMap::new();
    let Some(fields) = record_fields(&schema) else {
        return Err(inference(source_name, "the schema is not an Avro record"));
    };
    fields
        .iter()
        .map(|field| {
            let name = field_name(field).map_err(|m| inference(source_name, m))?;
            let (data_type, nullable) = avro_type(&field["type"], &mut named)
                .map_err(|m| inference(source_name, format!("field `{name}`: {m}")))?;
            Ok(described(column(name, data_type, nullable), &field["doc"]))
        })
        .collect()
}

/// `column` with the schema's description of it (Avro's `doc`, JSON
/// Schema's `description`) as its comment: the dictionary keeps what it means.
fn described(mut column: Column, description: &Value) -> Column {
    column.comment = description.as_str().map(str::to_string);
    column
}

/// The fields of a record schema.
fn record_fields(schema: &Value) -> Option<&Vec<Value>> {
    (schema["type"] == "record")
        .then(|| schema["fields"].as_array())
        .flatten()
}

/// A field's name.
fn field_name(field: &Value) -> Result<String, String> {
    field["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("a field without a name: {field}"))
}

/// An Avro type as a column type and whether it may be null; `named` holds the
/// records, enums and fixed types defined so far, which later fields may name.
fn avro_type(
    schema: &Value,
    named: &mut HashMap<String, ColumnType>,
) -> Result<(ColumnType, bool), String> {
    if let Value::Array(branches) = schema {
        let others: Vec<_> = branches.iter().filter(|b| *b != "null").collect();
        return match others.as_slice() {
            [only] => Ok((avro_type(only, named)?.0, others.len() < branches.len())),
            _ => Err(format!(
                "the union {schema} has no column type (only a union with \"null\" has one)"
            )),
        };
    }
    let logical = schema.get("logicalType").and_then(Value::as_str);
    let name = match schema {
        Value::String(name) => name.as_str(),
        Value::Object(_) => schema["type"].as_str().unwrap_or_default(),
        _ => "",
    };
    let data_type = match (name, logical) {
        (_, Some("timestamp-millis")) => ColumnType::TimestampLtz { precision: 3 },
        (_, Some("timestamp-micros")) => ColumnType::TimestampLtz { precision: 6 },
        (_, Some("local-timestamp-millis")) => ColumnType::Timestamp { precision: 3 },
        (_, Some("local-timestamp-micros")) => ColumnType::Timestamp { precision: 6 },
        (_, Some("date")) => ColumnType::Date,
        (_, Some("decimal")) => {
            let number = |key: &str| schema[key].as_u64().and_then(|n| u8::try_from(n).ok());
            ColumnType::Decimal {
                precision: number("precision").unwrap_or(38),
                scale: number("scale").unwrap_or(0),
            }
        }
        ("boolean", _) => ColumnType::Boolean,
        ("int", _) => ColumnType::Int,
        ("long", _) => ColumnType::BigInt,
        ("float", _) => ColumnType::Float,
        ("double", _) => ColumnType::Double,
        ("string", _) => ColumnType::String,
        ("bytes", _) => ColumnType::Bytes,
        ("null", _) => return Err("a field of type \"null\" alone carries nothing".to_string()),
        ("array", _) => ColumnType::Array(Box::new(avro_type(&schema["items"], named)?.0)),
        ("map", _) => ColumnType::Map(
            Box::new(ColumnType::String),
            Box::new(avro_type(&schema["values"], named)?.0),
        ),
        ("enum" | "fixed" | "record", _) => {
            let data_type = match name {
                "enum" => ColumnType::String,
                "fixed" => ColumnType::Bytes,
                _ => {
                    let fields = record_fields(schema).ok_or("a record without fields")?;
                    let mut row = Vec::new();
                    for field in fields {
                        let (data_type, _) = avro_type(&field["type"], named)?;
                        row.push(Field {
                            name: field_name(field)?,
                            data_type,
                        });
                    }
                    ColumnType::Row(row)
                }
            };
            if let Some(type_name) = schema["name"].as_str() {
                named.insert(type_name.to_string(), data_type.clone());
            }
            data_type
        }
        (other, _) => match named
            .get(other)
            .or_else(|| named.get(other.rsplit('.').next().unwrap_or(other)))
        {
            Some(defined) => defined.clone(),
            None => return Err(format!("the Avro type {schema} is not one weir knows")),
        },
    };
    Ok((data_type, false))
}

/// The columns of a JSON Schema of an object: one per property, `NOT NULL`
/// when `required` and its type does not allow `"null"`. A string of format
/// `date-time` becomes `TIMESTAMP_LTZ(3)`, of format `date` a `DATE`.
pub fn columns_from_json_schema(text: &str, source_name: &str) -> Result<Vec<Column>> {
    let schema: Value =
        serde_json::from_str(text).map_err(|e| inference(source_name, format!("not JSON: {e}")))?;
    let Some(properties) = schema["properties"].as_object() else {
        return Err(inference(
            source_name,
            "the schema describes no object with properties",
        ));
    };
    let required = |name: &str| {
        schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    properties
        .iter()
        .map(|(name, property)| {
            let (data_type, nullable) =
                json_schema_type(property, name).map_err(|m| inference(source_name, m))?;
            let column = column(name.clone(), data_type, nullable || !required(name));
            Ok(described(column, &property["description"]))
        })
        .collect()
}

/// A JSON Schema property as a column type, and whether its type allows null.
fn json_schema_type(schema: &Value, path: &str) -> Result<(ColumnType, bool), String> {
    if let Some(reference) = schema.get("$ref") {
        return Err(format!(
            "property `{path}` is a $ref ({reference}): inline its schema"
        ));
    }
    let (name, nullable) = match &schema["type"] {
        Value::String(name) => (name.as_str(), false),
        Value::Array(names) => {
            let others: Vec<_> = names
                .iter()
                .filter_map(Value::as_str)
                .filter(|n| *n != "null")
                .collect();
            match others.as_slice() {
                [only] => (*only, others.len() < names.len()),
                _ => {
                    return Err(format!(
                        "property `{path}` has types {}: give it one (and \"null\")",
                        schema["type"]
                    ))
                }
            }
        }
        _ => return Err(format!("property `{path}` has no \"type\"")),
    };
    let data_type = match (name, schema["format"].as_str()) {
        ("string", Some("date-time")) => ColumnType::TimestampLtz { precision: 3 },
        ("string", Some("date")) => ColumnType::Date,
        ("string", _) => ColumnType::String,
        ("integer", _) => ColumnType::BigInt,
        ("number", _) => ColumnType::Double,
        ("boolean", _) => ColumnType::Boolean,
        ("array", _) => ColumnType::Array(Box::new(
            json_schema_type(&schema["items"], &format!("{path}[]"))?.0,
        )),
        ("object", _) => {
            let properties = schema["properties"]
                .as_object()
                .ok_or_else(|| format!("object `{path}` lists no properties"))?;
            let mut fields = Vec::new();
            for (name, property) in properties {
                let (data_type, _) = json_schema_type(property, &format!("{path}.{name}"))?;
                fields.push(Field {
                    name: name.clone(),
                    data_type,
                });
            }
            ColumnType::Row(fields)
        }
        (other, _) => {
            return Err(format!(
                "property `{path}` has type \"{other}\", which no column carries"
            ))
        }
    };
    Ok((data_type, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(columns: Vec<Column>) -> Vec<String> {
        columns
            .into_iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    c.name,
                    c.data_type,
                    if c.nullable { "" } else { " NOT NULL" }
                )
            })
            .collect()
    }

    #[test]
    fn an_avro_record_gives_its_fields_with_nullability_and_logical_types() {
        let schema = r#"{"type": "record", "name": "Bid", "fields": [
            {"name": "auction", "type": "long"},
            {"name": "price", "type": ["null", "double"]},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "bidder", "type": {"type": "record", "name": "Person", "fields": [{"name": "id", "type": "long"}]}},
            {"name": "seller", "type": "Person"},
            {"name": "tags", "type": {"type": "array", "items": "string"}}
        ]}"#;
        assert_eq!(
            listed(columns_from_avro(schema, "bid.avsc").unwrap()),
            [
                "auction BIGINT NOT NULL",
                "price DOUBLE",
                "at TIMESTAMP_LTZ(3) NOT NULL",
                "bidder ROW<`id` BIGINT> NOT NULL",
                "seller ROW<`id` BIGINT> NOT NULL",
                "tags ARRAY<STRING> NOT NULL",
            ]
        );
        let error = columns_from_avro(r#"{"type": "record", "name": "X", "fields": [{"name": "u", "type": ["int", "string"]}]}"#, "x.avsc")
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `u`: the union"), "{error}");
    }

    #[test]
    fn a_json_schema_gives_its_properties_with_required_ones_not_null() {
        let schema = r#"{"type": "object", "required": ["id", "note"], "properties": {
            "id": {"type": "integer"},
            "note": {"type": ["string", "null"]},
            "at": {"type": "string", "format": "date-time"},
            "geo": {"type": "object", "properties": {"lat": {"type": "number"}}}
        }}"#;
        assert_eq!(
            listed(columns_from_json_schema(schema, "s.json").unwrap()),
            [
                "id BIGINT NOT NULL",
                "note STRING",
                "at TIMESTAMP_LTZ(3)",
                "geo ROW<`lat` DOUBLE>"
            ]
        );
        let error =
            columns_from_json_schema(r##"{"properties": {"a": {"$ref": "#/x"}}}"##, "s.json")
                .unwrap_err()
                .to_string();
        assert!(error.contains("property `a` is a $ref"), "{error}");
    }
}
