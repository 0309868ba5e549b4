//! Record formats of Kafka keys and values: text lines, JSON and Avro.
//!
//! A [`Format`] turns bytes into a [`Record`] and back:
//! - [`Format::Text`]: the record's own line (`key,value`, `address,letter`),
//!   what the built-in pipelines always read and wrote;
//! - [`Format::Json`]: one JSON object per record, through serde ([`json`]);
//! - [`Format::Avro`]: a plain Avro binary datum (no container file, no
//!   schema-registry header) written with a writer schema read from an
//!   `.avsc` file ([`avro`]), checked against the record type when the job
//!   starts, so a schema that cannot carry the record fails then, not per record.
//!
//! A record that cannot be decoded is an [`Error::BadRecord`] whose reason
//! says what is wrong with it (`JSON at byte 12: expected value`); where it
//! is (topic, partition, offset) is for the caller to add. Numbers are Avro
//! longs in every format ([`long`]), as the JVM's Kafka clients have them.

pub mod avro;
pub mod json;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub use avro::WriterSchema;

/// A record type every format can carry: serde for JSON and Avro, and a line
/// of its own for text.
pub trait Record: Serialize + DeserializeOwned + PartialEq + fmt::Debug {
    /// What its text line looks like, for errors: "`key,value` (two unsigned integers)".
    const TEXT: &'static str;

    /// Its name as an Avro record (a datum is read into the record of its
    /// name, as Avro's schema resolution has it).
    const NAME: &'static str;

    /// Its fields as JSON and Avro carry them, with their Avro types:
    /// `[("key", "long"), ("value", "long")]`.
    const FIELDS: &'static [(&'static str, &'static str)];

    /// The record from its text line, or `None` if the line is not one.
    fn from_text(line: &str) -> Option<Self>;

    /// Appends its text line to `out`.
    fn write_text(&self, out: &mut Vec<u8>);

    /// A record with the widest value of every field (the largest numbers, the
    /// longest names), which a schema must encode and decode back unchanged to
    /// be accepted at start.
    fn sample() -> Self;
}

/// A format's name as the command line takes it (`--input-format avro`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatName {
    /// The record's own line of text.
    Text,
    /// A JSON object.
    Json,
    /// An Avro binary datum; needs a writer schema.
    Avro,
}

/// How records are encoded as bytes.
#[derive(Debug, Clone)]
pub enum Format {
    /// The record's own line of text.
    Text,
    /// A JSON object per record.
    Json,
    /// An Avro binary datum per record, written with this schema.
    Avro(Arc<WriterSchema>),
}

impl Format {
    /// The format called `name`, for records of type `T`. `schema` is the
    /// writer schema's file, which Avro needs and the others refuse;
    /// `format_flag` and `schema_flag` name the options in errors.
    ///
    /// Fails with [`Error::Usage`] if the schema is missing, unreadable,
    /// invalid, or cannot carry a `T` (see [`WriterSchema::load`]).
    pub fn new<T: Record>(
        name: FormatName,
        schema: Option<&Path>,
        format_flag: &str,
        schema_flag: &str,
    ) -> Result<Format> {
        match (name, schema) {
            (FormatName::Avro, Some(path)) => {
                let schema = WriterSchema::load(path)?;
                schema.check::<T>()?;
                Ok(Format::Avro(Arc::new(schema)))
            }
            (FormatName::Avro, None) => Err(Error::Usage(format!(
                "{format_flag} avro needs the writer schema: {schema_flag} FILE.avsc"
            ))),
            (name, Some(path)) => Err(Error::Usage(format!(
                "{schema_flag} {} is for {format_flag} avro, not {name}",
                path.display()
            ))),
            (FormatName::Text, None) => Ok(Format::Text),
            (FormatName::Json, None) => Ok(Format::Json),
        }
    }

    /// Decodes a record from `bytes` (`None`: a Kafka tombstone); a record
    /// that is not one is an [`Error::BadRecord`] of `operator` saying why.
    pub fn decode<T: Record>(&self, operator: &str, bytes: Option<&[u8]>) -> Result<T> {
        let bad = |reason: String| Error::BadRecord {
            operator: operator.to_string(),
            reason,
        };
        let Some(bytes) = bytes else {
            return Err(bad("no value (a tombstone)".into()));
        };
        match self {
            Format::Text => std::str::from_utf8(bytes)
                .ok()
                .and_then(T::from_text)
                .ok_or_else(|| bad(format!("not {}", T::TEXT))),
            Format::Json => json::decode(bytes).map_err(bad),
            Format::Avro(schema) => schema.decode(bytes).map_err(bad),
        }
    }

    /// Appends `record` encoded to `out`; a record the format cannot carry (a
    /// number beyond an Avro long) is an [`Error::BadRecord`] of `operator`.
    pub fn encode<T: Record>(&self, operator: &str, record: &T, out: &mut Vec<u8>) -> Result<()> {
        let encoded = match self {
            Format::Text => {
                record.write_text(out);
                Ok(())
            }
            Format::Json => json::encode(record, out),
            Format::Avro(schema) => schema.encode(record, out),
        };
        encoded.map_err(|reason| Error::BadRecord {
            operator: operator.to_string(),
            reason,
        })
    }

    /// Whether records are text lines (the built-in pipelines' default).
    pub fn is_text(&self) -> bool {
        matches!(self, Format::Text)
    }
}

/// The record type's name and fields, for errors: `KeyValue {key: long, value: long}`.
pub fn shape<T: Record>() -> String {
    let fields: Vec<String> = T::FIELDS
        .iter()
        .map(|(name, kind)| format!("{name}: {kind}"))
        .collect();
    format!("{} {{{}}}", T::NAME, fields.join(", "))
}

impl std::str::FromStr for FormatName {
    type Err = Error;

    fn from_str(s: &str) -> Result<FormatName> {
        <FormatName as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| Error::Usage(format!("{s:?} is not a format: text, json or avro")))
    }
}

impl fmt::Display for FormatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormatName::Text => "text",
            FormatName::Json => "json",
            FormatName::Avro => "avro",
        })
    }
}

/// Serde for an unsigned number carried as a signed 64-bit integer (an Avro
/// `long`, a JVM `long`): `#[serde(with = "crate::formats::long")]`. A number
/// above `i64::MAX` cannot be written and a negative one cannot be read.
pub mod long {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `n` as an `i64`.
    pub fn serialize<S: Serializer>(n: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        let n = i64::try_from(*n).map_err(|_| {
            S::Error::custom(format!("{n} is beyond a long (at most {})", i64::MAX))
        })?;
        serializer.serialize_i64(n)
    }

    /// Reads an `i64` that is not negative.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let n = i64::deserialize(deserializer)?;
        u64::try_from(n).map_err(|_| D::Error::custom(format!("{n} is negative")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;

    /// A record of every kind of field the built-in pipelines use.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Reading {
        #[serde(with = "long")]
        pub id: u64,
        pub letter: char,
        pub name: String,
    }

    impl Record for Reading {
        const TEXT: &'static str = "`id,letter,name`";
        const NAME: &'static str = "Reading";
        const FIELDS: &'static [(&'static str, &'static str)] =
            &[("id", "long"), ("letter", "string"), ("name", "string")];

        fn from_text(line: &str) -> Option<Self> {
            let mut parts = line.splitn(3, ',');
            let id = parts.next()?.parse().ok()?;
            let mut letter = parts.next()?.chars();
            let (Some(l), None) = (letter.next(), letter.next()) else {
                return None;
            };
            let name = parts.next()?.to_string();
            Some(Reading {
                id,
                letter: l,
                name,
            })
        }

        fn write_text(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(format!("{},{},{}", self.id, self.letter, self.name).as_bytes());
        }

        fn sample() -> Self {
            Reading {
                id: i64::MAX as u64,
                letter: 'z',
                name: "Terminal".into(),
            }
        }
    }

    fn round_trip(format: &Format) {
        let record = Reading {
            id: 17,
            letter: 'g',
            name: "W".into(),
        };
        let mut bytes = Vec::new();
        format.encode("encode", &record, &mut bytes).unwrap();
        let back: Reading = format.decode("records", Some(&bytes)).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn text_and_json_records_read_back_as_written() {
        round_trip(&Format::Text);
        round_trip(&Format::Json);
    }

    #[test]
    fn a_text_line_that_is_not_a_record_says_what_it_should_be() {
        for bad in [&b"x,a,b"[..], b"17,ab,c", b"17", &[0xff, b',', b'a']] {
            let error = Format::Text
                .decode::<Reading>("records", Some(bad))
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                "bad record in records: not `id,letter,name`"
            );
        }
        let tombstone = Format::Json.decode::<Reading>("records", None).unwrap_err();
        assert_eq!(
            tombstone.to_string(),
            "bad record in records: no value (a tombstone)"
        );
    }

    #[test]
    fn numbers_beyond_a_long_are_refused_both_ways() {
        let mut record = Reading::sample();
        record.id = u64::MAX;
        let error = Format::Json
            .encode("encode", &record, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("18446744073709551615 is beyond a long"),
            "{error}"
        );
        let negative = br#"{"id": -3, "letter": "a", "name": "n"}"#;
        let error = Format::Json
            .decode::<Reading>("records", Some(negative))
            .unwrap_err()
            .to_string();
        assert!(error.contains("-3 is negative"), "{error}");
    }

    #[test]
    fn format_names_parse_and_print_as_the_command_line_has_them() {
        for name in [FormatName::Text, FormatName::Json, FormatName::Avro] {
            assert_eq!(name.to_string().parse::<FormatName>().unwrap(), name);
        }
        let error = "xml".parse::<FormatName>().unwrap_err().to_string();
        assert_eq!(error, r#""xml" is not a format: text, json or avro"#);
    }

    #[test]
    fn a_schema_is_needed_for_avro_and_refused_otherwise() {
        let need =
            Format::new::<Reading>(FormatName::Avro, None, "--input-format", "--input-schema")
                .unwrap_err()
                .to_string();
        assert_eq!(
            need,
            "--input-format avro needs the writer schema: --input-schema FILE.avsc"
        );
        let refused = Format::new::<Reading>(
            FormatName::Json,
            Some(Path::new("r.avsc")),
            "--format",
            "--schema",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(refused, "--schema r.avsc is for --format avro, not json");
        assert!(Format::new::<Reading>(FormatName::Text, None, "--f", "--s")
            .unwrap()
            .is_text());
    }
}
