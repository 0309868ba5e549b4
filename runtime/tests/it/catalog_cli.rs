//! `weir catalog` as a user runs it: tables registered from DDL and inferred
//! from samples and schemas, and every mistake refused with a message that
//! names it, leaving the catalog as it was.

use std::fs;
use std::path::Path;

use weir_catalog::{parse_table, ColumnType};

use crate::support::{assert_ok, run_in, stderr};

/// Writes `text` to `name` in `dir` and returns its path as a string.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

const ORDERS: &str =
    "CREATE TABLE orders (id BIGINT NOT NULL, total DECIMAL(10, 2), at TIMESTAMP(3), \
    WATERMARK FOR at AS at - INTERVAL '1' SECOND) WITH ('connector' = 'kafka', 'topic' = 'orders', \
    'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json')";

#[test]
fn a_table_from_ddl_is_stored_as_ddl_and_shown_listed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ddl = file(dir.path(), "orders.sql", ORDERS);
    assert_ok(&run_in(dir.path(), &["catalog", "add", "-f", &ddl]));
    let stored = fs::read_to_string(dir.path().join("catalog/orders.sql")).unwrap();
    assert_eq!(parse_table(&stored).unwrap(), parse_table(ORDERS).unwrap());

    let shown = run_in(dir.path(), &["catalog", "show", "orders"]);
    assert_ok(&shown);
    assert_eq!(String::from_utf8_lossy(&shown.stdout), stored);
    let listed = run_in(dir.path(), &["catalog", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("orders") && listed.contains("total DECIMAL(10, 2)"),
        "{listed}"
    );

    let again = run_in(dir.path(), &["catalog", "add", "-f", &ddl]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("table `orders` is already in the catalog"),
        "{}",
        stderr(&again)
    );

    assert_ok(&run_in(dir.path(), &["catalog", "drop", "orders"]));
    let gone = run_in(dir.path(), &["catalog", "show", "orders"]);
    assert!(
        stderr(&gone).contains("no table `orders` in the catalog"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn mistakes_are_named_and_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            ORDERS.replace("INTERVAL '1' SECOND", "INTERVAL '1' MONTH"),
            "not a fixed length of time",
        ),
        (
            ORDERS.replace("'json'", "'xml'"),
            "option 'format' is 'xml', but must be one of: json, avro",
        ),
        (
            ORDERS.replace("at TIMESTAMP(3)", "at STRING"),
            "must be a TIMESTAMP(3) or TIMESTAMP_LTZ(3)",
        ),
        (
            ORDERS.replace("BIGINT NOT NULL", "BIGNUM"),
            "unsupported column type BIGNUM at Line: 1, Column: 25",
        ),
    ];
    for (ddl, message) in cases {
        let path = file(dir.path(), "bad.sql", &ddl);
        let out = run_in(dir.path(), &["catalog", "add", "-f", &path]);
        assert!(!out.status.success(), "{message}");
        assert!(
            stderr(&out).contains(message),
            "{message}: {}",
            stderr(&out)
        );
    }
    let sample = file(dir.path(), "sample.json", "{\"a\": 1}\nnot json\n");
    let out = run_in(
        dir.path(),
        &[
            "catalog", "add", "--name", "s", "--topic", "s", "--sample", &sample,
        ],
    );
    assert!(
        stderr(&out).contains("cannot infer columns from") && stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.path().join("catalog").exists(),
        "a refused table left files behind"
    );
}

#[test]
fn a_topic_of_several_structures_registers_a_table_per_structure() {
    let dir = tempfile::tempdir().unwrap();
    let sample = file(
        dir.path(),
        "events.jsonl",
        "{\"type\": \"view\", \"page\": \"/\", \"at\": \"2026-12-01T10:00:00Z\"}\n\
         {\"type\": \"buy\", \"sku\": \"a\", \"qty\": 2, \"at\": \"2026-12-01T10:00:01Z\"}\n",
    );
    let args = ["catalog", "add", "--topic", "events", "--sample", &sample];
    let out = run_in(
        dir.path(),
        &[
            &args[..],
            &[
                "--name",
                "events",
                "--discriminator",
                "type",
                "--watermark",
                "at - 3s",
            ],
        ]
        .concat(),
    );
    assert_ok(&out);
    let catalog = weir_catalog::Catalog::new(dir.path().join("catalog"));
    let names: Vec<_> = catalog
        .list()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["events_buy", "events_view"]);
    let buy = catalog.get("events_buy").unwrap();
    assert_eq!(buy.option("discriminator.value"), Some("buy"));
    assert_eq!(
        buy.column("qty").map(|c| &c.data_type),
        Some(&ColumnType::BigInt)
    );
    assert!(
        buy.column("page").is_none(),
        "a column of the other structure"
    );
    assert_eq!(buy.watermark.as_ref().map(|w| w.delay_ms), Some(3_000));

    let out = run_in(
        dir.path(),
        &[
            &args[..],
            &["--name", "x", "--discriminator", "type=view", "--dry-run"],
        ]
        .concat(),
    );
    assert_ok(&out);
    let printed = parse_table(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        (printed.name.as_str(), printed.option("discriminator.value")),
        ("x", Some("view"))
    );
}

#[test]
fn an_avro_schema_registers_an_avro_table_that_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let schema = crate::support::manifest_dir().join("../examples/schemas/keyed-sum-input.avsc");
    let schema = schema.to_string_lossy();
    let out = run_in(
        dir.path(),
        &[
            "catalog",
            "add",
            "--name",
            "sums",
            "--topic",
            "sums",
            "--avro-schema",
            &schema,
        ],
    );
    assert_ok(&out);
    let table = weir_catalog::Catalog::new(dir.path().join("catalog"))
        .get("sums")
        .unwrap();
    assert_eq!(table.option("format"), Some("avro"));
    assert!(table
        .option("avro.schema")
        .is_some_and(|s| s.contains("\"KeyValue\"")));
    assert_eq!(table.column("key").map(|c| c.nullable), Some(false));
    assert_eq!(
        table.column("value").and_then(|c| c.comment.as_deref()),
        Some("The value, at least 0.")
    );
}
