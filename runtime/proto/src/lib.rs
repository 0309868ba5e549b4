//! weir's wire contract: the protobuf messages and gRPC services spoken between
//! the coordinator, its workers, the CLI and the Kubernetes controller.
//!
//! This crate holds only generated types and a few constants, so that the
//! controller can depend on it without linking the engine.
//!
//! # Layout
//!
//! - `proto/weir.proto`: the contract, with the meaning of every message.
//! - [`v1`]: the generated types, clients (`*_client`) and servers (`*_server`).
//! - [`api_token`]: the job control API's bearer token, both ends.

pub mod api_token;

/// The protocol version both ends of a session must share.
pub const PROTOCOL_VERSION: u32 = 3;

/// Generated code of package `weir.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("weir.v1");
}

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;

    #[test]
    fn messages_round_trip_through_the_wire_format() {
        let msg = WorkerMessage {
            body: Some(worker_message::Body::Register(Register {
                protocol_version: super::PROTOCOL_VERSION,
                worker_id: "w-1".into(),
                slots: 4,
                data_address: "127.0.0.1:7000".into(),
            })),
        };
        let bytes = msg.encode_to_vec();
        assert_eq!(WorkerMessage::decode(bytes.as_slice()).unwrap(), msg);
    }

    #[test]
    fn job_states_have_stable_wire_values() {
        assert_eq!(JobState::Running as i32, 2);
        assert_eq!(JobState::try_from(6).unwrap(), JobState::Failed);
        assert_eq!(SavepointState::Completed as i32, 2);
    }
}
