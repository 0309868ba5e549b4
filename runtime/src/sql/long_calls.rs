//! weir's own [`GroupCall`]s for the calls an unbounded `GROUP BY` runs most:
//! `COUNT` of anything, and `SUM`, `MIN`, `MAX`, `AVG` and `COUNT(DISTINCT ...)`
//! of a `BIGINT`. Each keeps a column of numbers indexed by group, so a batch
//! is one pass over its rows and a result is read without ending the group
//! (DataFusion's per-group accumulators cost an allocation or more per group
//! and batch; its many-group ones can only be read by emptying them).
//!
//! They compute what DataFusion's accumulators (and [`crate::sql::flink_avg`])
//! compute, and checkpoint the same state columns: `SUM` wraps as a Java
//! `long` and is null until a non-null value comes; `AVG` is Flink's whole
//! average. `MIN`, `MAX` and `COUNT(DISTINCT ...)` run here only over an
//! append-only input (over an updating one they keep a multiset of values).

use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, PrimitiveArray,
};
use datafusion_common::arrow::buffer::OffsetBuffer;
use datafusion_common::arrow::datatypes::{DataType, Int64Type, Schema};
use rustc_hash::FxHashSet;

use crate::error::{Error, Result};
use crate::sql::aggregates::AggregateCall;
use crate::sql::group_calls::{retain_by, GroupCall};

/// Which call a [`LongCall`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongKind {
    /// `COUNT` of rows whose arguments are all non-null.
    Count,
    /// `SUM` of a `BIGINT`.
    Sum,
    /// `MIN` of a `BIGINT`.
    Min,
    /// `MAX` of a `BIGINT`.
    Max,
    /// `AVG` of a `BIGINT`, in whole numbers.
    Avg,
    /// `COUNT(DISTINCT ...)` of a `BIGINT`.
    CountDistinct,
}

/// One call's numbers for every group.
pub struct LongCall {
    kind: LongKind,
    /// `COUNT`'s and `COUNT(DISTINCT ...)`'s results, `AVG`'s count.
    counts: Vec<i64>,
    /// `SUM`'s and `AVG`'s sum, `MIN`'s and `MAX`'s value.
    values: Vec<i64>,
    /// Whether `values` holds a value (`SUM`, `MIN`, `MAX`).
    valid: Vec<bool>,
    /// `COUNT(DISTINCT ...)`'s values, each with its group.
    distinct: FxHashSet<(usize, i64)>,
    /// The type of its state's list column (`COUNT(DISTINCT ...)`).
    list_type: Option<DataType>,
}

impl LongCall {
    /// The call `call` (over rows of `input`, an updating input if
    /// `retracting`) as one of these, if it is one.
    pub fn of(call: &AggregateCall, input: &Schema, retracting: bool) -> Result<Option<LongCall>> {
        if call.is_multiset() {
            return Ok(None);
        }
        let arguments = call.argument_types(input)?;
        let state: Vec<&DataType> = call.state_fields.iter().map(|f| f.data_type()).collect();
        let long = DataType::Int64;
        let one_long = arguments.as_slice() == [DataType::Int64];
        let kind = match (call.name().as_str(), call.is_distinct()) {
            ("count", false) if !arguments.is_empty() && state == [&long] => LongKind::Count,
            ("count", true)
                if one_long && !retracting && matches!(state[..], [DataType::List(_)]) =>
            {
                LongKind::CountDistinct
            }
            ("sum", false) if one_long && state == [&long] => LongKind::Sum,
            ("min", false) if one_long && !retracting && state == [&long] => LongKind::Min,
            ("max", false) if one_long && !retracting && state == [&long] => LongKind::Max,
            ("avg", false) if one_long && state == [&long, &long] => LongKind::Avg,
            _ => return Ok(None),
        };
        if call.field().data_type() != &long {
            return Ok(None);
        }
        Ok(Some(LongCall {
            kind,
            counts: Vec::new(),
            values: Vec::new(),
            valid: Vec::new(),
            distinct: FxHashSet::default(),
            list_type: (kind == LongKind::CountDistinct).then(|| state[0].clone()),
        }))
    }

    /// Which call it computes.
    pub fn kind(&self) -> LongKind {
        self.kind
    }

    fn groups(&self) -> usize {
        self.counts.len()
    }

    fn longs(values: &[ArrayRef]) -> Result<&PrimitiveArray<Int64Type>> {
        values
            .first()
            .and_then(|v| v.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| Error::Internal("a BIGINT aggregate was given another type".into()))
    }

    /// Folds a `BIGINT` `v` into `group` (not taking it back).
    fn fold(&mut self, group: usize, v: i64) {
        match self.kind {
            LongKind::Count => self.counts[group] += 1,
            LongKind::Sum => {
                self.values[group] = self.values[group].wrapping_add(v);
                self.valid[group] = true;
            }
            LongKind::Min | LongKind::Max => {
                let better = match self.kind {
                    LongKind::Min => v < self.values[group],
                    _ => v > self.values[group],
                };
                if !self.valid[group] || better {
                    self.values[group] = v;
                    self.valid[group] = true;
                }
            }
            LongKind::Avg => {
                self.counts[group] += 1;
                self.values[group] = self.values[group].wrapping_add(v);
            }
            LongKind::CountDistinct => {
                if self.distinct.insert((group, v)) {
                    self.counts[group] += 1;
                }
            }
        }
    }

    /// Takes a `BIGINT` `v` back out of `group`.
    fn take_back(&mut self, group: usize, v: i64) -> Result<()> {
        match self.kind {
            LongKind::Count => self.counts[group] -= 1,
            LongKind::Sum => {
                self.values[group] = self.values[group].wrapping_sub(v);
                self.valid[group] = true;
            }
            LongKind::Avg => {
                self.counts[group] -= 1;
                self.values[group] = self.values[group].wrapping_sub(v);
            }
            LongKind::Min | LongKind::Max | LongKind::CountDistinct => {
                return Err(Error::Internal(format!(
                    "{:?} cannot take a row back without a multiset",
                    self.kind
                )))
            }
        }
        Ok(())
    }

    /// `COUNT(DISTINCT ...)`'s values as a list per group.
    fn distinct_lists(&self) -> Result<ArrayRef> {
        let Some(DataType::List(item)) = &self.list_type else {
            return Err(Error::Internal(
                "a distinct count without its list type".into(),
            ));
        };
        let mut per_group: Vec<Vec<i64>> = vec![Vec::new(); self.groups()];
        for &(group, v) in &self.distinct {
            per_group[group].push(v);
        }
        let offsets = OffsetBuffer::from_lengths(per_group.iter().map(Vec::len));
        let values = Int64Array::from_iter_values(per_group.into_iter().flatten());
        let list = ListArray::try_new(Arc::clone(item), offsets, Arc::new(values), None)
            .map_err(|e| Error::Sql(format!("saving state: {e}")))?;
        Ok(Arc::new(list))
    }
}

impl GroupCall for LongCall {
    fn push_group(&mut self) -> Result<()> {
        self.counts.push(0);
        self.values.push(0);
        self.valid.push(false);
        Ok(())
    }

    fn update(
        &mut self,
        values: &[ArrayRef],
        rows: &[u32],
        groups: &[usize],
        back: bool,
    ) -> Result<()> {
        if self.kind == LongKind::Count {
            let step = if back { -1 } else { 1 };
            if values.iter().all(|v| v.null_count() == 0) {
                for &group in groups {
                    self.counts[group] += step;
                }
            } else {
                for (&row, &group) in rows.iter().zip(groups) {
                    if values.iter().all(|v| v.is_valid(row as usize)) {
                        self.counts[group] += step;
                    }
                }
            }
            return Ok(());
        }
        let longs = Self::longs(values)?;
        let numbers = longs.values();
        let nulls = longs.nulls().filter(|n| n.null_count() > 0);
        for (&row, &group) in rows.iter().zip(groups) {
            let row = row as usize;
            if nulls.is_some_and(|n| n.is_null(row)) {
                continue;
            }
            if back {
                self.take_back(group, numbers[row])?;
            } else {
                self.fold(group, numbers[row]);
            }
        }
        Ok(())
    }

    fn results(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let array: Int64Array = match self.kind {
            LongKind::Count | LongKind::CountDistinct => {
                Int64Array::from_iter_values(groups.iter().map(|&g| self.counts[g]))
            }
            LongKind::Sum | LongKind::Min | LongKind::Max => groups
                .iter()
                .map(|&g| self.valid[g].then_some(self.values[g]))
                .collect(),
            LongKind::Avg => groups
                .iter()
                .map(|&g| {
                    (self.counts[g] != 0).then(|| self.values[g].wrapping_div(self.counts[g]))
                })
                .collect(),
        };
        Ok(Arc::new(array))
    }

    fn reset(&mut self, group: usize) -> Result<()> {
        self.counts[group] = 0;
        self.values[group] = 0;
        self.valid[group] = false;
        if self.kind == LongKind::CountDistinct {
            self.distinct.retain(|&(g, _)| g != group);
        }
        Ok(())
    }

    fn retain(&mut self, keep: &[bool]) {
        retain_by(&mut self.counts, keep);
        retain_by(&mut self.values, keep);
        retain_by(&mut self.valid, keep);
        if self.kind == LongKind::CountDistinct {
            let mut renumbered = vec![usize::MAX; keep.len()];
            let kept = keep.iter().enumerate().filter(|(_, &kept)| kept);
            for (next, (group, _)) in kept.enumerate() {
                renumbered[group] = next;
            }
            self.distinct = self
                .distinct
                .drain()
                .filter(|&(g, _)| keep[g])
                .map(|(g, v)| (renumbered[g], v))
                .collect();
        }
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let counts = || -> ArrayRef { Arc::new(Int64Array::from(self.counts.clone())) };
        let values = || -> ArrayRef {
            Arc::new(
                self.values
                    .iter()
                    .zip(&self.valid)
                    .map(|(&v, &valid)| valid.then_some(v))
                    .collect::<Int64Array>(),
            )
        };
        Ok(match self.kind {
            LongKind::Count => vec![counts()],
            LongKind::Sum | LongKind::Min | LongKind::Max => vec![values()],
            LongKind::Avg => vec![counts(), Arc::new(Int64Array::from(self.values.clone()))],
            LongKind::CountDistinct => vec![self.distinct_lists()?],
        })
    }

    fn restore(&mut self, groups: &[usize], state: &[ArrayRef]) -> Result<()> {
        let kind = self.kind;
        let bad = || Error::Internal(format!("the saved state of {kind:?} is not its own"));
        let column = |i: usize| {
            state
                .get(i)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(bad)
        };
        match self.kind {
            LongKind::Count | LongKind::Avg => {
                let counts = column(0)?;
                let sums = if self.kind == LongKind::Avg {
                    Some(column(1)?)
                } else {
                    None
                };
                for (row, &group) in groups.iter().enumerate() {
                    if counts.is_valid(row) {
                        self.counts[group] += counts.value(row);
                    }
                    if let Some(sums) = sums.filter(|s| s.is_valid(row)) {
                        self.values[group] = self.values[group].wrapping_add(sums.value(row));
                    }
                }
            }
            LongKind::Sum | LongKind::Min | LongKind::Max => {
                let saved = column(0)?;
                for (row, &group) in groups.iter().enumerate() {
                    if saved.is_valid(row) {
                        self.fold(group, saved.value(row));
                    }
                }
            }
            LongKind::CountDistinct => {
                let lists = state
                    .first()
                    .and_then(|c| c.as_list_opt::<i32>())
                    .ok_or_else(bad)?;
                for (row, &group) in groups.iter().enumerate() {
                    if lists.is_null(row) {
                        continue;
                    }
                    let values = lists.value(row);
                    let values = values.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                    for v in values.iter().flatten() {
                        self.fold(group, v);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "long_calls_tests.rs"]
mod tests;
