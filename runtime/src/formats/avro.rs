//! Avro records: a plain binary datum per Kafka value, written with a writer
//! schema read from an `.avsc` file (no container file, no schema-registry
//! header, so the schema is not in the record: both sides must have the file).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use apache_avro::error::Details;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::formats::{shape, Record};

/// The writer schema of a topic's records, parsed and resolved once.
pub struct WriterSchema {
    /// The `.avsc` file, to name in errors.
    path: PathBuf,
    /// The schema it holds.
    schema: &'static Schema,
    /// Decodes datums written with the schema.
    reader: GenericDatumReader<'static>,
    /// Encodes datums with the schema.
    writer: GenericDatumWriter<'static>,
}

/// Every schema this process parsed, by the text of its file, kept for the
/// life of the process: the crate's datum readers and writers borrow their
/// schema, and the decoders and encoders that hold them are shared by
/// subtasks and outlive any one job build. A process loads a few schemas,
/// each once, however often it builds a job (every restart, every deploy).
static SCHEMAS: OnceLock<Mutex<Vec<(String, &'static Schema)>>> = OnceLock::new();

/// The schema of `text`, parsed the first time this process sees that text.
fn intern(text: String) -> Result<&'static Schema, apache_avro::Error> {
    let schemas = SCHEMAS.get_or_init(Default::default);
    // A panic while the lock was held cannot leave the list half-changed:
    // it is only ever pushed to.
    let mut schemas = schemas
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, schema)) = schemas.iter().find(|(t, _)| *t == text) {
        return Ok(schema);
    }
    let schema: &'static Schema = Box::leak(Box::new(Schema::parse_str(&text)?));
    schemas.push((text, schema));
    Ok(schema)
}

impl WriterSchema {
    /// Reads and parses the schema in `path`; a missing, unreadable or
    /// invalid file is an [`Error::Usage`] naming it and saying why.
    pub fn load(path: &Path) -> Result<WriterSchema> {
        let usage =
            |problem: String| Error::Usage(format!("Avro schema {}: {problem}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| usage(e.to_string()))?;
        let schema =
            intern(text).map_err(|e| usage(format!("not a valid schema: {}", with_causes(&e))))?;
        let reader = GenericDatumReader::builder(schema)
            .human_readable(false)
            .build()
            .map_err(|e| usage(with_causes(&e)))?;
        let writer = GenericDatumWriter::builder(schema)
            .human_readable(false)
            .build()
            .map_err(|e| usage(with_causes(&e)))?;
        Ok(WriterSchema {
            path: path.to_path_buf(),
            schema,
            reader,
            writer,
        })
    }

    /// Refuses, with an [`Error::Usage`], a schema that cannot carry records
    /// of type `T`, before any record is read: it must be a record of `T`'s
    /// name with each of its fields at its type ([`Record::FIELDS`]), and
    /// [`Record::sample`] must encode and decode back unchanged (which
    /// catches what else the schema asks, say an extra field without a default).
    pub fn check<T: Record>(&self) -> Result<()> {
        let sample = T::sample();
        let mut bytes = Vec::new();
        let back = fields::<T>(self.schema)
            .and_then(|()| self.encode(&sample, &mut bytes))
            .and_then(|()| self.decode::<T>(&bytes));
        match back {
            Ok(back) if back == sample => Ok(()),
            Ok(back) => Err(format!("{sample:?} reads back as {back:?}")),
            Err(reason) => Err(reason),
        }
        .map_err(|reason| {
            Error::Usage(format!(
                "Avro schema {} does not fit records {}: {reason}",
                self.path.display(),
                shape::<T>()
            ))
        })
    }

    /// Decodes one datum that must fill `bytes` exactly.
    pub fn decode<T: Record>(&self, bytes: &[u8]) -> Result<T, String> {
        let mut rest = bytes;
        // The reader has no reader schema: its serde path would panic with
        // one (the crate does not resolve schemas there yet).
        let Traced(record) = self
            .reader
            .read_deser(&mut rest)
            .map_err(|e| format!("Avro: {}", message(&e)))?;
        if !rest.is_empty() {
            return Err(format!(
                "Avro: {} of {} bytes left over after the record (written with another schema?)",
                rest.len(),
                bytes.len()
            ));
        }
        Ok(record)
    }

    /// Appends `record` as one datum to `out` (unchanged on error).
    pub fn encode<T: Record>(&self, record: &T, out: &mut Vec<u8>) -> Result<(), String> {
        let len = out.len();
        self.writer.write_ser(out, record).map(|_| ()).map_err(|e| {
            out.truncate(len);
            format!("Avro: {}", with_causes(&e))
        })
    }
}

impl fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterSchema")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Checks that `schema` is a record named as `T` with `T`'s fields at their
/// types; says what differs.
fn fields<T: Record>(schema: &Schema) -> Result<(), String> {
    let Schema::Record(record) = schema else {
        return Err(format!(
            "Avro: the schema is {}, not a record",
            kind(schema)
        ));
    };
    if record.name.name() != T::NAME {
        return Err(format!(
            "Avro: the record is named {:?}, not {:?} (a datum is read into the record of its name)",
            record.name.name(),
            T::NAME
        ));
    }
    for (name, expected) in T::FIELDS {
        let Some(field) = record.fields.iter().find(|f| f.name == *name) else {
            return Err(format!("Avro: field {name:?} is missing"));
        };
        let found = kind(&field.schema);
        if found != *expected {
            return Err(format!("Avro: field {name:?} is {found}, not {expected}"));
        }
    }
    Ok(())
}

/// The Avro type name of `schema`: `long`, `string`, `record`...
fn kind(schema: &Schema) -> String {
    schema.to_string().to_lowercase()
}

/// A record whose decoding errors name the field they are about.
struct Traced<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Traced<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_path_to_error::deserialize(deserializer)
            .map(Traced)
            .map_err(|e| match e.path().to_string() {
                root if root == "." => e.into_inner(),
                path => D::Error::custom(format!("field {path:?}: {}", e.into_inner())),
            })
    }
}

/// A decoding error's message without the crate's preamble of the errors
/// that serde types raise ("Failed to deserialize Avro value into value: "),
/// which [`Traced`] nests in its own.
fn message(error: &apache_avro::Error) -> String {
    let preamble = Details::DeserializeValue(String::new()).to_string();
    with_causes(error).replace(&preamble, "")
}

/// The crate's message with its causes, which it keeps apart.
fn with_causes(error: &apache_avro::Error) -> String {
    crate::error::with_causes(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tests::Reading;

    /// A schema file holding `text`, in `dir`.
    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The schema of [`Reading`] with `fields` as its fields.
    fn reading(fields: &str) -> String {
        format!(
            r#"{{"type": "record", "name": "Reading", "namespace": "t", "fields": [{fields}]}}"#
        )
    }

    const FITS: &str = r#"{"name": "id", "type": "long"}, {"name": "letter", "type": "string"},
        {"name": "name", "type": "string"}"#;

    fn loaded(text: &str) -> WriterSchema {
        let dir = tempfile::tempdir().unwrap();
        WriterSchema::load(&file(&dir, "r.avsc", text)).unwrap()
    }

    #[test]
    fn records_read_back_as_written_and_are_plain_datums() {
        let schema = loaded(&reading(FITS));
        schema.check::<Reading>().unwrap();
        let record = Reading {
            id: 3,
            letter: 'b',
            name: "W".into(),
        };
        let mut bytes = b"x".to_vec();
        schema.encode(&record, &mut bytes).unwrap();
        // Zigzag varint 3, then each string as its length (zigzag) and bytes.
        assert_eq!(bytes, b"x\x06\x02b\x02W");
        assert_eq!(schema.decode::<Reading>(&bytes[1..]).unwrap(), record);
    }

    #[test]
    fn a_missing_or_invalid_schema_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.avsc");
        let error = WriterSchema::load(&missing).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("Avro schema {}: No such file", missing.display())),
            "{error}"
        );
        let invalid = file(&dir, "bad.avsc", r#"{"type": "record", "name": "R"}"#);
        let error = WriterSchema::load(&invalid).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "Avro schema {}: not a valid schema: ",
                invalid.display()
            )),
            "{error}"
        );
        assert!(matches!(WriterSchema::load(&invalid), Err(Error::Usage(_))));
    }

    #[test]
    fn a_schema_that_cannot_carry_the_record_is_refused_saying_why() {
        let table = [
            (r#""long""#.to_string(), "the schema is long, not a record"),
            (
                reading(FITS).replace("Reading", "Readings"),
                r#"the record is named "Readings", not "Reading""#,
            ),
            (
                reading(r#"{"name": "id", "type": "long"}, {"name": "name", "type": "string"}"#),
                r#"field "letter" is missing"#,
            ),
            (
                reading(&FITS.replace("long", "int")),
                r#"field "id" is int, not long"#,
            ),
            (
                reading(&format!(r#"{FITS}, {{"name": "extra", "type": "long"}}"#)),
                "extra",
            ),
        ];
        for (text, reason) in table {
            let error = loaded(&text).check::<Reading>().unwrap_err().to_string();
            assert!(
                error.contains(
                    "does not fit records Reading {id: long, letter: string, name: string}: Avro: "
                ),
                "{error}"
            );
            assert!(error.contains(reason), "{text}: {error}");
        }
        // An extra field with a default is written with it, and ignored on reading.
        let extra = reading(&format!(
            r#"{FITS}, {{"name": "extra", "type": "long", "default": 7}}"#
        ));
        loaded(&extra).check::<Reading>().unwrap();
    }

    #[test]
    fn a_datum_that_is_not_a_record_says_what_is_wrong() {
        let schema = loaded(&reading(FITS));
        let table: [(&[u8], &str); 4] = [
            (b"\x06\x02b", r#"Avro: field "name": "#),
            (
                b"\x06\x02b\x02W\x00",
                "Avro: 1 of 6 bytes left over after the record",
            ),
            (b"\x05\x02b\x02W", r#"Avro: field "id": -3 is negative"#),
            (b"\x06\x04bc\x02W", r#"Avro: field "letter": "#),
        ];
        for (bytes, reason) in table {
            let error = schema.decode::<Reading>(bytes).unwrap_err();
            assert!(error.starts_with(reason), "{bytes:?}: {error}");
        }
    }
}
