//! Kafka's record batch (format v2, uncompressed), written record by record
//! into one reused buffer: no allocation per record. The header is filled in
//! when the batch is sealed, with the producer id, epoch and first sequence
//! number that make its append idempotent, and the transactional flag.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the batch header before the first record.
const HEADER: usize = 61;
/// Offset of the CRC field; the CRC covers everything after it.
const CRC_AT: usize = 17;
/// The attributes bit of a transactional batch.
const TRANSACTIONAL: i16 = 0x10;

/// Who writes a batch: the idempotent producer's identity, or none (-1s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Writer {
    /// The producer id (-1: none).
    pub producer_id: i64,
    /// The producer epoch (-1: none).
    pub epoch: i16,
    /// The batch is part of a transaction.
    pub transactional: bool,
}

impl Writer {
    /// A producer without an id: its batches are neither idempotent nor transactional.
    pub const NONE: Writer = Writer {
        producer_id: -1,
        epoch: -1,
        transactional: false,
    };
}

/// A record batch being written.
pub(crate) struct RecordBatch {
    buf: BytesMut,
    records: i32,
    first_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        RecordBatch {
            buf: BytesMut::with_capacity(64 << 10),
            records: 0,
            first_timestamp: 0,
            max_timestamp: 0,
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> i32 {
        self.records
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes it takes so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record with `key` and `value` (`None`: null) at `timestamp`
    /// (ms), with `headers` (name, value).
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) {
        if self.records == 0 {
            self.buf.clear();
            self.buf.put_bytes(0, HEADER);
            self.first_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp - self.first_timestamp;
        let offset_delta = i64::from(self.records);
        let field = |bytes: Option<&[u8]>| match bytes {
            Some(b) => varint_len(b.len() as i64) + b.len(),
            None => varint_len(-1),
        };
        let body = 1
            + varint_len(timestamp_delta)
            + varint_len(offset_delta)
            + field(key)
            + field(value)
            + varint_len(headers.len() as i64)
            + headers
                .iter()
                .map(|(name, value)| field(Some(name.as_bytes())) + field(Some(value)))
                .sum::<usize>();
        put_varint(&mut self.buf, body as i64);
        self.buf.put_u8(0);
        put_varint(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        for bytes in [key, value] {
            match bytes {
                Some(b) => {
                    put_varint(&mut self.buf, b.len() as i64);
                    self.buf.put_slice(b);
                }
                None => put_varint(&mut self.buf, -1),
            }
        }
        put_varint(&mut self.buf, headers.len() as i64);
        for (name, value) in headers {
            for bytes in [name.as_bytes(), value] {
                put_varint(&mut self.buf, bytes.len() as i64);
                self.buf.put_slice(bytes);
            }
        }
        self.records += 1;
    }

    /// Seals the batch for `writer`, its first record at `sequence`, and takes
    /// its bytes; the batch is empty after.
    pub fn seal(&mut self, writer: Writer, sequence: i32) -> Bytes {
        let records = self.records;
        self.records = 0;
        let length = (self.buf.len() - 12) as i32;
        let attributes = if writer.transactional {
            TRANSACTIONAL
        } else {
            0
        };
        let mut header = &mut self.buf[..HEADER];
        header.put_i64(0); // base offset: the broker assigns it
        header.put_i32(length);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(2); // magic
        header.put_u32(0); // CRC, below
        header.put_i16(attributes);
        header.put_i32(records - 1); // last offset delta
        header.put_i64(self.first_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(writer.producer_id);
        header.put_i16(writer.epoch);
        header.put_i32(if writer.producer_id < 0 { -1 } else { sequence });
        header.put_i32(records);
        let crc = crc32c::crc32c(&self.buf[CRC_AT + 4..]);
        self.buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        self.buf.split().freeze()
    }
}

/// Bytes of `value` as a zigzag varint.
fn varint_len(value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Writes `value` as a zigzag varint.
fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn a_sealed_batch_decodes_to_its_records_and_writer() {
        let mut batch = RecordBatch::new();
        let long = vec![7u8; 300];
        batch.push(Some(b"k1"), Some(b"v1"), 1_000, &[]);
        batch.push(None, Some(&long), 1_250, &[("why", b"bad"), ("n", b"")]);
        batch.push(Some(b""), None, 990, &[]);
        assert_eq!(batch.len(), 3);
        let writer = Writer {
            producer_id: 42,
            epoch: 3,
            transactional: true,
        };
        let mut bytes = batch.seal(writer, 17);
        assert!(batch.is_empty());
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a valid batch");
        let records = set.records;
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value.as_deref(), Some(&long[..]));
        let headers: Vec<(String, Option<Vec<u8>>)> = records[1]
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
            .collect();
        assert_eq!(headers.len(), 2, "both headers decode: {headers:?}");
        assert!(headers.contains(&("why".to_string(), Some(b"bad".to_vec()))));
        assert!(headers.contains(&("n".to_string(), Some(Vec::new()))));
        assert!(records[0].headers.is_empty());
        assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(records[2].value, None);
        assert_eq!(
            records.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [1_000, 1_250, 990]
        );
        assert_eq!(
            records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            [17, 18, 19]
        );
        assert!(records
            .iter()
            .all(|r| r.transactional && r.producer_id == 42));
        assert!(records.iter().all(|r| r.producer_epoch == 3));
    }

    #[test]
    fn a_batch_is_reused_after_sealing() {
        let mut batch = RecordBatch::new();
        batch.push(Some(b"a"), Some(b"1"), 5, &[]);
        let _ = batch.seal(Writer::NONE, 0);
        batch.push(Some(b"b"), Some(b"2"), 6, &[]);
        let mut bytes = batch.seal(Writer::NONE, 0);
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a valid batch");
        assert_eq!(set.records.len(), 1);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"b"[..]));
        assert_eq!(set.records[0].sequence, -1);
        assert!(!set.records[0].transactional);
    }

    #[test]
    fn varints_are_zigzag() {
        for (value, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (64, vec![128, 1]),
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.to_vec(), bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len());
        }
    }
}
