//! Kafka transaction control spoken directly on the wire, which librdkafka
//! cannot do: a transaction pre-committed by a process that then died is
//! committed by another one from the producer id and epoch in the checkpoint
//! (`EndTxn`), and lingering transactions of a job are found (`ListTransactions`)
//! and aborted (`InitProducerId` on their id fences the old producer and aborts).
//!
//! Every call goes to the transactional id's coordinator and is tried again
//! while the coordinator moves, loads, or finishes a concurrent operation.

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kafka::cluster::{retry, Cluster, Step, RETRY_DEADLINE};

const INIT_PRODUCER_ID_VERSION: i16 = 4;
const ADD_PARTITIONS_VERSION: i16 = 3;
const END_TXN_VERSION: i16 = 3;
const LIST_TRANSACTIONS_VERSION: i16 = 0;

/// A producer's identity in one transaction: what committing it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id the coordinator gave it.
    pub producer_id: i64,
    /// The producer epoch of this transaction.
    pub epoch: i16,
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// What a coordinator's error code means for a call on `id`: done, try again
/// (forgetting the coordinator if it moved), or the error itself.
fn judge(cluster: &mut Cluster, id: &str, code: i16) -> std::result::Result<(), Step<()>> {
    match code.err() {
        None => Ok(()),
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
            cluster.forget_coordinator(id);
            Err(Step::Again(format!("the coordinator of {id} moved")))
        }
        Some(
            e @ (ResponseError::CoordinatorLoadInProgress | ResponseError::ConcurrentTransactions),
        ) => Err(Step::Again(format!("{id}: {e:?}"))),
        Some(_) => Err(Step::Done(())),
    }
}

/// Calls `request` on the coordinator of `id`.
fn on_coordinator<R: kafka_protocol::protocol::Request>(
    cluster: &mut Cluster,
    id: &str,
    request: &R,
    version: i16,
) -> Result<Step<R::Response>> {
    let coordinator = match cluster.coordinator(id)? {
        Step::Done(c) => c,
        Step::Again(why) => return Ok(Step::Again(why)),
    };
    let reply = cluster.call(coordinator, request, version)?;
    if matches!(reply, Step::Again(_)) {
        cluster.forget_coordinator(id);
    }
    Ok(reply)
}

/// Starts a new producer session on `id`: the coordinator aborts any
/// transaction of the id still open, fences its old producer, and bumps the epoch.
pub(crate) fn init_producer(
    cluster: &mut Cluster,
    id: &str,
    timeout_ms: i32,
) -> Result<Transaction> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    retry(
        &format!("starting transactional producer {id}"),
        RETRY_DEADLINE,
        || {
            let reply = match on_coordinator(cluster, id, &request, INIT_PRODUCER_ID_VERSION)? {
                Step::Done(reply) => reply,
                Step::Again(why) => return Ok(Step::Again(why)),
            };
            match judge(cluster, id, reply.error_code) {
                Ok(()) => Ok(Step::Done(Transaction {
                    transactional_id: id.to_string(),
                    producer_id: reply.producer_id.0,
                    epoch: reply.producer_epoch,
                })),
                Err(Step::Again(why)) => Ok(Step::Again(why)),
                Err(Step::Done(())) => Err(match reply.error_code.err() {
                    Some(ResponseError::InvalidTransactionTimeout) => Error::Kafka(format!(
                        "the broker refuses a transaction timeout of {timeout_ms} ms for {id}: it \
                     exceeds the broker's transaction.max.timeout.ms. Lower the sink's \
                     transaction timeout or raise the broker's limit"
                    )),
                    e => Error::Kafka(format!("starting transactional producer {id}: {e:?}")),
                }),
            }
        },
    )
}

/// Adds `partitions` of `topic` to the open transaction `txn`.
pub(crate) fn add_partitions(
    cluster: &mut Cluster,
    txn: &Transaction,
    topic: &str,
    partitions: &[i32],
) -> Result<()> {
    let id = txn.transactional_id.as_str();
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(txn.producer_id))
        .with_v3_and_below_producer_epoch(txn.epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions.to_vec())]);
    retry(
        &format!("adding {topic} to transaction {id}"),
        RETRY_DEADLINE,
        || {
            let reply = match on_coordinator(cluster, id, &request, ADD_PARTITIONS_VERSION)? {
                Step::Done(reply) => reply,
                Step::Again(why) => return Ok(Step::Again(why)),
            };
            let codes = reply
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| &t.results_by_partition)
                .map(|p| p.partition_error_code);
            for code in std::iter::once(reply.error_code).chain(codes) {
                match judge(cluster, id, code) {
                    Ok(()) => {}
                    Err(Step::Again(why)) => return Ok(Step::Again(why)),
                    Err(Step::Done(())) => {
                        return Err(Error::Kafka(format!(
                            "adding {topic} to transaction {id}: {:?}",
                            code.err()
                        )))
                    }
                }
            }
            Ok(Step::Done(()))
        },
    )
}

/// How ending a transaction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The coordinator committed (or aborted) it, or had done so already.
    Done,
    /// The producer epoch is no longer the id's: a later session of the id
    /// (or the broker, at the transaction timeout) ended it; the reason.
    Superseded(String),
}

/// Commits (or aborts) transaction `txn`; committing one committed already is done.
pub(crate) fn end(cluster: &mut Cluster, txn: &Transaction, commit: bool) -> Result<Ended> {
    let id = txn.transactional_id.as_str();
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(txn.producer_id))
        .with_producer_epoch(txn.epoch)
        .with_committed(commit);
    let what = if commit { "committing" } else { "aborting" };
    retry(&format!("{what} transaction {id}"), RETRY_DEADLINE, || {
        let reply = match on_coordinator(cluster, id, &request, END_TXN_VERSION)? {
            Step::Done(reply) => reply,
            Step::Again(why) => return Ok(Step::Again(why)),
        };
        match judge(cluster, id, reply.error_code) {
            Ok(()) => Ok(Step::Done(Ended::Done)),
            Err(Step::Again(why)) => Ok(Step::Again(why)),
            Err(Step::Done(())) => match reply.error_code.err() {
                Some(
                    e @ (ResponseError::ProducerFenced
                    | ResponseError::InvalidProducerEpoch
                    | ResponseError::InvalidTxnState),
                ) => Ok(Step::Done(Ended::Superseded(format!("{e:?}")))),
                e => Err(Error::Kafka(format!("{what} transaction {id}: {e:?}"))),
            },
        }
    })
}

/// The ids of the transactions open on any broker whose id starts with `prefix`.
pub(crate) fn list_open(cluster: &mut Cluster, prefix: &str) -> Result<Vec<String>> {
    let request = ListTransactionsRequest::default().with_state_filters(vec![
        StrBytes::from_static_str("Ongoing"),
        StrBytes::from_static_str("PrepareCommit"),
        StrBytes::from_static_str("PrepareAbort"),
    ]);
    let mut open = Vec::new();
    for broker in cluster.broker_ids() {
        let reply = retry(
            &format!("listing the transactions of broker {broker}"),
            RETRY_DEADLINE,
            || {
                let reply = match cluster.call(broker, &request, LIST_TRANSACTIONS_VERSION)? {
                    Step::Done(reply) => reply,
                    Step::Again(why) => return Ok(Step::Again(why)),
                };
                match reply.error_code.err() {
                    None => Ok(Step::Done(reply)),
                    Some(e @ ResponseError::CoordinatorLoadInProgress) => {
                        Ok(Step::Again(format!("{e:?}")))
                    }
                    Some(e) => Err(Error::Kafka(format!(
                        "listing the transactions of broker {broker}: {e:?}"
                    ))),
                }
            },
        )?;
        open.extend(
            reply
                .transaction_states
                .iter()
                .map(|t| t.transactional_id.0.as_str())
                .filter(|id| id.starts_with(prefix))
                .map(str::to_string),
        );
    }
    open.sort();
    open.dedup();
    Ok(open)
}
