//! Encoding an operator subtask's snapshot into one state file, and slicing it on restore.
//!
//! A state file is the non-keyed state followed by each key group's blob; the
//! byte ranges live in `_metadata`, so a restore at another parallelism reads
//! exactly the groups a new subtask owns. A large state's parts are each
//! compressed (zstd, recorded in the handle), so a range still reads alone.

use crate::checkpoint::metadata::{Compression, GroupSpan, Span, StateFile};
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::OperatorSnapshot;

/// States at least this large are compressed.
const COMPRESS_FROM: usize = 64 * 1024;

/// zstd's level for state: one of its fast levels (`--fast=3`), which on
/// Nexmark q18's 63 MB of top-N state took 0.13 s for 18 MB (level 1: 0.19 s
/// for 16 MB; LZ4: 0.09 s for 23 MB).
const ZSTD_LEVEL: i32 = -3;

/// The bytes of a state file and its handle (with `path` filled in); `None`
/// for a snapshot without state.
pub fn encode(path: String, snapshot: &OperatorSnapshot) -> Result<Option<(Vec<u8>, StateFile)>> {
    if snapshot.operator_state.is_none() && snapshot.keyed.is_empty() {
        return Ok(None);
    }
    let size = snapshot.operator_state.as_ref().map_or(0, Vec::len)
        + snapshot
            .keyed
            .iter()
            .map(|(_, blob)| blob.len())
            .sum::<usize>();
    let compression = (size >= COMPRESS_FROM).then_some(Compression::Zstd);
    let mut compressor = match compression {
        Some(Compression::Zstd) => Some(
            zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .map_err(|e| Error::Internal(format!("compressing state: {e}")))?,
        ),
        None => None,
    };
    let mut bytes = Vec::with_capacity(if compression.is_some() {
        size / 2
    } else {
        size
    });
    let mut append = |part: &[u8]| -> Result<Span> {
        let offset = bytes.len() as u64;
        match compressor.as_mut() {
            Some(zstd) => {
                let packed = zstd
                    .compress(part)
                    .map_err(|e| Error::Internal(format!("compressing state: {e}")))?;
                bytes.extend_from_slice(&packed);
            }
            None => bytes.extend_from_slice(part),
        }
        Ok(Span {
            offset,
            len: bytes.len() as u64 - offset,
        })
    };
    let operator_state = snapshot
        .operator_state
        .as_deref()
        .map(&mut append)
        .transpose()?;
    let key_groups = snapshot
        .keyed
        .iter()
        .map(|(group, blob)| {
            Ok(GroupSpan {
                group: *group,
                span: append(blob)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let file = StateFile {
        path,
        size: bytes.len() as u64,
        checksum: checksum(&bytes),
        operator_state,
        key_groups,
        compression,
    };
    Ok(Some((bytes, file)))
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

/// The part of a verified state file at `span`, uncompressed; `what` names
/// it in an error.
fn part(uri: &str, file: &StateFile, bytes: &[u8], span: Span, what: &str) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::CorruptCheckpoint {
        path: uri.to_string(),
        reason,
    };
    let stored =
        slice(bytes, span).ok_or_else(|| corrupt(format!("{what} lies outside the file")))?;
    match file.compression {
        None => Ok(stored.to_vec()),
        Some(Compression::Zstd) => zstd::stream::decode_all(stored)
            .map_err(|e| corrupt(format!("{what} does not decompress: {e}"))),
    }
}

/// The non-keyed state in a verified state file.
pub fn operator_state(uri: &str, file: &StateFile, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    file.operator_state
        .map(|span| {
            part(
                uri,
                file,
                bytes,
                span,
                &format!("operator state span {span:?}"),
            )
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
            let what = format!("key group {}", g.group.0);
            Ok((g.group, part(uri, file, bytes, g.span, &what)?))
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
        let (bytes, file) = encode("u/0/state".into(), &snap).unwrap().unwrap();
        assert_eq!(file.compression, None, "small states stay as they are");
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
        let (bytes, file) = encode("u/0/state".into(), &snap).unwrap().unwrap();
        let err = verify("file:///c/u/0/state", &file, &bytes[..50])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("file:///c/u/0/state") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn a_large_state_is_compressed_part_by_part_and_read_back() {
        let repetitive =
            |n: u8| -> Vec<u8> { (0..100_000u32).map(|i| (i % 7) as u8 + n).collect() };
        let snap = OperatorSnapshot {
            operator_state: Some(b"position".to_vec()),
            keyed: vec![(KeyGroup(2), repetitive(0)), (KeyGroup(70), repetitive(9))],
            ..Default::default()
        };
        let (bytes, file) = encode("u/0/state".into(), &snap).unwrap().unwrap();
        assert_eq!(file.compression, Some(Compression::Zstd));
        assert!(bytes.len() < 10_000, "{} bytes", bytes.len());
        verify("f", &file, &bytes).unwrap();
        assert_eq!(
            operator_state("f", &file, &bytes).unwrap(),
            Some(b"position".to_vec())
        );
        let high = key_groups(
            "f",
            &file,
            &bytes,
            KeyGroupRange {
                start: 64,
                end: 128,
            },
        )
        .unwrap();
        assert_eq!(high, vec![(KeyGroup(70), repetitive(9))]);
        // A part that is not zstd (bytes overwritten, checksum recomputed)
        // is an error naming the file and the part, not a panic.
        let mut damaged = bytes;
        let span = file.key_groups[0].span;
        damaged[span.offset as usize..(span.offset + span.len) as usize].fill(0);
        let err = key_groups(
            "s3://b/c/u/0/state",
            &file,
            &damaged,
            KeyGroupRange { start: 0, end: 64 },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("s3://b/c/u/0/state") && err.contains("key group 2"),
            "{err}"
        );
    }
}
