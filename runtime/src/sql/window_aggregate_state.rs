//! How a window aggregate checkpoints its open windows: one row per window
//! and group (window start and end, the group's key, its calls' state, and
//! what was fired early), by key group, and the watermark.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion_common::arrow::datatypes::Int64Type;

use super::{result_types, WindowAggregate};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::sql::keyed_state::{decode_key_group, encode_rows_by_key_group, KeptRow};
use crate::sql::windows::report_late;
use crate::state::OperatorSnapshot;

impl WindowAggregate {
    /// The open windows' groups, each row a window and a group with its
    /// calls' state (and, firing early, what was fired), by key group; the
    /// watermark as operator state.
    pub(super) fn save(&mut self) -> Result<OperatorSnapshot> {
        report_late(&self.uid, std::mem::take(&mut self.late));
        let operator_state = Some(self.watermark.to_le_bytes().to_vec());
        let mut batches = Vec::with_capacity(self.panes.len());
        let mut rows: Vec<KeptRow> = Vec::new();
        let result_types = result_types(&self.spec);
        for (&(end, start), pane) in &mut self.panes {
            let (keys, groups_of, states) = pane.groups.state(&self.converter)?;
            let n = groups_of.len();
            let batch = batches.len() as u32;
            rows.extend(groups_of.iter().enumerate().map(|(row, &group)| KeptRow {
                batch,
                row: row as u32,
                group,
            }));
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![start; n])),
                Arc::new(Int64Array::from(vec![end; n])),
            ];
            columns.extend(keys);
            columns.extend(states);
            if self.spec.early_fire.is_some() {
                columns.extend(pane.firings.state(n, &result_types)?);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(n));
            batches.push(
                RecordBatch::try_new_with_options(self.state_schema.clone(), columns, &options)
                    .map_err(|e| Error::Sql(format!("saving windows: {e}")))?,
            );
        }
        let keyed = encode_rows_by_key_group(&batches, &rows)?;
        Ok(OperatorSnapshot {
            operator_state,
            keyed,
            ..Default::default()
        })
    }
    /// Restores key group `group`'s windows and groups from its blob.
    pub(super) fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let batch = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let starts = batch.column(0).as_primitive::<Int64Type>().clone();
        let ends = batch.column(1).as_primitive::<Int64Type>().clone();
        let k = self.spec.key_types.len();
        let keys = &batch.columns()[2..2 + k];
        let states = &batch.columns()[2 + k..];
        let key_rows = self
            .converter
            .convert_columns(keys)
            .map_err(|e| self.bad_state(e))?;
        let hashes = vec![u64::from(group.0); batch.num_rows()];
        let mut windows: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        for row in 0..batch.num_rows() {
            windows
                .entry((ends.value(row), starts.value(row)))
                .or_default()
                .push(row as u32);
        }
        let spec = self.spec.clone();
        let firings_at: usize = spec.calls.iter().map(|c| c.state_fields.len()).sum();
        for (window, rows) in windows {
            let pane = self.pane(window)?;
            let groups = pane
                .groups
                .restore(&rows, &key_rows, &hashes, states, &spec.calls)?;
            if spec.early_fire.is_some() {
                pane.firings
                    .restore(&groups, &rows, &states[firings_at..])?;
            }
        }
        Ok(())
    }
}
