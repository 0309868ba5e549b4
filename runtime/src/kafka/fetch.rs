//! Reads a consumer's records in batches. One call to librdkafka's
//! `rd_kafka_consume_batch_queue` hands over a batch of records under one lock,
//! where the rdkafka crate's `poll` takes a lock, reads the clock three times
//! and allocates once per record (a quarter of the Kafka source's CPU time in a
//! profile of keyed-sum from topic to topic). The crate does not wrap the batch
//! call, so this module does: the only `unsafe` code of the source.
//!
//! Only records and consumer errors (an offset out of range) come back from
//! the batch call: librdkafka serves its other operations itself (client
//! errors such as a broker going away are logged while it reconnects), the
//! source assigns its partitions (no rebalances) and commits offsets
//! asynchronously without a callback (no commit results are queued).
#![allow(unsafe_code)]

use std::ffi::CStr;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::{Error, Result};
use crate::kafka::kafka_error;
use crate::kafka::message::KafkaMessage;

/// How a fetch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// Every record fetched went to the callback.
    Read,
    /// A partition's next offset is gone from the broker (retention): the
    /// records after it were not handed over.
    OutOfRange,
}

/// A consumer's queue of fetched records; see the module docs.
pub(crate) struct Fetcher {
    queue: *mut rd::rd_kafka_queue_t,
    messages: Vec<*mut rd::rd_kafka_message_t>,
    /// Names of the topic handles seen, so that no record reads a C string.
    topics: Vec<(*mut rd::rd_kafka_topic_t, String)>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread, and a
// fetcher is only used through `&mut self`.
unsafe impl Send for Fetcher {}

impl Fetcher {
    /// The fetcher of `consumer`'s records. It must be dropped before the consumer.
    pub fn new(consumer: &BaseConsumer) -> Result<Self> {
        // SAFETY: the client handle is valid while `consumer` lives; the call
        // returns a new reference to its consumer queue (or null).
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        if queue.is_null() {
            return Err(kafka_error(
                "reading records",
                "the client has no consumer queue (no group.id?)",
            ));
        }
        Ok(Fetcher {
            queue,
            messages: Vec::new(),
            topics: Vec::new(),
        })
    }

    /// Hands up to `max` fetched records, in order, to `each`, without waiting.
    pub fn fetch(
        &mut self,
        max: usize,
        mut each: impl FnMut(&KafkaMessage<'_>) -> Result<()>,
    ) -> Result<Fetch> {
        self.messages.clear();
        self.messages.reserve(max);
        // SAFETY: the queue is valid while `self` lives, and `messages` has
        // room for `max` pointers, of which librdkafka fills the first `n`.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue, 0, self.messages.as_mut_ptr(), max)
        };
        let Ok(n) = usize::try_from(n) else {
            return Err(kafka_error("reading records", "the batch read failed"));
        };
        // SAFETY: librdkafka wrote `n <= max` valid message pointers.
        unsafe { self.messages.set_len(n.min(max)) };
        let mut outcome = Ok(Fetch::Read);
        for i in 0..self.messages.len() {
            let message = self.messages[i];
            if matches!(outcome, Ok(Fetch::Read)) {
                outcome = self.handle(message, &mut each);
            }
            // SAFETY: each message is destroyed once, after its last use.
            unsafe { rd::rd_kafka_message_destroy(message) };
        }
        self.messages.clear();
        outcome
    }

    /// Hands one message to `each`, unless it is the end of a partition or
    /// an offset out of range.
    fn handle(
        &mut self,
        message: *mut rd::rd_kafka_message_t,
        each: &mut impl FnMut(&KafkaMessage<'_>) -> Result<()>,
    ) -> Result<Fetch> {
        use rd::rd_kafka_resp_err_t as E;
        // SAFETY: `message` is valid until destroyed after this call.
        let m = unsafe { &*message };
        match m.err {
            E::RD_KAFKA_RESP_ERR_NO_ERROR => {}
            E::RD_KAFKA_RESP_ERR__PARTITION_EOF => return Ok(Fetch::Read),
            E::RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET | E::RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE => {
                return Ok(Fetch::OutOfRange)
            }
            _ => {
                // SAFETY: librdkafka returns a NUL-terminated string that lives
                // as long as the message.
                let text = unsafe { CStr::from_ptr(rd::rd_kafka_message_errstr(message)) };
                return Err(Error::Kafka(format!(
                    "reading records: {}",
                    text.to_string_lossy()
                )));
            }
        }
        let topic = self.topic(m.rkt);
        let bytes = |ptr: *mut std::ffi::c_void, len: usize| -> Option<&[u8]> {
            // SAFETY: librdkafka's key and payload are `len` bytes that live as
            // long as the message (null when absent).
            (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
        };
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `message` is valid and `kind` is valid for writes.
        let timestamp = unsafe { rd::rd_kafka_message_timestamp(message, &mut kind) };
        let view = KafkaMessage {
            topic,
            partition: m.partition,
            offset: m.offset,
            timestamp: (timestamp >= 0
                && kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
                .then_some(timestamp),
            key: bytes(m.key, m.key_len),
            value: bytes(m.payload, m.len),
        };
        each(&view).map(|()| Fetch::Read)
    }

    /// The name of topic handle `rkt`.
    fn topic(&mut self, rkt: *mut rd::rd_kafka_topic_t) -> &str {
        let at = match self.topics.iter().position(|(t, _)| *t == rkt) {
            Some(at) => at,
            None => {
                // SAFETY: a message's topic handle and its NUL-terminated name
                // live at least as long as the message.
                let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(rkt)) };
                self.topics.push((rkt, name.to_string_lossy().into_owned()));
                self.topics.len() - 1
            }
        };
        &self.topics[at].1
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // SAFETY: the queue reference taken in `new`, released once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) };
    }
}
