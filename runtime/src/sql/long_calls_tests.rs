//! weir's own `BIGINT` calls against DataFusion's accumulators (one per
//! group) on the same random rows: the same results after every batch, and
//! states that restore each other.

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, Int64Array};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::DFSchema;
use datafusion_expr::{col, lit, Expr};
use datafusion_functions_aggregate::expr_fn::{count, count_distinct, max, min, sum};

use super::*;
use crate::rng::Rng;
use crate::sql::aggregates::Retraction;
use crate::sql::flink_avg::FlinkAvg;
use crate::sql::group_calls::PerGroup;

fn input() -> Schema {
    Schema::new(vec![Field::new("x", DataType::Int64, true)])
}

fn call(expr: Expr) -> AggregateCall {
    let schema = DFSchema::try_from(input()).unwrap();
    AggregateCall::lower(&expr, &schema).unwrap()
}

fn calls() -> Vec<(Expr, LongKind)> {
    vec![
        (count(col("x")), LongKind::Count),
        (count(lit(1i64)), LongKind::Count),
        (sum(col("x")), LongKind::Sum),
        (min(col("x")), LongKind::Min),
        (max(col("x")), LongKind::Max),
        (FlinkAvg::udaf().call(vec![col("x")]), LongKind::Avg),
        (count_distinct(col("x")), LongKind::CountDistinct),
    ]
}

/// A batch of `n` values (a tenth null, some large enough to wrap a sum).
fn values(rng: &mut Rng, n: usize) -> ArrayRef {
    let column: Int64Array = (0..n)
        .map(|_| match rng.below(10) {
            0 => None,
            1 => Some(i64::MAX - rng.below(5) as i64),
            _ => Some(rng.below(40) as i64 - 20),
        })
        .collect();
    Arc::new(column)
}

/// Runs `ours` and `theirs` side by side over random batches of 8 groups,
/// taking rows back too when `retracting`, comparing every result.
fn same_results(ours: &mut dyn GroupCall, theirs: &mut dyn GroupCall, seed: u64, retracting: bool) {
    let mut rng = Rng::new(seed);
    let mut groups = 0;
    for batch in 0..30 {
        let rows = 1 + rng.below(60) as usize;
        let column = values(&mut rng, rows);
        let arguments = [column];
        while groups < 8 && rng.below(3) == 0 || groups == 0 {
            ours.push_group().unwrap();
            theirs.push_group().unwrap();
            groups += 1;
        }
        let row_ids: Vec<u32> = (0..rows as u32).collect();
        let row_groups: Vec<usize> = (0..rows)
            .map(|_| rng.below(groups as u64) as usize)
            .collect();
        ours.update(&arguments, &row_ids, &row_groups, false)
            .unwrap();
        theirs
            .update(&arguments, &row_ids, &row_groups, false)
            .unwrap();
        if retracting {
            // Take back every other row of this batch again.
            let backs: Vec<u32> = row_ids.iter().copied().filter(|r| r % 2 == 0).collect();
            let back_groups: Vec<usize> = backs.iter().map(|&r| row_groups[r as usize]).collect();
            ours.update(&arguments, &backs, &back_groups, true).unwrap();
            theirs
                .update(&arguments, &backs, &back_groups, true)
                .unwrap();
        }
        let all: Vec<usize> = (0..groups).collect();
        assert_eq!(
            ours.results(&all).unwrap().as_ref(),
            theirs.results(&all).unwrap().as_ref(),
            "batch {batch}"
        );
    }
}

#[test]
fn each_call_gives_datafusions_results_and_restores_from_its_state() {
    for (expr, kind) in calls() {
        for seed in 1..4 {
            let call = call(expr.clone());
            let mut ours = LongCall::of(&call, &input(), false).unwrap().unwrap();
            assert_eq!(ours.kind(), kind, "{expr}");
            let mut theirs = PerGroup::new(call.clone(), None);
            same_results(&mut ours, &mut theirs, seed, false);
            // Each restores from the other's state.
            let groups: Vec<usize> = (0..ours.groups()).collect();
            let mut from_theirs = LongCall::of(&call, &input(), false).unwrap().unwrap();
            let mut from_ours = PerGroup::new(call.clone(), None);
            for _ in &groups {
                from_theirs.push_group().unwrap();
                from_ours.push_group().unwrap();
            }
            from_theirs
                .restore(&groups, &theirs.state().unwrap())
                .unwrap();
            from_ours.restore(&groups, &ours.state().unwrap()).unwrap();
            let want = theirs.results(&groups).unwrap();
            assert_eq!(
                from_theirs.results(&groups).unwrap().as_ref(),
                want.as_ref(),
                "{expr}"
            );
            assert_eq!(
                from_ours.results(&groups).unwrap().as_ref(),
                want.as_ref(),
                "{expr}"
            );
        }
    }
}

#[test]
fn count_sum_and_avg_take_rows_back_as_datafusions_accumulators() {
    for (expr, retraction) in [
        (count(col("x")), Retraction::Retract),
        (sum(col("x")), Retraction::Negate),
        (FlinkAvg::udaf().call(vec![col("x")]), Retraction::Retract),
    ] {
        let (call, found) = call(expr.clone()).retracting(&input()).unwrap();
        assert_eq!(found, retraction, "{expr}");
        let mut ours = LongCall::of(&call, &input(), true).unwrap().unwrap();
        let mut theirs = PerGroup::new(call, Some(retraction));
        same_results(&mut ours, &mut theirs, 7, true);
    }
}

#[test]
fn min_max_and_distinct_counts_over_an_updating_input_are_not_theirs() {
    for expr in [min(col("x")), max(col("x")), count_distinct(col("x"))] {
        let (call, _) = call(expr.clone()).retracting(&input()).unwrap();
        assert!(
            LongCall::of(&call, &input(), true).unwrap().is_none(),
            "{expr}"
        );
    }
    let text = Schema::new(vec![Field::new("x", DataType::Utf8, true)]);
    let over_text =
        AggregateCall::lower(&max(col("x")), &DFSchema::try_from(text.clone()).unwrap()).unwrap();
    assert!(LongCall::of(&over_text, &text, false).unwrap().is_none());
}

#[test]
fn retained_groups_keep_their_values_numbered_again() {
    let call = call(count_distinct(col("x")));
    let mut ours = LongCall::of(&call, &input(), false).unwrap().unwrap();
    for _ in 0..3 {
        ours.push_group().unwrap();
    }
    let arguments: [ArrayRef; 1] = [Arc::new(Int64Array::from(vec![1, 2, 2, 3, 4, 4]))];
    ours.update(&arguments, &[0, 1, 2, 3, 4, 5], &[0, 0, 1, 1, 2, 2], false)
        .unwrap();
    ours.retain(&[false, true, true]);
    let results = ours.results(&[0, 1]).unwrap();
    assert_eq!(
        results.as_ref(),
        &Int64Array::from(vec![2, 1]) as &dyn Array
    );
    ours.reset(0).unwrap();
    assert_eq!(
        ours.results(&[0, 1]).unwrap().as_ref(),
        &Int64Array::from(vec![0, 1]) as &dyn Array
    );
}
