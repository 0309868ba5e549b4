//! How SQL aggregates checkpoint their heap state: one Arrow IPC blob per
//! key group, holding that group's rows of the operator's state batch, and
//! the same blobs read back and checked against the state the query keeps.

use std::collections::BTreeMap;

use datafusion_common::arrow::array::{RecordBatch, UInt32Array};
use datafusion_common::arrow::compute::take_record_batch;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};

use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::sql::rows::Rows;

/// The rows of `state` by key group (`key_groups`, one per row), each
/// group's as one encoded blob, in group order.
pub fn encode_by_key_group(
    state: &RecordBatch,
    key_groups: &[u32],
) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
    let mut by_group: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, group) in key_groups.iter().enumerate() {
        by_group.entry(*group).or_default().push(row as u32);
    }
    let mut keyed = Vec::with_capacity(by_group.len());
    for (group, rows) in by_group {
        let part = take_record_batch(state, &UInt32Array::from(rows))
            .map_err(|e| Error::Sql(format!("saving state: {e}")))?;
        keyed.push((KeyGroup(group), Rows::inserts(part).encode()?));
    }
    Ok(keyed)
}

/// Key group `group`'s blob of operator `uid`, which must hold rows of
/// `schema`'s types (the state this query keeps).
pub fn decode_key_group(
    uid: &str,
    group: KeyGroup,
    bytes: &[u8],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let bad = |reason: String| Error::State {
        uid: uid.to_string(),
        reason,
    };
    let batch = Rows::decode(bytes).map_err(|e| bad(e.to_string()))?.batch;
    let types = |s: &SchemaRef| -> Vec<DataType> {
        s.fields().iter().map(|f| f.data_type().clone()).collect()
    };
    let (expected, found) = (types(schema), types(batch.schema_ref()));
    if expected != found {
        return Err(bad(format!(
            "key group {}: the saved state does not fit this query's ({} columns of state, {} expected)",
            group.0,
            found.len(),
            expected.len()
        )));
    }
    Ok(batch)
}
