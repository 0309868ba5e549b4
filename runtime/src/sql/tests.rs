//! Planning tests: scripts in, streaming plans or named refusals out.

use crate::error::Error;
use crate::sql::explain::explain;
use crate::sql::plan::{Operator, PlanNode, StreamPlan};
use crate::sql::plan_script;

const TABLES: &str = "
CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,
    date_time TIMESTAMP(3), proc AS PROCTIME(),
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json');
CREATE TABLE counts (auction BIGINT, window_end TIMESTAMP(3), bids BIGINT)
    WITH ('connector' = 'kafka', 'topic' = 'counts', 'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json');
CREATE TABLE totals (bidder BIGINT, total BIGINT, PRIMARY KEY (bidder) NOT ENFORCED)
    WITH ('connector' = 'upsert-kafka', 'topic' = 'totals', 'properties.bootstrap.servers' = 'localhost:9092',
          'key.format' = 'json', 'value.format' = 'json');
";

const WINDOWED: &str = "INSERT INTO counts
    SELECT auction, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    WHERE price > 10 GROUP BY auction, window_start, window_end";

fn error(script: &str) -> String {
    match plan_script(&format!("{TABLES}{script}"), None, &[]) {
        Ok(_) => panic!("planned: {script}"),
        Err(Error::Sql(message) | Error::Catalog(weir_catalog::Error::Syntax(message))) => message,
        Err(other) => other.to_string(),
    }
}

fn kinds(script: &str) -> Vec<&'static str> {
    let planned = plan_script(&format!("{TABLES}{script}"), None, &[]).unwrap();
    planned
        .plan
        .nodes
        .iter()
        .map(|n| n.operator.kind())
        .collect()
}

/// The plan's top-N node.
fn top_n(plan: &StreamPlan) -> &PlanNode {
    plan.nodes
        .iter()
        .find(|n| n.operator.kind() == "top-n")
        .expect("a top-N")
}

#[test]
fn a_tumbling_window_count_lowers_to_a_window_aggregate_between_source_and_sink() {
    let planned = plan_script(&format!("{TABLES}{WINDOWED}"), None, &[]).unwrap();
    let kinds: Vec<_> = planned
        .plan
        .nodes
        .iter()
        .map(|n| n.operator.kind())
        .collect();
    // The second projection is DataFusion's cast of the SELECT list to the
    // target table's columns.
    assert_eq!(
        kinds,
        [
            "source",
            "windows",
            "filter",
            "window-aggregate",
            "project",
            "project",
            "sink"
        ]
    );
    let aggregate = &planned.plan.nodes[3];
    let Operator::WindowAggregate {
        spec,
        groups,
        aggregates,
        upstream: None,
        early_fire: None,
    } = &aggregate.operator
    else {
        panic!("{:?}", aggregate.operator);
    };
    assert_eq!(spec.to_string(), "TUMBLE(date_time, 10 s) on event time");
    assert_eq!(crate::sql::plan::window_keys(groups, None).len(), 1);
    assert_eq!(aggregates.len(), 1);
    let text = explain(&planned.plan, &planned.tables);
    assert!(text.contains("INSERT INTO counts (kafka)"), "{text}");
    assert!(
        text.contains("source-bid") && text.contains("watermark date_time - 4 s"),
        "{text}"
    );
    assert!(
        text.contains("state: keyed by bid.auction and window"),
        "{text}"
    );
}

#[test]
fn uids_follow_what_an_operator_computes() {
    let uids = |script: &str| -> Vec<String> {
        let planned = plan_script(&format!("{TABLES}{script}"), None, &[]).unwrap();
        planned.plan.nodes.iter().map(|n| n.uid.clone()).collect()
    };
    assert_eq!(
        uids(WINDOWED),
        uids(WINDOWED),
        "the same query, the same uids"
    );
    let changed = uids(&WINDOWED.replace("INTERVAL '10' SECOND", "INTERVAL '20' SECOND"));
    let before = uids(WINDOWED);
    assert_eq!(
        changed[0], before[0],
        "the source keeps its uid (and offsets)"
    );
    assert_ne!(
        changed[3], before[3],
        "another window is another aggregate's state"
    );
    assert_eq!(
        changed[6], before[6],
        "the sink keeps its uid (and transactions)"
    );
}

#[test]
fn window_kinds_and_processing_time_are_read_from_flink_syntax() {
    let hop = "INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end";
    assert!(kinds(hop).contains(&"window-aggregate"));
    let cumulate = "INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(CUMULATE(DATA => TABLE bid, TIMECOL => DESCRIPTOR(proc), STEP => INTERVAL '1' SECOND, SIZE => INTERVAL '4' SECOND)) GROUP BY auction, window_start, window_end";
    let planned = plan_script(&format!("{TABLES}{cumulate}"), None, &[]).unwrap();
    let text = explain(&planned.plan, &planned.tables);
    assert!(
        text.contains("CUMULATE(proc, step 1 s, size 4 s) on processing time"),
        "{text}"
    );
    let session = "INSERT INTO counts SELECT bidder, window_end, COUNT(*) FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY bidder, window_start, window_end";
    let planned = plan_script(&format!("{TABLES}{session}"), None, &[]).unwrap();
    let text = explain(&planned.plan, &planned.tables);
    assert!(
        text.contains("SESSION(date_time, gap 5 s, partition by bidder)")
            && text.contains("keyed by bid.bidder: each open session's rows"),
        "{text}"
    );
}

#[test]
fn an_unbounded_group_by_is_an_updating_result_only_an_upsert_table_takes() {
    let query = "SELECT bidder, SUM(price) FROM bid GROUP BY bidder";
    assert!(kinds(&format!("INSERT INTO totals {query}")).contains(&"aggregate"));
    let refused = error("INSERT INTO counts SELECT bidder, CAST(NULL AS TIMESTAMP(3)), SUM(price) FROM bid GROUP BY bidder");
    assert!(
        refused.contains(
            "INSERT INTO `counts` (connector 'kafka', append only) cannot take an updating result"
        ),
        "{refused}"
    );
}

#[test]
fn early_firing_makes_a_window_aggregate_updating_and_refuses_sessions() {
    let early = "SET 'table.exec.emit.early-fire.enabled' = 'true';\nSET 'table.exec.emit.early-fire.count' = '100';\n";
    let windows = "SELECT auction, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end";
    let planned = plan_script(
        &format!("{early}{TABLES}INSERT INTO counts {windows}"),
        None,
        &[],
    );
    let refused = match planned {
        Err(Error::Sql(message)) => message,
        other => panic!("{:?}", other.map(|p| p.plan.nodes.len())),
    };
    assert!(
        refused.contains("cannot take an updating result"),
        "{refused}"
    );
    let on_time = plan_script(&format!("{TABLES}INSERT INTO counts {windows}"), None, &[]).unwrap();
    let fired = plan_script(
        &format!("{early}{TABLES}CREATE TABLE latest (auction BIGINT, window_end TIMESTAMP(3), bids BIGINT, PRIMARY KEY (auction, window_end) NOT ENFORCED) WITH ('connector' = 'upsert-kafka', 'topic' = 'latest', 'properties.bootstrap.servers' = 'localhost:9092', 'key.format' = 'json', 'value.format' = 'json');\nINSERT INTO latest {windows}"),
        None,
        &[],
    )
    .unwrap();
    let text = explain(&fired.plan, &fired.tables);
    assert!(
        text.contains("firing early every 100 rows of a group"),
        "{text}"
    );
    // A trigger of its own is another operator, whose state a restore does not mix up.
    let uid = |p: &crate::sql::PlannedScript| {
        p.plan
            .nodes
            .iter()
            .find(|n| n.operator.kind() == "window-aggregate")
            .map(|n| n.uid.clone())
    };
    assert_ne!(uid(&on_time), uid(&fired));
    let session = "INSERT INTO latest SELECT bidder, window_end, COUNT(*) FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY bidder, window_start, window_end";
    let got = match plan_script(&format!("{early}{TABLES}CREATE TABLE latest (bidder BIGINT, window_end TIMESTAMP(3), bids BIGINT, PRIMARY KEY (bidder, window_end) NOT ENFORCED) WITH ('connector' = 'upsert-kafka', 'topic' = 'latest', 'properties.bootstrap.servers' = 'localhost:9092', 'key.format' = 'json', 'value.format' = 'json');\n{session}"), None, &[]) {
        Err(Error::Sql(message)) => message,
        other => panic!("{:?}", other.map(|p| p.plan.nodes.len())),
    };
    assert!(
        got.contains("early firing of SESSION windows is not supported"),
        "{got}"
    );
}

#[test]
fn a_result_that_deletes_rows_goes_into_an_upsert_table_as_tombstones() {
    let outer = "INSERT INTO totals SELECT a.bidder, b.price FROM bid a LEFT JOIN bid b ON a.auction = b.auction";
    assert!(kinds(outer).contains(&"join"));
    let regrouped = "INSERT INTO totals SELECT n, COUNT(*) FROM (SELECT bidder, COUNT(*) AS n FROM bid GROUP BY bidder) GROUP BY n";
    assert_eq!(
        kinds(regrouped)
            .iter()
            .filter(|k| **k == "aggregate")
            .count(),
        2
    );
}

#[test]
fn unsupported_and_wrong_sql_is_refused_by_name() {
    let cases = [
        ("INSERT INTO counts SELECT auction, date_time, price FROM bid ORDER BY price", "ORDER BY is not supported on an unbounded stream"),
        ("INSERT INTO counts SELECT b.auction, b.date_time, c.bids FROM bid b LEFT JOIN counts c ON b.auction = c.auction", "cannot take an updating result (an unbounded GROUP BY, a top-N, an outer join or a window firing early)"),
        ("INSERT INTO counts SELECT auction, date_time, price FROM bid b WHERE EXISTS (SELECT 1 FROM bid c WHERE c.auction = b.auction)", "a subquery in an expression (EXISTS, IN (SELECT ...) or a scalar subquery) is not supported"),
        ("INSERT INTO counts SELECT b.auction, b.date_time, c.bids FROM bid b, counts c WHERE b.price > c.bids", "(a cross join) is not supported"),
        ("INSERT INTO counts SELECT b.auction, b.date_time, t.total FROM bid b JOIN (SELECT bidder, SUM(price) AS total FROM bid GROUP BY bidder) t ON b.bidder = t.bidder", "cannot take an updating result"),
        ("INSERT INTO totals SELECT b.bidder, t.total FROM bid b LEFT JOIN (SELECT bidder, SUM(price) AS total FROM bid GROUP BY bidder) t ON b.bidder = t.bidder", "JOIN (Left) of an updating result"),
        ("INSERT INTO counts SELECT auction, date_time, nope FROM bid", "nope"),
        ("INSERT INTO counts SELECT auction, date_time, price FROM nowhere", "table `nowhere` is neither in the catalog nor created in the script"),
        ("INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(price), INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end", "DESCRIPTOR(price) is not a time attribute of `bid`"),
        ("INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '3' SECOND, INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end", "HOP's size (10 s) must be a multiple of its slide (3 s)"),
        ("INSERT INTO counts SELECT auction, MAX(window_end), COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY auction", "must group by window_start and window_end"),
        ("INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' MONTH)) GROUP BY auction, window_start, window_end", "not a fixed length of time"),
        ("INSERT INTO counts SELECT bidder, window_end, price FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '5' SECOND))", "these windows are supported only under GROUP BY window_start, window_end"),
        ("INSERT INTO counts SELECT auction, window_end, price FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(proc), INTERVAL '5' SECOND))", "TUMBLE(proc, 5 s) on processing time: these windows are supported only under GROUP BY"),
        ("INSERT INTO counts SELECT auction, window_end, COUNT(*) FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY auction, window_start, window_end", "GROUP BY must include the PARTITION BY column `bidder`"),
        ("SELECT * FROM bid", "is neither"),
        ("DROP TABLE bid", "is neither"),
        ("INSERT INTO counts SELECT auction,, price FROM bid", "Expected"),
    ];
    for (script, message) in cases {
        let got = error(script);
        assert!(
            got.contains(message),
            "{script}\n  wanted: {message}\n  got: {got}"
        );
    }
    assert!(error("").contains("no INSERT INTO"));
}

#[test]
fn where_a_tvf_mistake_is_is_said() {
    let got = error("INSERT INTO counts SELECT auction, window_end, COUNT(*)\nFROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(price), INTERVAL '10' SECOND))\nGROUP BY auction, window_start, window_end");
    assert!(got.contains("Line: 13, Column: 12"), "{got}");
    let got = error("INSERT INTO counts SELECT auction, date_time, price FROM bid\nORDER BY price");
    assert!(
        got.contains("ORDER BY is not supported") && got.contains("Line: 13"),
        "{got}"
    );
}

#[test]
fn an_inner_join_lowers_to_one_join_of_its_two_aliased_inputs() {
    let planned = plan_script(
        &format!(
            "{TABLES}INSERT INTO counts SELECT a.auction, a.date_time, b.price FROM bid a \
             JOIN bid b ON a.auction = b.auction AND a.price < b.price"
        ),
        None,
        &[],
    )
    .unwrap();
    let nodes = &planned.plan.nodes;
    let join = nodes
        .iter()
        .find(|n| n.operator.kind() == "join")
        .expect("a join");
    let [left, right] = join.inputs[..] else {
        panic!("two inputs: {:?}", join.inputs)
    };
    assert_ne!(left, right, "each alias of bid is its own node");
    assert_eq!(nodes[nodes[left].inputs[0]].uid, "source-bid");
    assert_eq!(nodes[left].inputs, nodes[right].inputs, "one source");
    let Operator::Join { on, filter, .. } = &join.operator else {
        unreachable!()
    };
    assert_eq!(on.len(), 1);
    assert_eq!(
        filter.as_ref().map(ToString::to_string).as_deref(),
        Some("a.price < b.price")
    );
}

#[test]
fn a_bounded_row_number_lowers_to_a_top_n_that_keeps_the_bound() {
    let planned = plan_script(
        &format!(
            "{TABLES}INSERT INTO totals SELECT bidder, price FROM (SELECT bidder, price, \
             ROW_NUMBER() OVER (PARTITION BY bidder ORDER BY price DESC) AS rn FROM bid) WHERE rn < 4"
        ),
        None,
        &[],
    )
    .unwrap();
    let top = top_n(&planned.plan);
    assert!(top.updating);
    let Operator::TopN { limit, order, .. } = &top.operator else {
        unreachable!()
    };
    assert_eq!(*limit, 3);
    assert!(!order[0].asc);
    assert!(
        !planned
            .plan
            .nodes
            .iter()
            .any(|n| n.operator.kind() == "filter"),
        "the rank filter is the top-N's"
    );
}

#[test]
fn a_group_by_of_a_window_results_windows_is_a_window_aggregate_on_event_time_only() {
    let per_window = |time: &str| {
        format!(
            "INSERT INTO counts SELECT MAX(n), c.e, COUNT(*) FROM (
               SELECT COUNT(*) AS n, window_start AS s, window_end AS e
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR({time}), INTERVAL '10' SECOND))
               GROUP BY auction, window_start, window_end) AS c
             GROUP BY c.s, c.e"
        )
    };
    assert!(
        kinds(&per_window("date_time"))
            .iter()
            .filter(|k| **k == "window-aggregate")
            .count()
            == 2
    );
    let refused = error(&per_window("proc"));
    assert!(
        refused.contains("GROUP BY the windows of a window aggregate over TUMBLE(proc, 10 s) on processing time: supported on event time only"),
        "{refused}"
    );
}

#[test]
fn a_join_bounded_both_ways_in_event_time_is_an_interval_join_and_one_bound_is_not() {
    let script = |bounds: &str| {
        format!(
            "INSERT INTO counts SELECT a.auction, a.date_time, b.price FROM bid a JOIN bid b
             ON a.auction = b.auction AND {bounds}"
        )
    };
    let state = |bounds: &str| {
        let planned = plan_script(&format!("{TABLES}{}", script(bounds)), None, &[]).unwrap();
        explain(&planned.plan, &planned.tables)
    };
    let interval = state("b.date_time BETWEEN a.date_time - INTERVAL '2' SECOND AND a.date_time + INTERVAL '1' MINUTE");
    assert!(
        interval.contains("an interval join: left rows until the watermark reaches a.date_time + 60000 ms, right rows until the watermark reaches b.date_time + 2000 ms"),
        "{interval}"
    );
    let one_bound = state("b.date_time >= a.date_time");
    assert!(one_bound.contains("for ever"), "{one_bound}");
    let processing_time = state("b.proc BETWEEN a.proc AND a.proc + INTERVAL '1' MINUTE");
    assert!(processing_time.contains("for ever"), "{processing_time}");
    // A bound of one side's other time column needs the other side's event
    // time: rows to come are later than the watermark only there.
    let wrong_way =
        state("b.date_time <= a.date_time + INTERVAL '1' MINUTE AND b.date_time >= a.proc");
    assert!(wrong_way.contains("for ever"), "{wrong_way}");
}

#[test]
fn a_join_of_bids_with_the_windows_maxima_forgets_each_bid_after_its_windows() {
    // Nexmark's q7: the window end counts as event time, since a window's row
    // comes before the watermark passes its end.
    let script = format!(
        "{TABLES}INSERT INTO counts SELECT b.auction, m.window_end, b.price FROM bid b JOIN (
           SELECT MAX(price) AS maxprice, window_end
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end) m
         ON b.price = m.maxprice
         WHERE b.date_time BETWEEN m.window_end - INTERVAL '10' SECOND AND m.window_end"
    );
    let planned = plan_script(&script, None, &[]).unwrap();
    let plan = explain(&planned.plan, &planned.tables);
    assert!(
        plan.contains("an interval join: left rows until the watermark reaches b.date_time + 10000 ms, right rows until the watermark reaches m.window_end"),
        "{plan}"
    );
}

#[test]
fn only_a_result_whose_sinks_read_old_rows_emits_them() {
    let top = "SELECT bidder, price FROM (SELECT bidder, price, \
               ROW_NUMBER() OVER (PARTITION BY bidder ORDER BY price DESC) AS rn FROM bid) WHERE rn <= 1";
    let printed =
        "CREATE TABLE printed (bidder BIGINT, price BIGINT) WITH ('connector' = 'print');";
    let update_before = |inserts: &str| {
        let planned = plan_script(&format!("{TABLES}{printed}{inserts}"), None, &[]).unwrap();
        top_n(&planned.plan).update_before
    };
    // An upsert table writes each key's new row: the old ones are not sent.
    assert!(!update_before(&format!("INSERT INTO totals {top};")));
    // A filter must see them: an update whose new row it drops retracts the old.
    assert!(update_before(&format!(
        "INSERT INTO totals SELECT * FROM ({top}) WHERE price > 10;"
    )));
    // The print connector shows every change.
    assert!(update_before(&format!("INSERT INTO printed {top};")));
    assert!(update_before(&format!(
        "INSERT INTO totals {top}; INSERT INTO printed {top};"
    )));
}
