//! An unbounded `GROUP BY`'s state over time: groups not updated for the
//! state TTL are forgotten, and checkpoints hold one row per group (its key,
//! its calls' state columns, and over an updating input its row count), by
//! key group.

use std::sync::Arc;

use datafusion_common::arrow::array::{AsArray, Int64Array, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::datatypes::Int64Type;

use super::{failed, UpdatingAggregate};
use crate::error::Result;
use crate::keys::KeyGroup;
use crate::sql::group_calls::retain_by;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::windows::now_ms;
use crate::state::OperatorSnapshot;

impl UpdatingAggregate {
    /// Forgets the groups not updated for the TTL, looking at most every
    /// quarter of it (and every 100 ms to a minute).
    pub(super) fn expire(&mut self) {
        let Some(ttl) = self.spec.ttl else {
            return;
        };
        let now = now_ms();
        if now < self.next_expiry {
            return;
        }
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.next_expiry = now.saturating_add((ttl / 4).clamp(100, 60_000));
        let before = now.saturating_sub(ttl);
        let keep: Vec<bool> = self.updated.iter().map(|&t| t >= before).collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut keys = self.spec.converter.empty_rows(0, 0);
        self.index.clear();
        for group in (0..keep.len()).filter(|&g| keep[g]) {
            let key = self.keys.row(group);
            self.index.insert(key.as_ref().into(), self.index.len());
            keys.push(key);
        }
        self.keys = keys;
        retain_by(&mut self.key_groups, &keep);
        for call in &mut self.calls {
            call.retain(&keep);
        }
        retain_by(&mut self.counts, &keep);
        retain_by(&mut self.updated, &keep);
        retain_by(&mut self.slots, &keep);
    }

    /// Every group's key, its calls' state and (over an updating input) its
    /// row count, by key group.
    pub(super) fn save(&mut self) -> Result<OperatorSnapshot> {
        let groups = self.key_groups.len();
        if groups == 0 {
            return Ok(OperatorSnapshot::default());
        }
        let mut columns = self
            .spec
            .converter
            .convert_rows(self.keys.iter())
            .map_err(failed("saving keys"))?;
        for call in &mut self.calls {
            columns.extend(call.state()?);
        }
        if self.spec.retractions.is_some() {
            columns.push(Arc::new(Int64Array::from(self.counts.clone())));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(groups));
        let all = RecordBatch::try_new_with_options(self.state_schema.clone(), columns, &options)
            .map_err(failed("saving state"))?;
        let keyed = encode_by_key_group(&all, &self.key_groups)?;
        Ok(OperatorSnapshot {
            keyed,
            ..Default::default()
        })
    }
    /// Restores key group `group`'s groups from its blob.
    pub(super) fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let batch = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let k = self.spec.key_types.len();
        let key_rows = self
            .spec
            .converter
            .convert_columns(&batch.columns()[..k])
            .map_err(|e| self.bad_state(e))?;
        let groups = (0..batch.num_rows())
            .map(|row| self.group(key_rows.row(row), group.0).map(|(g, _)| g))
            .collect::<Result<Vec<_>>>()?;
        let spec = Arc::clone(&self.spec);
        let mut column = k;
        for (call, spec_call) in self.calls.iter_mut().zip(&spec.calls) {
            let width = spec_call.state_fields.len();
            call.restore(&groups, &batch.columns()[column..column + width])?;
            column += width;
        }
        if spec.retractions.is_some() {
            let counts = batch.columns()[column].as_primitive::<Int64Type>();
            for (row, &g) in groups.iter().enumerate() {
                self.counts[g] += counts.value(row);
            }
        }
        Ok(())
    }
}
