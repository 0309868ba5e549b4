//! The records the built-in pipelines read from and write to Kafka, in every
//! format: their text lines, and the fields JSON and Avro carry
//! (`examples/schemas/` has their Avro schemas).

use serde::{Deserialize, Serialize};

use crate::formats::{long, Record};

/// A keyed-sum input record: `key,value`, `{"key": 3, "value": 7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "long")]
    pub key: u64,
    /// The value added to the key's sum.
    #[serde(with = "long")]
    pub value: u64,
}

/// A keyed-sum output record: `key,sum`, `{"key": 3, "sum": 10}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySum {
    /// The key.
    #[serde(with = "long")]
    pub key: u64,
    /// The sum of its values so far.
    #[serde(with = "long")]
    pub sum: u64,
}

/// A keyed-sum output record's Kafka key: `3`, `{"key": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Key")]
pub struct KeyRecord {
    /// The key.
    #[serde(with = "long")]
    pub key: u64,
}

/// A state-machine event: `address,letter`, `{"address": 5, "letter": "a"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Event")]
pub struct EventRecord {
    /// The address.
    #[serde(with = "long")]
    pub address: u64,
    /// The event, `a` to `g` (checked by the state machine's conversion).
    pub letter: char,
}

/// A state-machine alert: `alert address=5 state=W event=c`,
/// `{"address": 5, "state": "W", "event": "c"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Alert")]
pub struct AlertRecord {
    /// The address.
    #[serde(with = "long")]
    pub address: u64,
    /// Its state when the event came: `Initial`, `W` to `Z`, `Terminal`.
    pub state: String,
    /// The event that the state does not allow.
    pub event: char,
}

/// Two unsigned integers `a,b`.
fn pair(line: &str) -> Option<(u64, u64)> {
    let (a, b) = line.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Appends `a,b`.
fn write_pair(a: u64, b: u64, out: &mut Vec<u8>) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(a).as_bytes());
    out.push(b',');
    out.extend_from_slice(buf.format(b).as_bytes());
}

/// The one character of `text`.
fn one_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The largest number every format carries (an Avro long).
const WIDEST: u64 = i64::MAX as u64;

impl Record for KeyValue {
    const TEXT: &'static str = "`key,value` (two unsigned integers)";
    const NAME: &'static str = "KeyValue";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("key", "long"), ("value", "long")];

    fn from_text(line: &str) -> Option<Self> {
        pair(line).map(|(key, value)| KeyValue { key, value })
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        write_pair(self.key, self.value, out);
    }

    fn sample() -> Self {
        KeyValue {
            key: WIDEST,
            value: WIDEST,
        }
    }
}

impl Record for KeySum {
    const TEXT: &'static str = "`key,sum` (two unsigned integers)";
    const NAME: &'static str = "KeySum";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("key", "long"), ("sum", "long")];

    fn from_text(line: &str) -> Option<Self> {
        pair(line).map(|(key, sum)| KeySum { key, sum })
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        write_pair(self.key, self.sum, out);
    }

    fn sample() -> Self {
        KeySum {
            key: WIDEST,
            sum: WIDEST,
        }
    }
}

impl Record for KeyRecord {
    const TEXT: &'static str = "`key` (an unsigned integer)";
    const NAME: &'static str = "Key";
    const FIELDS: &'static [(&'static str, &'static str)] = &[("key", "long")];

    fn from_text(line: &str) -> Option<Self> {
        Some(KeyRecord {
            key: line.trim().parse().ok()?,
        })
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.key).as_bytes());
    }

    fn sample() -> Self {
        KeyRecord { key: WIDEST }
    }
}

impl Record for EventRecord {
    const TEXT: &'static str = "`address,event` (an unsigned integer and a letter a-g)";
    const NAME: &'static str = "Event";
    const FIELDS: &'static [(&'static str, &'static str)] =
        &[("address", "long"), ("letter", "string")];

    fn from_text(line: &str) -> Option<Self> {
        let (address, letter) = line.split_once(',')?;
        Some(EventRecord {
            address: address.parse().ok()?,
            letter: one_char(letter)?,
        })
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.address).as_bytes());
        out.push(b',');
        let mut utf8 = [0; 4];
        out.extend_from_slice(self.letter.encode_utf8(&mut utf8).as_bytes());
    }

    fn sample() -> Self {
        EventRecord {
            address: WIDEST,
            letter: 'g',
        }
    }
}

impl Record for AlertRecord {
    const TEXT: &'static str = "`alert address=N state=S event=E`";
    const NAME: &'static str = "Alert";
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("address", "long"),
        ("state", "string"),
        ("event", "string"),
    ];

    fn from_text(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("alert ")?.split(' ');
        let mut field = |name: &str| words.next()?.strip_prefix(name)?.strip_prefix('=');
        let address = field("address")?.parse().ok()?;
        let state = field("state")?.to_string();
        let event = one_char(field("event")?)?;
        Some(AlertRecord {
            address,
            state,
            event,
        })
    }

    fn write_text(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"alert address=");
        out.extend_from_slice(itoa::Buffer::new().format(self.address).as_bytes());
        out.extend_from_slice(b" state=");
        out.extend_from_slice(self.state.as_bytes());
        out.extend_from_slice(b" event=");
        let mut utf8 = [0; 4];
        out.extend_from_slice(self.event.encode_utf8(&mut utf8).as_bytes());
    }

    fn sample() -> Self {
        AlertRecord {
            address: WIDEST,
            state: "Terminal".into(),
            event: 'g',
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::formats::{Format, FormatName};

    /// A schema shipped in `examples/schemas/`.
    fn schema(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/schemas/{name}.avsc"))
    }

    /// Every format, Avro with the shipped schema `avsc`.
    fn formats<T: Record>(avsc: &str) -> [Format; 3] {
        let avro = Format::new::<T>(FormatName::Avro, Some(&schema(avsc)), "--f", "--s").unwrap();
        [Format::Text, Format::Json, avro]
    }

    fn round_trip<T: Record + Clone>(avsc: &str, records: &[T]) {
        for format in formats::<T>(avsc) {
            for record in records {
                let mut bytes = Vec::new();
                format.encode("encode", record, &mut bytes).unwrap();
                let back: T = format.decode("records", Some(&bytes)).unwrap();
                assert_eq!(&back, record, "{format:?}");
            }
        }
    }

    #[test]
    fn every_record_reads_back_in_every_format_with_the_shipped_schemas() {
        round_trip(
            "keyed-sum-input",
            &[
                KeyValue { key: 0, value: 0 },
                KeyValue {
                    key: 49,
                    value: 123_456_789,
                },
                KeyValue::sample(),
            ],
        );
        round_trip(
            "keyed-sum-output",
            &[
                KeySum {
                    key: 7,
                    sum: 1 << 40,
                },
                KeySum::sample(),
            ],
        );
        round_trip(
            "keyed-sum-key",
            &[KeyRecord { key: 0 }, KeyRecord::sample()],
        );
        round_trip(
            "state-machine-event",
            &[EventRecord {
                address: 3 << 48,
                letter: 'a',
            }],
        );
        round_trip(
            "state-machine-alert",
            &[
                AlertRecord {
                    address: 17,
                    state: "Initial".into(),
                    event: 'e',
                },
                AlertRecord::sample(),
            ],
        );
    }

    #[test]
    fn text_lines_are_the_pipelines_lines() {
        let line = |record: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            record(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(&|o| KeyValue { key: 3, value: 70 }.write_text(o)),
            "3,70"
        );
        assert_eq!(line(&|o| KeySum { key: 3, sum: 71 }.write_text(o)), "3,71");
        assert_eq!(line(&|o| KeyRecord { key: 3 }.write_text(o)), "3");
        assert_eq!(
            line(&|o| EventRecord {
                address: 9,
                letter: 'g'
            }
            .write_text(o)),
            "9,g"
        );
        let alert = AlertRecord {
            address: 9,
            state: "W".into(),
            event: 'a',
        };
        assert_eq!(
            line(&|o| alert.write_text(o)),
            "alert address=9 state=W event=a"
        );
        assert_eq!(
            KeyValue::from_text(" 3 , 70"),
            Some(KeyValue { key: 3, value: 70 })
        );
        assert_eq!(EventRecord::from_text("9,gh"), None);
        assert_eq!(AlertRecord::from_text("alert address=9 state=W"), None);
    }

    #[test]
    fn json_records_have_the_documented_fields() {
        let json = |record: &dyn Fn(&mut Vec<u8>) -> crate::Result<()>| {
            let mut out = Vec::new();
            record(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let f = Format::Json;
        assert_eq!(
            json(&|o| f.encode("e", &KeyValue { key: 3, value: 70 }, o)),
            r#"{"key":3,"value":70}"#
        );
        assert_eq!(
            json(&|o| f.encode("e", &KeySum { key: 3, sum: 71 }, o)),
            r#"{"key":3,"sum":71}"#
        );
        assert_eq!(
            json(&|o| f.encode("e", &KeyRecord { key: 3 }, o)),
            r#"{"key":3}"#
        );
        assert_eq!(
            json(&|o| f.encode(
                "e",
                &EventRecord {
                    address: 9,
                    letter: 'g'
                },
                o
            )),
            r#"{"address":9,"letter":"g"}"#
        );
        let alert = AlertRecord {
            address: 9,
            state: "W".into(),
            event: 'a',
        };
        assert_eq!(
            json(&|o| f.encode("e", &alert, o)),
            r#"{"address":9,"state":"W","event":"a"}"#
        );
    }

    #[test]
    fn a_sum_beyond_a_long_cannot_be_written_as_json_or_avro() {
        let sum = KeySum {
            key: 1,
            sum: u64::MAX,
        };
        for format in &formats::<KeySum>("keyed-sum-output")[1..] {
            let mut out = b"kept".to_vec();
            let error = format
                .encode("encode", &sum, &mut out)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("bad record in encode: "), "{error}");
            assert!(
                error.contains("18446744073709551615 is beyond a long"),
                "{error}"
            );
            if matches!(format, Format::Avro(_)) {
                assert_eq!(out, b"kept", "a failed datum leaves nothing behind");
            }
        }
    }

    #[test]
    fn a_schema_that_does_not_fit_the_record_is_refused_at_start() {
        // The keyed-sum output schema has `sum` where the input has `value`.
        let error = Format::new::<KeyValue>(
            FormatName::Avro,
            Some(&schema("keyed-sum-output")),
            "--input-format",
            "--input-schema",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "keyed-sum-output.avsc does not fit records KeyValue {key: long, value: long}"
            ),
            "{error}"
        );
        assert!(error.contains("value"), "{error}");
    }
}
