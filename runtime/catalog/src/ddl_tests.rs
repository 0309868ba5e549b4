//! Tests of `CREATE TABLE` reading, checking and printing.

use crate::ddl::{parse_script, parse_table, ScriptStatement};
use crate::render::render;
use crate::table::ColumnOrigin;
use crate::types::ColumnType;

const BIDS: &str = r#"
CREATE TABLE bids (
    auction BIGINT NOT NULL COMMENT 'the auction bid on',
    bidder BIGINT,
    price DECIMAL(12, 2),
    `date_time` TIMESTAMP(3),
    kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
    proc AS PROCTIME(),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND,
    PRIMARY KEY (auction) NOT ENFORCED
) COMMENT 'Nexmark bids' WITH (
    'connector' = 'kafka',
    'topic' = 'bids',
    'properties.bootstrap.servers' = 'localhost:9092',
    'properties.client.id' = 'weir',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
)"#;

fn error_of(sql: &str) -> String {
    parse_table(sql).unwrap_err().to_string()
}

#[test]
fn a_flink_create_table_reads_with_its_watermark_key_and_options() {
    let table = parse_table(BIDS).unwrap();
    assert_eq!(table.name, "bids");
    let columns: Vec<_> = table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.to_string(), c.nullable))
        .collect();
    assert_eq!(
        columns,
        [
            ("auction", "BIGINT".to_string(), false),
            ("bidder", "BIGINT".to_string(), true),
            ("price", "DECIMAL(12, 2)".to_string(), true),
            ("date_time", "TIMESTAMP(3)".to_string(), true),
            ("kafka_time", "TIMESTAMP_LTZ(3)".to_string(), true),
            ("proc", "TIMESTAMP_LTZ(3)".to_string(), false),
        ]
    );
    assert_eq!(
        table.columns[4].origin,
        ColumnOrigin::Metadata("timestamp".to_string())
    );
    assert_eq!(table.columns[5].origin, ColumnOrigin::ProcessingTime);
    assert_eq!(
        table.columns[0].comment.as_deref(),
        Some("the auction bid on")
    );
    let watermark = table.watermark.as_ref().unwrap();
    assert_eq!(
        (watermark.column.as_str(), watermark.delay_ms),
        ("date_time", 4_000)
    );
    assert_eq!(table.primary_key, ["auction"]);
    assert_eq!(table.option("topic"), Some("bids"));
    assert_eq!(table.comment.as_deref(), Some("Nexmark bids"));
}

#[test]
fn a_printed_table_reads_back_as_itself() {
    let table = parse_table(BIDS).unwrap();
    let printed = render(&table);
    assert_eq!(parse_table(&printed).unwrap(), table, "{printed}");
    let quoted = parse_table(&BIDS.replace("'Nexmark bids'", "'it''s `odd`'")).unwrap();
    assert_eq!(parse_table(&render(&quoted)).unwrap(), quoted);
}

#[test]
fn a_script_splits_into_tables_and_other_statements() {
    let script =
        format!("{BIDS};\nINSERT INTO out SELECT auction FROM bids WHERE price > 10;\n;SELECT 1");
    let statements = parse_script(&script).unwrap();
    assert_eq!(statements.len(), 3);
    assert!(matches!(&statements[0], ScriptStatement::CreateTable(t) if t.name == "bids"));
    assert!(
        matches!(&statements[1], ScriptStatement::Other(s) if s.to_string().starts_with("INSERT INTO out"))
    );
    let error = parse_script("SELECT 1 SELECT 2").unwrap_err().to_string();
    assert!(error.contains("Line: 1, Column: 10"), "{error}");
}

#[test]
fn syntax_errors_name_the_construct_and_its_place() {
    let cases = [
        (
            BIDS.replace("date_time - INTERVAL '4' SECOND", "date_time + 1"),
            "is not supported",
            "Line: 9",
        ),
        (BIDS.replace("NOT ENFORCED", ""), "NOT ENFORCED", "Line: 10"),
        (
            BIDS.replace("PROCTIME()", "UPPER(bidder)"),
            "computed column `proc`",
            "Line: 8",
        ),
        (
            BIDS.replace("DECIMAL(12, 2)", "DECIMAL(50, 2)"),
            "DECIMAL precision must be between 1 and 38",
            "Line: 5",
        ),
        (
            BIDS.replace("'topic' = 'bids',", "'topic' = 'bids', 'topic' = 'x',"),
            "option 'topic' is given twice",
            "Line: 13",
        ),
        (
            BIDS.replace("BIGINT,", "UUID,"),
            "unsupported column type UUID",
            "Line: 4",
        ),
    ];
    for (sql, message, place) in cases {
        let error = error_of(&sql);
        assert!(
            error.contains(message) && error.contains(place),
            "{message}: {error}"
        );
    }
}

#[test]
fn tables_that_do_not_hold_together_are_refused_by_name() {
    let cases = [
        (
            BIDS.replace("FOR date_time AS date_time", "FOR nope AS nope"),
            "the watermark column `nope` is not a column",
        ),
        (
            BIDS.replace("AS date_time - INTERVAL", "AS bidder - INTERVAL")
                .replace("FOR date_time", "FOR bidder"),
            "must be a TIMESTAMP(3)",
        ),
        (
            BIDS.replace("PRIMARY KEY (auction)", "PRIMARY KEY (nope)"),
            "the key column `nope` is not a column",
        ),
        (
            BIDS.replace("bidder BIGINT", "auction BIGINT"),
            "column `auction` is declared twice",
        ),
        (
            BIDS.replace("'kafka'", "'kafak'"),
            "unknown connector 'kafak'",
        ),
        (
            BIDS.replace("'topic' = 'bids',", ""),
            "connector 'kafka' needs option 'topic'",
        ),
        (
            BIDS.replace("'format' = 'json'", "'format' = 'csv'"),
            "option 'format' is 'csv', but must be one of: json, avro",
        ),
        (
            BIDS.replace("'format' = 'json'", "'fromat' = 'json'"),
            "does not take option 'fromat'",
        ),
        (
            BIDS.replace("'earliest-offset'", "'timestamp'"),
            "needs 'scan.startup.timestamp-millis'",
        ),
        (
            BIDS.replace(
                "'connector' = 'kafka'",
                "'connector' = 'upsert-kafka', 'key.format' = 'json'",
            )
            .replace("PRIMARY KEY (auction) NOT ENFORCED", "WATERMARK FOR x AS x")
            .replace(
                ",\n    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND",
                "",
            ),
            "watermark column `x`",
        ),
        (
            BIDS.replace("TABLE bids", "TABLE Bids"),
            "a table name is lower-case",
        ),
        (
            BIDS.replace(
                "'format' = 'json'",
                "'format' = 'json', 'discriminator.field' = 'kind'",
            ),
            "go together",
        ),
    ];
    for (sql, message) in cases {
        let error = error_of(&sql);
        assert!(error.contains(message), "{message}: {error}");
    }
}

#[test]
fn an_upsert_table_needs_a_key() {
    let sql = BIDS
        .replace(
            "'connector' = 'kafka'",
            "'connector' = 'upsert-kafka', 'key.format' = 'json', 'value.format' = 'json'",
        )
        .replace("'format' = 'json'", "'properties.acks' = 'all'")
        .replace(",\n    PRIMARY KEY (auction) NOT ENFORCED", "");
    assert!(
        error_of(&sql).contains("connector 'upsert-kafka' needs a PRIMARY KEY"),
        "{}",
        error_of(&sql)
    );
}

#[test]
fn nested_types_and_timestamps_with_zones_read() {
    let table = parse_table(
        "CREATE TABLE t (a ARRAY<ROW<x INT, y MAP<STRING, ARRAY<BIGINT>>>>, b TIMESTAMP(3) WITH LOCAL TIME ZONE) WITH ('connector' = 'blackhole')",
    )
    .unwrap();
    assert_eq!(
        table.columns[1].data_type,
        ColumnType::TimestampLtz { precision: 3 }
    );
    assert_eq!(
        table.columns[0].data_type.to_string(),
        "ARRAY<ROW<`x` INT, `y` MAP<STRING, ARRAY<BIGINT>>>>"
    );
}

#[test]
fn a_quoted_set_is_a_setting_of_the_script() {
    let statements =
        parse_script("SET 'table.exec.state.ttl' = '1 h';\nINSERT INTO out SELECT * FROM bid")
            .unwrap();
    assert!(matches!(&statements[0], ScriptStatement::Set { key, value }
        if key == "table.exec.state.ttl" && value == "1 h"));
    let error = parse_script("SET 'table.exec.state.ttl' '1 h'").unwrap_err();
    assert!(error.to_string().contains("Expected: ="), "{error}");
}
