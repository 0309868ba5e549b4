//! Checks that a table holds together: names, the watermark column, the key,
//! and each connector's options against what that connector takes.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::table::{is_valid_name, ColumnOrigin, Table};

/// What a connector takes in `WITH (...)`.
struct ConnectorSpec {
    /// Its `'connector'` value.
    name: &'static str,
    /// Options it cannot do without.
    required: &'static [&'static str],
    /// Options it takes besides, with the values allowed (empty: any).
    optional: &'static [(&'static str, &'static [&'static str])],
    /// Prefixes of options passed through as they are (`properties.`: the Kafka client's).
    passthrough: &'static [&'static str],
    /// Whether the table must declare a `PRIMARY KEY`.
    needs_key: bool,
}

/// The formats a record's value or key may have.
const FORMATS: &[&str] = &["json", "avro"];

/// Options every Kafka connector takes.
const KAFKA_OPTIONS: &[(&str, &[&str])] = &[
    ("format", FORMATS),
    ("value.format", FORMATS),
    ("key.format", FORMATS),
    ("key.fields", &[]),
    ("avro.schema", &[]),
    ("properties.group.id", &[]),
    (
        "scan.startup.mode",
        &[
            "earliest-offset",
            "latest-offset",
            "group-offsets",
            "timestamp",
        ],
    ),
    ("scan.startup.timestamp-millis", &[]),
    ("scan.bounded.mode", &["unbounded", "latest-offset"]),
    ("scan.topic-partition-discovery.interval", &[]),
    (
        "sink.delivery-guarantee",
        &["exactly-once", "at-least-once", "none"],
    ),
    ("sink.transactional-id-prefix", &[]),
    ("discriminator.field", &[]),
    ("discriminator.value", &[]),
];

/// Every connector a table may name.
const CONNECTORS: &[ConnectorSpec] = &[
    ConnectorSpec {
        name: "kafka",
        required: &["topic", "properties.bootstrap.servers"],
        optional: KAFKA_OPTIONS,
        passthrough: &["properties."],
        needs_key: false,
    },
    ConnectorSpec {
        name: "upsert-kafka",
        required: &[
            "topic",
            "properties.bootstrap.servers",
            "key.format",
            "value.format",
        ],
        optional: KAFKA_OPTIONS,
        passthrough: &["properties."],
        needs_key: true,
    },
    ConnectorSpec {
        name: "filesystem",
        required: &["path", "format"],
        optional: &[("format", &["json"])],
        passthrough: &[],
        needs_key: false,
    },
    ConnectorSpec {
        name: "print",
        required: &[],
        optional: &[("print-identifier", &[])],
        passthrough: &[],
        needs_key: false,
    },
    ConnectorSpec {
        name: "blackhole",
        required: &[],
        optional: &[],
        passthrough: &[],
        needs_key: false,
    },
    ConnectorSpec {
        name: "nexmark",
        required: &["kind"],
        optional: &[
            ("kind", &["person", "auction", "bid"]),
            ("events.num", &[]),
            ("events.per-second", &[]),
            ("seed", &[]),
            ("delayed.per-mille", &[]),
            ("delayed.max-ms", &[]),
            ("rate-limit", &[]),
        ],
        passthrough: &[],
        needs_key: false,
    },
];

/// Checks `table`, naming the first thing wrong with it.
pub fn validate(table: &Table) -> Result<()> {
    let name = &table.name;
    if !is_valid_name(name) {
        return Err(Error::invalid(
            name,
            "a table name is lower-case letters, digits and `_`, starting with a letter or `_`",
        ));
    }
    if table.columns.is_empty() {
        return Err(Error::invalid(name, "a table needs at least one column"));
    }
    let mut seen = HashSet::new();
    for column in &table.columns {
        if !seen.insert(column.name.to_ascii_lowercase()) {
            return Err(Error::invalid(
                name,
                format!("column `{}` is declared twice", column.name),
            ));
        }
    }
    if let Some(watermark) = &table.watermark {
        let column = table.column(&watermark.column).ok_or_else(|| {
            Error::invalid(
                name,
                format!(
                    "the watermark column `{}` is not a column",
                    watermark.column
                ),
            )
        })?;
        if !column.data_type.is_timestamp() || column.origin == ColumnOrigin::ProcessingTime {
            return Err(Error::invalid(
                name,
                format!(
                    "the watermark column `{}` must be a TIMESTAMP(3) or TIMESTAMP_LTZ(3) event-time column, not {}",
                    column.name, column.data_type
                ),
            ));
        }
    }
    for key in &table.primary_key {
        if table.column(key).is_none() {
            return Err(Error::invalid(
                name,
                format!("the key column `{key}` is not a column"),
            ));
        }
    }
    options(table)
}

/// Checks the `WITH (...)` options against the connector's spec.
fn options(table: &Table) -> Result<()> {
    let name = &table.name;
    let connector = table.option("connector").ok_or_else(|| {
        Error::invalid(name, "WITH ('connector' = ...) is missing: kafka, upsert-kafka, filesystem, print, blackhole or nexmark")
    })?;
    let spec = CONNECTORS
        .iter()
        .find(|s| s.name == connector)
        .ok_or_else(|| {
            let known: Vec<_> = CONNECTORS.iter().map(|s| s.name).collect();
            Error::invalid(
                name,
                format!(
                    "unknown connector '{connector}' (known: {})",
                    known.join(", ")
                ),
            )
        })?;
    for required in spec.required {
        if table.option(required).is_none() {
            return Err(Error::invalid(
                name,
                format!("connector '{connector}' needs option '{required}'"),
            ));
        }
    }
    for (key, value) in &table.options {
        let checked = spec.optional.iter().find(|(k, _)| k == key);
        let required = spec.required.contains(&key.as_str());
        let passed = spec
            .passthrough
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if key == "connector" || (required && checked.is_none()) || passed {
            continue;
        }
        let Some((_, allowed)) = checked else {
            return Err(Error::invalid(
                name,
                format!("connector '{connector}' does not take option '{key}'"),
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(Error::invalid(
                name,
                format!(
                    "option '{key}' is '{value}', but must be one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    if spec.needs_key && table.primary_key.is_empty() {
        return Err(Error::invalid(
            name,
            format!("connector '{connector}' needs a PRIMARY KEY (...) NOT ENFORCED"),
        ));
    }
    kafka_rules(table)
}

/// The rules between Kafka options: a startup timestamp for `timestamp` mode,
/// a discriminator as a field and a value together, on a column.
fn kafka_rules(table: &Table) -> Result<()> {
    let name = &table.name;
    if table.connector() == "kafka" && table.format().is_none() {
        return Err(Error::invalid(
            name,
            "connector 'kafka' needs option 'format' (or 'value.format'): json or avro",
        ));
    }
    if table.option("scan.startup.mode") == Some("timestamp") {
        let millis = table.option("scan.startup.timestamp-millis");
        if millis.and_then(|m| m.parse::<u64>().ok()).is_none() {
            return Err(Error::invalid(
                name,
                "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis' in milliseconds since the epoch",
            ));
        }
    }
    match (table.option("discriminator.field"), table.option("discriminator.value")) {
        (None, None) => Ok(()),
        (Some(field), Some(_)) if table.column(field).is_some() => Ok(()),
        (Some(field), Some(_)) => Err(Error::invalid(
            name,
            format!("the discriminator field `{field}` is not a column"),
        )),
        _ => Err(Error::invalid(
            name,
            "'discriminator.field' and 'discriminator.value' go together: the field that tells the message structures apart, and this table's value of it",
        )),
    }
}
