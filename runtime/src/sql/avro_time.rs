//! The event time of an Avro record, read before the record is decoded: the
//! SQL Kafka source needs each record's event time for its partition's
//! watermark, so it walks the binary datum, skipping the fields before the
//! time field without decoding them, and reads that one field.
//!
//! The writer schema is compiled once into [`Shape`]s, an arena that named
//! types (and so recursive records) refer into by index.

use std::collections::HashMap;

use datafusion_common::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use serde_json::Value;

use crate::data::EventTime;

/// How to skip, or read, a value of one Avro type.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Null,
    Boolean,
    /// `int`, `long` and `enum`: a zig-zag varint.
    Varint,
    Float,
    Double,
    /// `bytes` and `string`: a length, then that many bytes.
    Bytes,
    Fixed(usize),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<usize>),
    /// A definition not compiled yet (a record referring to itself).
    Pending,
}

/// How the time field's value becomes milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    /// A number of ms (`timestamp-millis`, or a plain `long`).
    Millis,
    /// `timestamp-micros`.
    Micros,
    /// `timestamp-nanos`.
    Nanos,
    /// A string, parsed as a timestamp.
    Text,
}

/// Reads one top-level field of a record schema as event time.
#[derive(Debug, Clone)]
pub struct AvroEventTime {
    shapes: Vec<Shape>,
    /// The fields before the time field, skipped.
    before: Vec<usize>,
    /// The time field's shape.
    field: usize,
    unit: TimeUnit,
}

impl AvroEventTime {
    /// A reader of field `name` of the record schema `schema` (JSON text).
    pub fn new(schema: &str, name: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(schema).map_err(|e| format!("{e}"))?;
        let mut compiler = Compiler::default();
        let root = compiler.compile(&json)?;
        let fields = match json.get("fields").and_then(Value::as_array) {
            Some(fields) if json["type"] == "record" => fields,
            _ => return Err("the schema is not an Avro record".into()),
        };
        let Shape::Record(shapes) = compiler.shapes[root].clone() else {
            return Err("the schema is not an Avro record".into());
        };
        let position = fields
            .iter()
            .position(|f| f["name"].as_str() == Some(name))
            .or_else(|| {
                fields.iter().position(|f| {
                    f["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
            })
            .ok_or_else(|| format!("the Avro schema has no field `{name}`"))?;
        let unit = time_unit(&fields[position]["type"]).ok_or_else(|| {
            format!("the Avro field `{name}` is not a timestamp, a long or a string")
        })?;
        Ok(AvroEventTime {
            before: shapes[..position].to_vec(),
            field: shapes[position],
            shapes: compiler.shapes,
            unit,
        })
    }

    /// The event time in ms of the binary datum `datum` ([`EventTime::MIN`]
    /// if the field is null).
    pub fn read(&self, datum: &[u8]) -> Result<EventTime, String> {
        let mut at = datum;
        for &shape in &self.before {
            self.skip(shape, &mut at)?;
        }
        let mut shape = self.field;
        if let Shape::Union(branches) = &self.shapes[shape] {
            let branch = usize::try_from(varint(&mut at)?)
                .ok()
                .and_then(|b| branches.get(b))
                .ok_or("a union branch out of range")?;
            shape = *branch;
        }
        let value = match (&self.shapes[shape], self.unit) {
            (Shape::Null, _) => return Ok(EventTime::MIN),
            (Shape::Bytes, TimeUnit::Text) => {
                let text = std::str::from_utf8(bytes(&mut at)?).map_err(|e| e.to_string())?;
                let nanos = string_to_timestamp_nanos(text)
                    .map_err(|e| format!("{text:?} is not a timestamp: {e}"))?;
                return Ok(nanos.div_euclid(1_000_000));
            }
            (Shape::Varint, _) => varint(&mut at)?,
            _ => return Err("the time field's value is not a number".into()),
        };
        Ok(match self.unit {
            TimeUnit::Micros => value.div_euclid(1_000),
            TimeUnit::Nanos => value.div_euclid(1_000_000),
            TimeUnit::Millis | TimeUnit::Text => value,
        })
    }

    fn skip(&self, shape: usize, at: &mut &[u8]) -> Result<(), String> {
        match &self.shapes[shape] {
            Shape::Null => {}
            Shape::Boolean => take(at, 1).map(drop)?,
            Shape::Varint => varint(at).map(drop)?,
            Shape::Float => take(at, 4).map(drop)?,
            Shape::Double => take(at, 8).map(drop)?,
            Shape::Bytes => bytes(at).map(drop)?,
            Shape::Fixed(size) => take(at, *size).map(drop)?,
            Shape::Array(item) => self.skip_blocks(at, |at| self.skip(*item, at))?,
            Shape::Map(value) => self.skip_blocks(at, |at| {
                bytes(at)?;
                self.skip(*value, at)
            })?,
            Shape::Union(branches) => {
                let branch = usize::try_from(varint(at)?)
                    .ok()
                    .and_then(|b| branches.get(b))
                    .ok_or("a union branch out of range")?;
                self.skip(*branch, at)?
            }
            Shape::Record(fields) => {
                for &field in fields {
                    self.skip(field, at)?;
                }
            }
            Shape::Pending => return Err("a type that is never defined".into()),
        }
        Ok(())
    }

    /// Skips an array's or a map's blocks, each item with `item`.
    fn skip_blocks(
        &self,
        at: &mut &[u8],
        item: impl Fn(&mut &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = varint(at)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // A block that gives its size in bytes: skip it whole.
                let size = usize::try_from(varint(at)?).map_err(|_| "a negative block size")?;
                take(at, size)?;
            } else {
                for _ in 0..count {
                    item(at)?;
                }
            }
        }
    }
}

/// The unit of a time field's type, through a union with `null`.
fn time_unit(schema: &Value) -> Option<TimeUnit> {
    match schema {
        Value::Array(branches) => {
            let mut others = branches.iter().filter(|b| *b != "null");
            match (others.next(), others.next()) {
                (Some(only), None) => time_unit(only),
                _ => None,
            }
        }
        Value::String(name) => match name.as_str() {
            "long" | "int" => Some(TimeUnit::Millis),
            "string" => Some(TimeUnit::Text),
            _ => None,
        },
        Value::Object(object) => match object.get("logicalType").and_then(Value::as_str) {
            Some("timestamp-micros" | "local-timestamp-micros") => Some(TimeUnit::Micros),
            Some("timestamp-nanos" | "local-timestamp-nanos") => Some(TimeUnit::Nanos),
            _ => time_unit(object.get("type")?),
        },
        _ => None,
    }
}

/// Compiles schema JSON into shapes.
#[derive(Default)]
struct Compiler {
    shapes: Vec<Shape>,
    named: HashMap<String, usize>,
}

impl Compiler {
    fn add(&mut self, shape: Shape) -> usize {
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    fn compile(&mut self, schema: &Value) -> Result<usize, String> {
        match schema {
            Value::String(name) => self.primitive(name),
            Value::Array(branches) => {
                let branches = branches
                    .iter()
                    .map(|b| self.compile(b))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(self.add(Shape::Union(branches)))
            }
            Value::Object(object) => {
                let kind = object.get("type").ok_or("a type without \"type\"")?;
                let name = object.get("name").and_then(Value::as_str);
                match kind.as_str() {
                    Some("record" | "error") => {
                        let index = self.add(Shape::Pending);
                        if let Some(name) = name {
                            self.named.insert(name.to_string(), index);
                        }
                        let fields = object
                            .get("fields")
                            .and_then(Value::as_array)
                            .ok_or("a record without fields")?
                            .iter()
                            .map(|f| self.compile(f.get("type").unwrap_or(&Value::Null)))
                            .collect::<Result<Vec<_>, _>>()?;
                        self.shapes[index] = Shape::Record(fields);
                        Ok(index)
                    }
                    Some("enum") => self.define(name, Shape::Varint),
                    Some("fixed") => {
                        let size = object.get("size").and_then(Value::as_u64);
                        let size = size.ok_or("a fixed type without a size")?;
                        let size = usize::try_from(size).map_err(|e| e.to_string())?;
                        self.define(name, Shape::Fixed(size))
                    }
                    Some("array") => {
                        let items =
                            self.compile(object.get("items").ok_or("an array without items")?)?;
                        Ok(self.add(Shape::Array(items)))
                    }
                    Some("map") => {
                        let values =
                            self.compile(object.get("values").ok_or("a map without values")?)?;
                        Ok(self.add(Shape::Map(values)))
                    }
                    // A primitive with a logical type: its underlying type.
                    _ => self.compile(kind),
                }
            }
            other => Err(format!("{other} is not an Avro type")),
        }
    }

    fn define(&mut self, name: Option<&str>, shape: Shape) -> Result<usize, String> {
        let index = self.add(shape);
        if let Some(name) = name {
            self.named.insert(name.to_string(), index);
        }
        Ok(index)
    }

    fn primitive(&mut self, name: &str) -> Result<usize, String> {
        let shape = match name {
            "null" => Shape::Null,
            "boolean" => Shape::Boolean,
            "int" | "long" => Shape::Varint,
            "float" => Shape::Float,
            "double" => Shape::Double,
            "bytes" | "string" => Shape::Bytes,
            named => {
                // A reference by full or short name to a type defined earlier.
                let short = named.rsplit('.').next().unwrap_or(named);
                return self
                    .named
                    .get(named)
                    .or_else(|| self.named.get(short))
                    .copied()
                    .ok_or_else(|| {
                        format!("the Avro type `{named}` is not defined before its use")
                    });
            }
        };
        Ok(self.add(shape))
    }
}

/// Takes `n` bytes off the front of `at`.
fn take<'a>(at: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if at.len() < n {
        return Err("the record ends early".into());
    }
    let (head, rest) = at.split_at(n);
    *at = rest;
    Ok(head)
}

/// A length-prefixed `bytes` or `string`.
fn bytes<'a>(at: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = usize::try_from(varint(at)?).map_err(|_| "a negative length")?;
    take(at, len)
}

/// A zig-zag varint (`int` or `long`).
fn varint(at: &mut &[u8]) -> Result<i64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let [byte, rest @ ..] = *at else {
            return Err("the record ends early".into());
        };
        *at = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err("a varint longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as Avro;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::Schema;

    use super::*;

    const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "user", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "double"]}},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 4}},
        {"name": "same", "type": "Id"},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "seen", "type": "string"}
    ]}"#;

    fn datum(at: Option<i64>) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let value = Avro::Record(vec![
            ("user".into(), Avro::String("ann".into())),
            (
                "tags".into(),
                Avro::Array(vec![Avro::String("a".into()), Avro::String("bc".into())]),
            ),
            (
                "attrs".into(),
                Avro::Map([("x".to_string(), Avro::Union(1, Box::new(Avro::Double(1.5))))].into()),
            ),
            ("id".into(), Avro::Fixed(4, vec![1, 2, 3, 4])),
            ("same".into(), Avro::Fixed(4, vec![5, 6, 7, 8])),
            (
                "at".into(),
                match at {
                    Some(us) => Avro::Union(1, Box::new(Avro::TimestampMicros(us))),
                    None => Avro::Union(0, Box::new(Avro::Null)),
                },
            ),
            ("seen".into(), Avro::String("2026-01-01 00:00:01".into())),
        ]);
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    #[test]
    fn the_time_field_is_read_past_every_kind_of_field_before_it() {
        let at = AvroEventTime::new(SCHEMA, "at").unwrap();
        assert_eq!(at.read(&datum(Some(1_500_999))).unwrap(), 1_500);
        assert_eq!(at.read(&datum(None)).unwrap(), EventTime::MIN);
        let seen = AvroEventTime::new(SCHEMA, "SEEN").unwrap();
        assert_eq!(seen.read(&datum(None)).unwrap(), 1_767_225_601_000);
    }

    #[test]
    fn a_short_record_or_a_field_that_is_no_time_is_an_error() {
        let at = AvroEventTime::new(SCHEMA, "at").unwrap();
        let whole = datum(Some(7));
        let error = at.read(&whole[..6]).unwrap_err();
        assert!(error.contains("ends early"), "{error}");
        let error = AvroEventTime::new(SCHEMA, "tags").unwrap_err();
        assert!(error.contains("`tags` is not a timestamp"), "{error}");
        let error = AvroEventTime::new(SCHEMA, "nope").unwrap_err();
        assert!(error.contains("no field `nope`"), "{error}");
    }
}
