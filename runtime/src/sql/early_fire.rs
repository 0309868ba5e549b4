//! Early firing of windows: a window's groups emit their result before the
//! window ends, every N of a group's rows (a count trigger, which Flink SQL
//! lacks) and every T of processing time for the groups changed since they
//! last fired (Flink's `table.exec.emit.early-fire.delay`); the window's end
//! then emits the final result. A window aggregate that fires early is an
//! updating result, as Flink's: a group's first emission is an insert (`+I`),
//! each later one that changed it takes back the last (`-U`) and puts the new
//! one (`+U`), and one that did not change it emits nothing.
//!
//! [`Firings`] is one window's bookkeeping: per group, the rows since it last
//! fired and the result it emitted last, both checkpointed with the window's
//! groups so that a restored job fires at the same rows and takes back what
//! it emitted before the failure.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::array::{
    new_empty_array, ArrayRef, AsArray, BooleanArray, UInt64Array,
};
use datafusion_common::arrow::datatypes::{DataType, UInt64Type};
use datafusion_common::ScalarValue;

use datafusion_common::arrow::array::{Int8Array, UInt32Array};
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::error::ArrowError;
use datafusion_common::arrow::row::RowConverter;

use crate::error::{Error, Result};
use crate::sql::groups::Groups;
use crate::sql::rows::{RowKind, Rows};
use crate::sql::window_aggregate::WindowAggregateSpec;

/// When a window's groups fire before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyFire {
    /// Fire a group every this many of its rows.
    pub every_rows: Option<u64>,
    /// Fire the groups changed since their last firing this often (processing time).
    pub every: Option<Duration>,
}

impl fmt::Display for EarlyFire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firing early")?;
        if let Some(rows) = self.every_rows {
            write!(f, " every {rows} rows of a group")?;
        }
        if let Some(every) = self.every {
            if self.every_rows.is_some() {
                write!(f, " and")?;
            }
            write!(f, " every {} ms", every.as_millis())?;
        }
        Ok(())
    }
}

impl EarlyFire {
    /// When the delay fires next after `now` (ms): its next multiple, so
    /// every subtask fires together.
    pub fn next_time(&self, now: i64) -> Option<i64> {
        let every = i64::try_from(self.every?.as_millis()).ok()?.max(1);
        Some(now - now.rem_euclid(every) + every)
    }
}

/// The changes of one firing: which of the fired groups each output row
/// shows, its kind, and its results (one column of values per call).
pub struct Changes {
    /// Each output row's place among the fired groups.
    pub rows: Vec<u32>,
    /// Each output row's [`RowKind`] code.
    pub kinds: Vec<i8>,
    /// Each call's result per output row.
    pub values: Vec<Vec<ScalarValue>>,
}

impl Changes {
    /// No changes yet, for `calls` calls.
    pub fn new(calls: usize) -> Self {
        Changes {
            rows: Vec::new(),
            kinds: Vec::new(),
            values: vec![Vec::new(); calls],
        }
    }

    fn push(&mut self, row: usize, kind: RowKind, results: &[ScalarValue]) {
        self.rows.push(row as u32);
        self.kinds.push(kind as i8);
        for (column, value) in self.values.iter_mut().zip(results) {
            column.push(value.clone());
        }
    }
}

/// One window's early-fire bookkeeping, by group index.
#[derive(Default)]
pub struct Firings {
    /// The rows each group took since it last fired.
    since: Vec<u64>,
    /// Whether each group changed since it last fired.
    changed: Vec<bool>,
    /// The result each group emitted last, one value per call (`None`: none yet).
    last: Vec<Option<Vec<ScalarValue>>>,
}

fn failed<E: fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

impl Firings {
    fn grow(&mut self, groups: usize) {
        if self.since.len() < groups {
            self.since.resize(groups, 0);
            self.changed.resize(groups, false);
            self.last.resize(groups, None);
        }
    }

    /// Counts a row of `group`; true when the group has taken `every_rows`
    /// rows since it last fired, so fires now.
    pub fn count(&mut self, group: usize, every_rows: Option<u64>) -> bool {
        self.grow(group + 1);
        self.since[group] += 1;
        self.changed[group] = true;
        every_rows.is_some_and(|n| self.since[group] >= n)
    }

    /// The groups changed since they last fired.
    pub fn changed(&self) -> Vec<usize> {
        (0..self.changed.len())
            .filter(|&g| self.changed[g])
            .collect()
    }

    /// Fires `groups` with their `results` (one array per call, a row per
    /// group in order): adds each group's change to `changes`.
    pub fn fire(
        &mut self,
        groups: &[usize],
        results: &[ArrayRef],
        changes: &mut Changes,
    ) -> Result<()> {
        if let Some(&most) = groups.iter().max() {
            self.grow(most + 1);
        }
        for (row, &group) in groups.iter().enumerate() {
            let after = results
                .iter()
                .map(|r| ScalarValue::try_from_array(r, row))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(failed("firing a window early"))?;
            self.since[group] = 0;
            self.changed[group] = false;
            match self.last[group].take() {
                None => changes.push(row, RowKind::Insert, &after),
                Some(before) if before != after => {
                    changes.push(row, RowKind::UpdateBefore, &before);
                    changes.push(row, RowKind::UpdateAfter, &after);
                }
                Some(before) => {
                    self.last[group] = Some(before);
                    continue;
                }
            }
            self.last[group] = Some(after);
        }
        Ok(())
    }

    /// The state of the first `groups` groups: the rows since each fired,
    /// whether it fired, then one column per call (of `types`) of what it
    /// emitted last.
    pub fn state(&self, groups: usize, types: &[DataType]) -> Result<Vec<ArrayRef>> {
        let since: UInt64Array = (0..groups)
            .map(|g| self.since.get(g).copied().unwrap_or(0))
            .collect();
        let fired: BooleanArray = (0..groups)
            .map(|g| Some(matches!(self.last.get(g), Some(Some(_)))))
            .collect();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(since), Arc::new(fired)];
        for (call, data_type) in types.iter().enumerate() {
            let values = (0..groups)
                .map(|g| match self.last.get(g) {
                    Some(Some(last)) => Ok(last[call].clone()),
                    _ => ScalarValue::try_from(data_type),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(failed("saving early firings"))?;
            columns.push(if values.is_empty() {
                new_empty_array(data_type)
            } else {
                ScalarValue::iter_to_array(values).map_err(failed("saving early firings"))?
            });
        }
        Ok(columns)
    }

    /// Restores the groups `groups` from the rows `rows` of `columns` (as
    /// [`Firings::state`] gave them).
    pub fn restore(&mut self, groups: &[usize], rows: &[u32], columns: &[ArrayRef]) -> Result<()> {
        let bad = || Error::Sql("early firings: the saved state lacks its counts".to_string());
        let [since, fired, last @ ..] = columns else {
            return Err(bad());
        };
        let since = since.as_primitive_opt::<UInt64Type>().ok_or_else(bad)?;
        let fired = fired.as_boolean_opt().ok_or_else(bad)?;
        if let Some(&most) = groups.iter().max() {
            self.grow(most + 1);
        }
        for (&group, &row) in groups.iter().zip(rows) {
            let row = row as usize;
            self.since[group] = since.value(row);
            let values = last
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(failed("restoring early firings"))?;
            self.last[group] = fired.value(row).then_some(values);
        }
        Ok(())
    }
}

/// Fires `fired` of the `groups` of `window` (with their `firings`) early
/// or, all of them, at its end: each group's change since it last fired, as
/// a changelog.
pub fn fire_groups(
    spec: &WindowAggregateSpec,
    converter: &RowConverter,
    window: (i64, i64),
    groups: &mut Groups,
    firings: &mut Firings,
    fired: &[usize],
) -> Result<Option<Rows>> {
    let results = groups.results(&spec.calls, fired)?;
    let mut changes = Changes::new(spec.calls.len());
    firings.fire(fired, &results, &mut changes)?;
    let n = changes.rows.len();
    if n == 0 {
        return Ok(None);
    }
    let keys = groups.keys(converter, fired)?;
    let picked = UInt32Array::from(changes.rows);
    let failed = |e: ArrowError| Error::Sql(format!("window results: {e}"));
    let keys = keys
        .iter()
        .map(|k| take(k, &picked, None).map_err(failed))
        .collect::<Result<Vec<_>>>()?;
    let results = changes
        .values
        .into_iter()
        .map(|values| {
            ScalarValue::iter_to_array(values)
                .map_err(|e| Error::Sql(format!("window results: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = spec.output(window, n, keys, results)?;
    Ok(Some(Rows {
        batch,
        kinds: Some(Int8Array::from(changes.kinds)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::Int64Array;

    fn results(values: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    #[test]
    fn a_group_inserts_first_then_updates_only_when_its_result_changed() {
        let mut firings = Firings::default();
        assert!(!firings.count(0, Some(2)));
        assert!(firings.count(0, Some(2)));
        assert!(!firings.count(1, Some(2)));
        assert_eq!(firings.changed(), vec![0, 1]);
        let mut changes = Changes::new(1);
        firings.fire(&[0], &results(&[2]), &mut changes).unwrap();
        firings
            .fire(&[0, 1], &results(&[2, 1]), &mut changes)
            .unwrap();
        firings.fire(&[0], &results(&[5]), &mut changes).unwrap();
        assert_eq!(changes.rows, vec![0, 1, 0, 0]);
        let kinds: Vec<RowKind> = changes
            .kinds
            .iter()
            .map(|&k| RowKind::from_code(k))
            .collect();
        assert_eq!(
            kinds,
            vec![
                RowKind::Insert,
                RowKind::Insert,
                RowKind::UpdateBefore,
                RowKind::UpdateAfter
            ]
        );
        let values: Vec<i64> = changes.values[0]
            .iter()
            .map(|v| match v {
                ScalarValue::Int64(Some(n)) => *n,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, vec![2, 1, 2, 5]);
        assert!(firings.changed().is_empty());
    }

    #[test]
    fn the_saved_state_restores_the_counts_and_the_last_results() {
        let mut firings = Firings::default();
        firings.count(0, None);
        firings.count(1, None);
        firings.count(1, None);
        let mut changes = Changes::new(1);
        firings.fire(&[0], &results(&[7]), &mut changes).unwrap();
        firings.count(0, None);
        let state = firings.state(2, &[DataType::Int64]).unwrap();
        let mut restored = Firings::default();
        restored.restore(&[1, 0], &[0, 1], &state).unwrap();
        assert_eq!(restored.since, vec![2, 1]);
        assert_eq!(restored.last[1], Some(vec![ScalarValue::Int64(Some(7))]));
        assert_eq!(restored.last[0], None);
        let mut again = Changes::new(1);
        restored.fire(&[1], &results(&[8]), &mut again).unwrap();
        assert_eq!(
            again.kinds,
            vec![RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]
        );
    }

    #[test]
    fn the_delay_fires_at_its_next_multiple() {
        let fire = EarlyFire {
            every_rows: None,
            every: Some(Duration::from_secs(1)),
        };
        assert_eq!(fire.next_time(12_345), Some(13_000));
        assert_eq!(fire.next_time(13_000), Some(14_000));
        assert_eq!(
            EarlyFire {
                every: None,
                ..fire
            }
            .next_time(5),
            None
        );
        assert_eq!(fire.to_string(), "firing early every 1000 ms");
    }
}
