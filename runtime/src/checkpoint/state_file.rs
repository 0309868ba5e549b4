//! Encoding an operator subtask's snapshot into one state file, and slicing it on restore.
//!
//! A state file is the non-keyed state followed by each key group's blob; the
//! byte ranges live in `_metadata`, so a restore at another parallelism reads
//! exactly the groups a new subtask owns.

use crate::checkpoint::metadata::{GroupSpan, Span, StateFile};
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::OperatorSnapshot;

/// The bytes of a state file and its handle (with `path` filled in).
pub fn encode(path: String, snapshot: &OperatorSnapshot) -> Option<(Vec<u8>, StateFile)> {
    if snapshot.operator_state.is_none() && snapshot.keyed.is_empty() {
        return None;
    }
    let size = snapshot.operator_state.as_ref().map_or(0, Vec::len)
        + snapshot
            .keyed
            .iter()
            .map(|(_, blob)| blob.len())
            .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    let operator_state = snapshot.operator_state.as_ref().map(|s| {
        bytes.extend_from_slice(s);
        Span {
            offset: 0,
            len: s.len() as u64,
        }
    });
    let key_groups = snapshot
        .keyed
        .iter()
        .map(|(group, blob)| {
            let offset = bytes.len() as u64;
            bytes.extend_from_slice(blob);
            GroupSpan {
                group: *group,
                span: Span {
                    offset,
                    len: blob.len() as u64,
                },
            }
        })
        .collect();
    let file = StateFile {
        path,
        size: bytes.len() as u64,
        checksum: checksum(&bytes),
        operator_state,
        key_groups,
    };
    Some((bytes, file))
}

/// The checksum recorded for a state file.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Checks a state file read from `uri` against its handle.
pub fn verify(uri: &str, file: &StateFile, bytes: &[u8]) -> Result<()> {
    let corrupt = |reason: String| Error::CorruptCheckpoint {
        path: uri.to_string(),
        reason,
    };
    if bytes.len() as u64 != file.size {
        return Err(corrupt(format!(
            "state file is {} bytes, _metadata says {} (truncated or overwritten)",
            bytes.len(),
            file.size
        )));
    }
    let sum = checksum(bytes);
    if sum != file.checksum {
        return Err(corrupt(format!(
            "checksum {sum} does not match {}",
            file.checksum
        )));
    }
    Ok(())
}

fn slice(bytes: &[u8], span: Span) -> Option<&[u8]> {
    let end = span.offset.checked_add(span.len)?;
    bytes.get(span.offset as usize..end as usize)
}

/// The non-keyed state in a verified state file.
pub fn operator_state(uri: &str, file: &StateFile, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    file.operator_state
        .map(|span| {
            slice(bytes, span)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::CorruptCheckpoint {
                    path: uri.to_string(),
                    reason: format!("operator state span {span:?} lies outside the file"),
                })
        })
        .transpose()
}

/// The blobs of the key groups in `range` from a verified state file.
pub fn key_groups(
    uri: &str,
    file: &StateFile,
    bytes: &[u8],
    range: KeyGroupRange,
) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
    file.key_groups
        .iter()
        .filter(|g| range.contains(g.group))
        .map(|g| {
            slice(bytes, g.span)
                .map(|b| (g.group, b.to_vec()))
                .ok_or_else(|| Error::CorruptCheckpoint {
                    path: uri.to_string(),
                    reason: format!("key group {} lies outside the file", g.group.0),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_groups_slice_back_by_range() {
        let snap = OperatorSnapshot {
            operator_state: Some(b"op".to_vec()),
            keyed: vec![
                (KeyGroup(1), b"one".to_vec()),
                (KeyGroup(9), b"nine".to_vec()),
            ],
            ..Default::default()
        };
        let (bytes, file) = encode("u/0/state".into(), &snap).unwrap();
        verify("f", &file, &bytes).unwrap();
        assert_eq!(
            operator_state("f", &file, &bytes).unwrap(),
            Some(b"op".to_vec())
        );
        let low = key_groups("f", &file, &bytes, KeyGroupRange { start: 0, end: 5 }).unwrap();
        assert_eq!(low, vec![(KeyGroup(1), b"one".to_vec())]);
    }

    #[test]
    fn a_truncated_file_is_named_as_damaged() {
        let snap = OperatorSnapshot {
            keyed: vec![(KeyGroup(1), vec![7; 100])],
            ..Default::default()
        };
        let (bytes, file) = encode("u/0/state".into(), &snap).unwrap();
        let err = verify("file:///c/u/0/state", &file, &bytes[..50])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("file:///c/u/0/state") && err.contains("truncated"),
            "{err}"
        );
    }
}
