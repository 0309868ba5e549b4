//! Conversions between engine types and `weir.v1` wire messages.

use weir_proto::v1;

use crate::checkpoint::coordinator::Ack;
use crate::checkpoint::metadata::{
    Compression, GroupSpan, NativeFile, NativeState, Span, SstPlace, StateFile, SubtaskState,
};
use crate::ids::{CheckpointId, OperatorUid, TaskId};
use crate::keys::{KeyGroup, KeyGroupRange};

/// A task id on the wire.
pub fn task_to_wire(t: TaskId) -> v1::TaskId {
    v1::TaskId {
        chain: t.chain,
        subtask: t.subtask,
    }
}

/// A task id from the wire (a missing one is task 0.0, which the caller checks).
pub fn task_from_wire(t: Option<&v1::TaskId>) -> TaskId {
    t.map_or(
        TaskId {
            chain: 0,
            subtask: 0,
        },
        |t| TaskId {
            chain: t.chain,
            subtask: t.subtask,
        },
    )
}

fn span_to_wire(s: Span) -> v1::Span {
    v1::Span {
        offset: s.offset,
        len: s.len,
    }
}

/// An acknowledgement on the wire.
pub fn ack_to_wire(attempt: u64, ack: &Ack) -> v1::TaskAck {
    v1::TaskAck {
        attempt,
        task: Some(task_to_wire(ack.task)),
        checkpoint_id: ack.id.0,
        states: ack
            .states
            .iter()
            .map(|(uid, parallelism, st)| v1::OperatorSubtaskState {
                uid: uid.0.clone(),
                parallelism: *parallelism,
                subtask: st.subtask,
                key_group_start: st.key_groups.start,
                key_group_end: st.key_groups.end,
                position_json: st.position.as_ref().map(|p| p.to_string()),
                file: st.file.as_ref().map(|f| v1::StateFile {
                    path: f.path.clone(),
                    size: f.size,
                    checksum: f.checksum.clone(),
                    operator_state: f.operator_state.map(span_to_wire),
                    key_groups: f
                        .key_groups
                        .iter()
                        .map(|g| v1::GroupSpan {
                            group: g.group.0,
                            offset: g.span.offset,
                            len: g.span.len,
                        })
                        .collect(),
                    compression: f.compression.map(|c| match c {
                        Compression::Zstd => "zstd".to_string(),
                    }),
                }),
                rocksdb: st.rocksdb.as_ref().map(|n| v1::NativeState {
                    files: n
                        .files
                        .iter()
                        .map(|f| v1::NativeFile {
                            name: f.name.clone(),
                            path: f.path.clone(),
                            shared: f.shared,
                            size: f.size,
                            checksum: f.checksum.clone(),
                            place: f.place.map(|p| v1::SstPlace {
                                rank: p.rank,
                                key_group_start: p.key_groups.start,
                                key_group_end: p.key_groups.end,
                            }),
                        })
                        .collect(),
                }),
            })
            .collect(),
        uploaded_bytes: ack.uploaded_bytes,
    }
}

/// An acknowledgement from the wire; a position that is not JSON is an error.
pub fn ack_from_wire(ack: &v1::TaskAck) -> Result<Ack, String> {
    let states = ack
        .states
        .iter()
        .map(|s| {
            let position = s
                .position_json
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| format!("position of {} is not JSON: {e}", s.uid))?;
            let file = s
                .file
                .as_ref()
                .map(|f| -> Result<StateFile, String> {
                    Ok(StateFile {
                        path: f.path.clone(),
                        size: f.size,
                        checksum: f.checksum.clone(),
                        operator_state: f.operator_state.map(|o| Span {
                            offset: o.offset,
                            len: o.len,
                        }),
                        key_groups: f
                            .key_groups
                            .iter()
                            .map(|g| GroupSpan {
                                group: KeyGroup(g.group),
                                span: Span {
                                    offset: g.offset,
                                    len: g.len,
                                },
                            })
                            .collect(),
                        compression: f
                            .compression
                            .as_deref()
                            .map(|c| match c {
                                "zstd" => Ok(Compression::Zstd),
                                other => Err(format!(
                                    "state file {}: compression {other:?} is unknown",
                                    f.path
                                )),
                            })
                            .transpose()?,
                    })
                })
                .transpose()?;
            Ok((
                OperatorUid(s.uid.clone()),
                s.parallelism,
                SubtaskState {
                    subtask: s.subtask,
                    key_groups: KeyGroupRange {
                        start: s.key_group_start,
                        end: s.key_group_end,
                    },
                    position,
                    file,
                    rocksdb: s.rocksdb.as_ref().map(|n| NativeState {
                        files: n
                            .files
                            .iter()
                            .map(|f| NativeFile {
                                name: f.name.clone(),
                                path: f.path.clone(),
                                shared: f.shared,
                                size: f.size,
                                checksum: f.checksum.clone(),
                                place: f.place.as_ref().map(|p| SstPlace {
                                    rank: p.rank,
                                    key_groups: KeyGroupRange {
                                        start: p.key_group_start,
                                        end: p.key_group_end,
                                    },
                                }),
                            })
                            .collect(),
                    }),
                },
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Ack {
        task: task_from_wire(ack.task.as_ref()),
        id: CheckpointId(ack.checkpoint_id),
        states,
        uploaded_bytes: ack.uploaded_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_survive_the_wire() {
        let ack = Ack {
            task: TaskId {
                chain: 1,
                subtask: 2,
            },
            id: CheckpointId(9),
            states: vec![(
                OperatorUid("sum".into()),
                3,
                SubtaskState {
                    subtask: 2,
                    key_groups: KeyGroupRange {
                        start: 85,
                        end: 128,
                    },
                    position: Some(serde_json::json!({"emitted": 5})),
                    file: Some(StateFile {
                        path: "sum/2/state".into(),
                        size: 30,
                        checksum: "ab".into(),
                        operator_state: Some(Span { offset: 0, len: 10 }),
                        key_groups: vec![GroupSpan {
                            group: KeyGroup(90),
                            span: Span {
                                offset: 10,
                                len: 20,
                            },
                        }],
                        compression: Some(Compression::Zstd),
                    }),
                    rocksdb: Some(NativeState {
                        files: vec![NativeFile {
                            name: "000012.sst".into(),
                            path: "sum/1a-2-000012.sst".into(),
                            shared: true,
                            size: 4096,
                            checksum: "cd".into(),
                            place: Some(SstPlace {
                                rank: 3,
                                key_groups: KeyGroupRange { start: 85, end: 99 },
                            }),
                        }],
                    }),
                },
            )],
            uploaded_bytes: 4126,
        };
        let back = ack_from_wire(&ack_to_wire(4, &ack)).unwrap();
        assert_eq!(
            (back.task, back.id, back.uploaded_bytes),
            (ack.task, ack.id, ack.uploaded_bytes)
        );
        assert_eq!(back.states, ack.states);
    }
}
