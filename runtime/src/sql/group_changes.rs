//! The changelog rows one batch makes of the groups it touched in an
//! unbounded `GROUP BY`: which groups' results changed (their results read
//! before and after the batch, compared column by column), and the `+I`,
//! `-U`/`+U` and `-D` rows put together from those results.

use datafusion_common::arrow::array::{
    Array, ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion_common::arrow::compute::kernels::cmp::distinct;
use datafusion_common::arrow::compute::{interleave, take};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::ScalarValue;

use crate::error::{Error, Result};
use crate::sql::rows::{RowKind, Rows};

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

/// Which rows of `before` and `after` (as long as each other) differ.
fn differs(before: &ArrayRef, after: &ArrayRef) -> Result<Vec<bool>> {
    if let Ok(mask) = distinct(before, after) {
        return Ok(mask.values().iter().collect());
    }
    // Types the kernel does not compare (nested ones): value by value.
    (0..before.len())
        .map(|i| {
            let b = ScalarValue::try_from_array(before, i).map_err(failed("comparing results"))?;
            let a = ScalarValue::try_from_array(after, i).map_err(failed("comparing results"))?;
            Ok(b != a)
        })
        .collect()
}

/// Whether each group with a result before the batch has another one after:
/// `before` holds one column per call of those groups' old results, `after`
/// of every touched group's new one, and `places` says where in `after`
/// each of the groups of `before` is.
pub fn changed(before: &[ArrayRef], after: &[ArrayRef], places: &[u32]) -> Result<Vec<bool>> {
    let mut changed = vec![false; places.len()];
    if places.is_empty() {
        return Ok(changed);
    }
    let places = UInt32Array::from(places.to_vec());
    for (before, after) in before.iter().zip(after) {
        let after = take(after, &places, None).map_err(failed("comparing results"))?;
        for (c, d) in changed.iter_mut().zip(differs(before, &after)?) {
            *c |= d;
        }
    }
    Ok(changed)
}

/// The changelog rows of one batch, in order: each row's kind, group, and
/// where its results come from.
#[derive(Default)]
pub struct GroupChanges {
    kinds: Vec<i8>,
    groups: Vec<usize>,
    /// (0, place among the old results) or (1, place among the new ones).
    picks: Vec<(usize, usize)>,
}

impl GroupChanges {
    fn push(&mut self, kind: RowKind, group: usize, pick: (usize, usize)) {
        self.kinds.push(kind as i8);
        self.groups.push(group);
        self.picks.push(pick);
    }

    /// `group` appeared with the new result at `place`.
    pub fn insert(&mut self, group: usize, place: usize) {
        self.push(RowKind::Insert, group, (1, place));
    }

    /// `group`'s old result at `old` became the new one at `new`.
    pub fn update(&mut self, group: usize, old: usize, new: usize) {
        self.push(RowKind::UpdateBefore, group, (0, old));
        self.push(RowKind::UpdateAfter, group, (1, new));
    }

    /// `group`, whose old result is at `old`, lost its every row.
    pub fn delete(&mut self, group: usize, old: usize) {
        self.push(RowKind::Delete, group, (0, old));
    }

    /// The groups of the rows, in order.
    pub fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// Whether no row changed.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The rows of `schema`: the key columns `keys` (a row per change), then
    /// each call's results picked from its `before` and `after` column.
    pub fn rows(
        self,
        mut keys: Vec<ArrayRef>,
        before: &[ArrayRef],
        after: &[ArrayRef],
        schema: SchemaRef,
    ) -> Result<Rows> {
        for (before, after) in before.iter().zip(after) {
            let sources: [&dyn Array; 2] = [before.as_ref(), after.as_ref()];
            keys.push(interleave(&sources, &self.picks).map_err(failed("emitting results"))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(self.kinds.len()));
        let batch = RecordBatch::try_new_with_options(schema, keys, &options)
            .map_err(failed("emitting results"))?;
        Ok(Rows {
            batch,
            kinds: Some(Int8Array::from(self.kinds)),
        })
    }
}
