//! The brokers of a Kafka cluster as the sink's own protocol client sees them:
//! their addresses (from metadata), one connection per broker, the leader of
//! each partition of a topic and the coordinator of each transactional id.
//! Calls that fail on a broken connection or on a broker that is not ready yet
//! ask to be tried again ([`Step::Again`]); [`retry`] does so until a deadline.
//! A broker that refuses the client (authentication, TLS) fails at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

use crate::error::{Error, Result};
use crate::kafka::wire::{Connection, Dialer};

/// The metadata version asked for (Kafka 2.8 and later).
const METADATA_VERSION: i16 = 12;
/// The find-coordinator version asked for (batched keys; Kafka 3.0 and later).
const FIND_COORDINATOR_VERSION: i16 = 4;
/// How long a request may be tried again before the job fails.
pub(crate) const RETRY_DEADLINE: Duration = Duration::from_secs(60);

/// What one try of a request came to.
pub(crate) enum Step<T> {
    /// It succeeded.
    Done(T),
    /// A transient failure (named): try again after a pause.
    Again(String),
}

/// Runs `attempt` until it is done, fails for good, or `deadline` has passed
/// since the first try, pausing between tries (50 ms doubling up to 1 s).
pub(crate) fn retry<T>(
    what: &str,
    deadline: Duration,
    mut attempt: impl FnMut() -> Result<Step<T>>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let why = match attempt()? {
            Step::Done(value) => return Ok(value),
            Step::Again(why) => why,
        };
        if started.elapsed() >= deadline {
            return Err(Error::Kafka(format!(
                "{what}: still failing after {}s: {why}",
                deadline.as_secs()
            )));
        }
        if !warned && started.elapsed() >= Duration::from_secs(5) {
            tracing::warn!(%why, "{what}: retrying");
            warned = true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Brokers and connections; see the module docs.
pub(crate) struct Cluster {
    bootstrap: Vec<String>,
    dialer: Dialer,
    addrs: HashMap<i32, String>,
    connections: HashMap<i32, Connection>,
    coordinators: HashMap<String, i32>,
}

impl Cluster {
    /// A cluster reached through `bootstrap` (`host:port,...`), connections
    /// opened by `dialer`; nothing is connected until a call needs it.
    pub fn new(bootstrap: &str, dialer: Dialer) -> Self {
        Cluster {
            bootstrap: bootstrap
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            dialer,
            addrs: HashMap::new(),
            connections: HashMap::new(),
            coordinators: HashMap::new(),
        }
    }

    /// The ids of the brokers the last metadata named.
    pub fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.addrs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The connection to broker `id`, opened if need be (or renewed, when its
    /// SASL session is about to end).
    pub fn connection(&mut self, id: i32) -> Result<Step<&mut Connection>> {
        if self
            .connections
            .get(&id)
            .is_some_and(Connection::should_renew)
        {
            self.connections.remove(&id);
        }
        if !self.connections.contains_key(&id) {
            let Some(addr) = self.addrs.get(&id) else {
                return Ok(Step::Again(format!("broker {id} is not in the metadata")));
            };
            match Connection::open(addr, &self.dialer)? {
                Step::Done(connection) => {
                    self.connections.insert(id, connection);
                }
                Step::Again(why) => return Ok(Step::Again(why)),
            }
        }
        match self.connections.get_mut(&id) {
            Some(connection) => Ok(Step::Done(connection)),
            None => Err(Error::Internal(format!("no connection to broker {id}"))),
        }
    }

    /// Forgets the connection to broker `id` (after it failed).
    pub fn drop_connection(&mut self, id: i32) {
        self.connections.remove(&id);
    }

    /// Sends `request` to broker `id` and waits for its reply; a broken
    /// connection is dropped and the call asks to be tried again.
    pub fn call<R: Request>(
        &mut self,
        id: i32,
        request: &R,
        version: i16,
    ) -> Result<Step<R::Response>> {
        let connection = match self.connection(id)? {
            Step::Done(c) => c,
            Step::Again(why) => return Ok(Step::Again(why)),
        };
        match connection.call(request, version) {
            Ok(reply) => Ok(Step::Done(reply)),
            Err(e) if connection.refused() => Err(e),
            Err(Error::Kafka(why)) => {
                self.drop_connection(id);
                Ok(Step::Again(why))
            }
            Err(e) => Err(e),
        }
    }

    /// The metadata of `topic` from the first bootstrap broker that answers;
    /// it also refreshes the broker addresses.
    fn metadata(&mut self, topic: &str) -> Result<Step<MetadataResponse>> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let mut last = String::from("no bootstrap servers given");
        for addr in self.bootstrap.clone() {
            let mut connection = match Connection::open(&addr, &self.dialer)? {
                Step::Done(connection) => connection,
                Step::Again(why) => {
                    last = why;
                    continue;
                }
            };
            match connection.call(&request, METADATA_VERSION) {
                Err(e) if connection.refused() => return Err(e),
                Ok(reply) => {
                    for broker in &reply.brokers {
                        let addr = format!("{}:{}", broker.host.as_str(), broker.port);
                        self.addrs.insert(broker.node_id.0, addr);
                    }
                    return Ok(Step::Done(reply));
                }
                Err(Error::Kafka(why)) => last = why,
                Err(e) => return Err(e),
            }
        }
        Ok(Step::Again(last))
    }

    /// The leader of each partition of `topic`, by partition number.
    pub fn leaders(&mut self, topic: &str) -> Result<Vec<i32>> {
        retry(&format!("looking up topic {topic}"), RETRY_DEADLINE, || {
            let reply = match self.metadata(topic)? {
                Step::Done(reply) => reply,
                Step::Again(why) => return Ok(Step::Again(why)),
            };
            let Some(found) = reply.topics.first() else {
                return Ok(Step::Again(format!(
                    "the metadata does not list topic {topic}"
                )));
            };
            if let Some(error) = found.error_code.err() {
                if error.is_retriable() {
                    return Ok(Step::Again(format!("topic {topic}: {error:?}")));
                }
                return Err(Error::Kafka(format!(
                    "topic {topic}: {error:?} (does it exist, and may this client write it?)"
                )));
            }
            let mut leaders = vec![-1; found.partitions.len()];
            for p in &found.partitions {
                let slot = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| leaders.get_mut(i));
                match slot {
                    Some(slot) if p.error_code.is_ok() && p.leader_id.0 >= 0 => {
                        *slot = p.leader_id.0
                    }
                    _ => {
                        return Ok(Step::Again(format!(
                            "partition {topic}/{} has no leader",
                            p.partition_index
                        )))
                    }
                }
            }
            if leaders.is_empty() || leaders.contains(&-1) {
                return Ok(Step::Again(format!("topic {topic} lists no partitions")));
            }
            Ok(Step::Done(leaders))
        })
    }

    /// The broker coordinating `transactional_id`'s transactions.
    pub fn coordinator(&mut self, transactional_id: &str) -> Result<Step<i32>> {
        if let Some(&id) = self.coordinators.get(transactional_id) {
            return Ok(Step::Done(id));
        }
        if self.addrs.is_empty() {
            return Ok(Step::Again("no broker known yet".into()));
        }
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(transactional_id.to_string())]);
        let mut last = String::new();
        for broker in self.broker_ids() {
            let reply = match self.call(broker, &request, FIND_COORDINATOR_VERSION)? {
                Step::Done(reply) => reply,
                Step::Again(why) => {
                    last = why;
                    continue;
                }
            };
            let Some(found) = reply.coordinators.first() else {
                last = "no coordinator in the reply".into();
                continue;
            };
            if let Some(error) = found.error_code.err() {
                last = format!("finding the coordinator of {transactional_id}: {error:?}");
                if error.is_retriable() {
                    continue;
                }
                return Err(Error::Kafka(last));
            }
            let BrokerId(id) = found.node_id;
            let addr = format!("{}:{}", found.host.as_str(), found.port);
            self.addrs.insert(id, addr);
            self.coordinators.insert(transactional_id.to_string(), id);
            return Ok(Step::Done(id));
        }
        Ok(Step::Again(last))
    }

    /// Forgets the coordinator of `transactional_id` (it moved).
    pub fn forget_coordinator(&mut self, transactional_id: &str) {
        self.coordinators.remove(transactional_id);
    }
}
