//! The typed ends of a logical channel that crosses the data plane.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, TryRecvError, TrySendError};

use crate::data::{Barrier, Batch, Data, Message, SavepointFormat, SnapshotKind, Watermark};
use crate::error::{Error, Result};
use crate::exec::channel::{ChannelSender, CreditReturn};
use crate::ids::CheckpointId;
use crate::net::frame::FrameKind;
use crate::net::plane::{ChannelKey, Connection, DataPlane};

const BATCH: u8 = 0;
const BARRIER: u8 = 1;
const END: u8 = 2;
const WATERMARK: u8 = 3;
const IDLE: u8 = 4;

fn encode<T: Data>(message: &Message<T>, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    match message {
        Message::Batch(batch) => {
            buf.push(BATCH);
            bincode::serialize_into(&mut *buf, batch)
                .map_err(|e| Error::Internal(format!("encoding a batch: {e}")))?;
        }
        Message::Barrier(b) => {
            buf.push(BARRIER);
            buf.extend_from_slice(&b.id.0.to_le_bytes());
            buf.extend_from_slice(&b.last_completed.map_or(0, |c| c.0).to_le_bytes());
            buf.push(match b.kind {
                SnapshotKind::Checkpoint => 0,
                SnapshotKind::Savepoint(SavepointFormat::Canonical) => 1,
                SnapshotKind::Savepoint(SavepointFormat::Native) => 2,
            });
        }
        Message::Watermark(w) => {
            buf.push(WATERMARK);
            buf.extend_from_slice(&w.0.to_le_bytes());
        }
        Message::Encoded(bytes) => {
            buf.push(BATCH);
            buf.extend_from_slice(bytes);
        }
        Message::Idle => buf.push(IDLE),
        Message::EndOfInput => buf.push(END),
    }
    Ok(())
}

fn decode<T: Data>(payload: &[u8]) -> Result<Message<T>> {
    let bad = |what: String| Error::Internal(format!("decoding a data frame: {what}"));
    match payload.split_first() {
        // Left encoded: the consuming task decodes batches.
        Some((&BATCH, rest)) => Ok(Message::Encoded(rest.to_vec())),
        Some((&BARRIER, rest)) => {
            let word = |at: usize| {
                rest.get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| bad("short barrier".into()))
            };
            let (id, last_completed) = (word(0)?, word(8)?);
            let kind = match rest.get(16) {
                Some(0) => SnapshotKind::Checkpoint,
                Some(1) => SnapshotKind::Savepoint(SavepointFormat::Canonical),
                Some(2) => SnapshotKind::Savepoint(SavepointFormat::Native),
                _ => return Err(bad("bad barrier kind".into())),
            };
            Ok(Message::Barrier(Barrier {
                id: CheckpointId(id),
                kind,
                last_completed: (last_completed > 0).then_some(CheckpointId(last_completed)),
            }))
        }
        Some((&WATERMARK, rest)) => rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(|b| Message::Watermark(Watermark(i64::from_le_bytes(b))))
            .ok_or_else(|| bad("short watermark".into())),
        Some((&IDLE, _)) => Ok(Message::Idle),
        Some((&END, _)) => Ok(Message::EndOfInput),
        _ => Err(bad("unknown message tag".into())),
    }
}

/// The sending end of a logical channel to another worker. Each message spends a
/// credit; without one, `send` waits (backpressure) and `try_send` reports full.
pub struct RemoteSender<T> {
    conn: Arc<Connection>,
    key: ChannelKey,
    credits: Receiver<()>,
    buf: Vec<u8>,
    /// The last batch sent, emptied: the next one to fill.
    spare: Batch<T>,
}

impl<T: Data> RemoteSender<T> {
    /// A sender of channel `key` over `conn`.
    pub fn new(conn: Arc<Connection>, key: ChannelKey) -> Self {
        let credits = conn.credit_tokens(key);
        RemoteSender {
            conn,
            key,
            credits,
            buf: Vec::new(),
            spare: Vec::new(),
        }
    }

    fn write(&mut self, message: Message<T>) -> Result<()> {
        encode(&message, &mut self.buf)?;
        self.conn.write(FrameKind::Data, self.key, &self.buf)?;
        if let Message::Batch(mut batch) = message {
            batch.clear();
            self.spare = batch;
        }
        Ok(())
    }
}

impl<T: Data> ChannelSender<T> for RemoteSender<T> {
    fn try_send(
        &mut self,
        message: Message<T>,
    ) -> std::result::Result<(), TrySendError<Message<T>>> {
        match self.credits.try_recv() {
            // A failed write means the connection is gone: nothing to hand back.
            Ok(()) => self
                .write(message)
                .map_err(|_| TrySendError::Disconnected(Message::EndOfInput)),
            Err(TryRecvError::Empty) => Err(TrySendError::Full(message)),
            Err(TryRecvError::Disconnected) => Err(TrySendError::Disconnected(message)),
        }
    }

    fn send(&mut self, message: Message<T>) -> Result<()> {
        self.credits.recv().map_err(|_| Error::ChannelClosed)?;
        self.write(message)
    }

    fn empty_batch(&mut self, capacity: usize) -> Batch<T> {
        let mut batch = std::mem::take(&mut self.spare);
        batch.reserve(capacity);
        batch
    }
}

/// Registers the receiving end of channel `key` from `conn`'s peer: messages land
/// in a bounded queue of `capacity`, the peer is granted that many credits, and the
/// returned [`CreditReturn`] earns one back each time the task takes a message.
///
/// Earned credits are granted in batches of half the capacity (one frame, not one
/// per message). That never stalls the sender: while it waits for credits, more
/// than half the capacity is queued here for the task to take.
pub fn register_inbound<T: Data>(
    plane: &DataPlane,
    conn: &Arc<Connection>,
    key: ChannelKey,
    capacity: usize,
) -> Result<(Receiver<Message<T>>, CreditReturn)> {
    let (tx, rx) = bounded::<Message<T>>(capacity);
    plane.register(
        conn,
        key,
        Box::new(move |payload| {
            let message = decode::<T>(payload)?;
            // Credits bound what the peer sends to `capacity`, so this never blocks.
            tx.try_send(message)
                .map_err(|_| Error::Internal("a peer sent beyond its credit".into()))
        }),
    );
    conn.grant(key, capacity as u32)?;
    let conn = conn.clone();
    let batch = (capacity as u32 / 2).max(1);
    let mut earned = 0;
    let credit: CreditReturn = Box::new(move || {
        earned += 1;
        if earned == batch {
            earned = 0;
            let _ = conn.grant(key, batch);
        }
    });
    Ok((rx, credit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::decode_batch;
    use std::time::Duration;

    fn planes() -> (
        Arc<DataPlane>,
        Arc<DataPlane>,
        Arc<Connection>,
        Arc<Connection>,
    ) {
        let a = DataPlane::bind("a", "127.0.0.1:0").unwrap();
        let b = DataPlane::bind("b", "127.0.0.1:0").unwrap();
        let (a2, b_addr) = (a.clone(), b.address().to_string());
        let dialer = std::thread::spawn(move || {
            a2.connection("b", &b_addr, Duration::from_secs(5)).unwrap()
        });
        let b_side = b
            .connection("a", &a.address().to_string(), Duration::from_secs(5))
            .unwrap();
        let a_side = dialer.join().unwrap();
        (a, b, a_side, b_side)
    }

    #[test]
    fn messages_arrive_in_order_and_credits_bound_what_is_in_flight() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let key = (1, 7);
        let (rx, mut credit) = register_inbound::<u64>(&b, &b_to_a, key, 4).unwrap();
        let mut tx = RemoteSender::<u64>::new(a_to_b, key);
        let sender = std::thread::spawn(move || {
            for i in 0..100u64 {
                tx.send(Message::Batch(vec![i; 3])).unwrap();
            }
            tx.send(Message::Barrier(Barrier {
                id: CheckpointId(9),
                kind: SnapshotKind::Savepoint(SavepointFormat::Native),
                last_completed: Some(CheckpointId(8)),
            }))
            .unwrap();
            tx.send(Message::Watermark(Watermark(-5))).unwrap();
            tx.send(Message::Idle).unwrap();
            tx.send(Message::EndOfInput).unwrap();
        });
        let mut next = 0u64;
        let mut watermarks = 0;
        loop {
            std::thread::sleep(Duration::from_millis(1));
            assert!(rx.len() <= 4, "more in flight than credited: {}", rx.len());
            let message = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            credit();
            match message {
                Message::Encoded(bytes) => {
                    assert_eq!(decode_batch::<u64>(&bytes).unwrap(), vec![next; 3]);
                    next += 1;
                }
                Message::Batch(_) => panic!("a remote batch arrives encoded"),
                Message::Barrier(b) => {
                    assert_eq!(next, 100);
                    assert_eq!(
                        b,
                        Barrier {
                            id: CheckpointId(9),
                            kind: SnapshotKind::Savepoint(SavepointFormat::Native),
                            last_completed: Some(CheckpointId(8)),
                        }
                    );
                }
                Message::Watermark(w) => {
                    assert_eq!(w, Watermark(-5));
                    watermarks += 1;
                }
                Message::Idle => watermarks += 1,
                Message::EndOfInput => break,
            }
        }
        assert_eq!(
            watermarks, 2,
            "the watermark and the idle mark, after the barrier"
        );
        sender.join().unwrap();
    }

    #[test]
    fn a_full_channel_does_not_hold_back_another_on_the_same_connection() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let (_stuck_rx, _stuck_credit) = register_inbound::<u64>(&b, &b_to_a, (1, 1), 2).unwrap();
        let (free_rx, mut free_credit) = register_inbound::<u64>(&b, &b_to_a, (1, 2), 2).unwrap();
        let mut stuck = RemoteSender::<u64>::new(a_to_b.clone(), (1, 1));
        let mut free = RemoteSender::<u64>::new(a_to_b, (1, 2));
        stuck.send(Message::Batch(vec![1])).unwrap();
        stuck.send(Message::Batch(vec![2])).unwrap();
        assert!(matches!(
            stuck.try_send(Message::Batch(vec![3])),
            Err(TrySendError::Full(_))
        ));
        for i in 0..50 {
            free.send(Message::Batch(vec![i])).unwrap();
            assert!(
                matches!(free_rx.recv_timeout(Duration::from_secs(5)), Ok(Message::Encoded(b)) if decode_batch::<u64>(&b).unwrap() == vec![i])
            );
            free_credit();
        }
    }

    /// Receives until the channel fails or nothing comes for 5 s: the batches it
    /// got, and whether it failed.
    fn drain(rx: &Receiver<Message<u64>>) -> (Vec<Vec<u64>>, bool) {
        let mut got = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Message::Encoded(bytes)) => got.push(decode_batch(&bytes).unwrap()),
                Ok(_) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return (got, true),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return (got, false),
            }
        }
    }

    fn data(b: &[u64]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&Message::Batch(b.to_vec()), &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_frame_beyond_the_credit_fails_the_channel_instead_of_vanishing() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let (rx, _credit) = register_inbound::<u64>(&b, &b_to_a, (1, 5), 2).unwrap();
        let (marker, _) = register_inbound::<u64>(&b, &b_to_a, (1, 50), 1).unwrap();
        // A peer that ignores its credit of 2 and sends a third and a fourth batch.
        for i in 0..4u64 {
            a_to_b.write(FrameKind::Data, (1, 5), &data(&[i])).unwrap();
        }
        // Frames are read in order: once the marker is in, all four were handled.
        a_to_b.write(FrameKind::Data, (1, 50), &data(&[0])).unwrap();
        assert!(marker.recv_timeout(Duration::from_secs(5)).is_ok());
        let (got, failed) = drain(&rx);
        assert_eq!(got, [vec![0], vec![1]], "what fit was delivered in order");
        assert!(
            failed,
            "the channel fails: batches 2 and 3 must not just be skipped"
        );
    }

    #[test]
    fn an_undecodable_frame_fails_the_channel() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let (rx, _credit) = register_inbound::<u64>(&b, &b_to_a, (1, 6), 8).unwrap();
        a_to_b.write(FrameKind::Data, (1, 6), &data(&[1])).unwrap();
        a_to_b.write(FrameKind::Data, (1, 6), &[9, 9, 9]).unwrap();
        a_to_b.write(FrameKind::Data, (1, 6), &data(&[3])).unwrap();
        let (got, failed) = drain(&rx);
        assert_eq!(got, [vec![1]]);
        assert!(failed);
    }

    #[test]
    fn a_batch_arrives_encoded_and_a_damaged_one_does_not_decode() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let (rx, _credit) = register_inbound::<u64>(&b, &b_to_a, (1, 7), 8).unwrap();
        let mut damaged = data(&[1, 2, 3]);
        damaged.truncate(damaged.len() - 3);
        a_to_b.write(FrameKind::Data, (1, 7), &damaged).unwrap();
        let Ok(Message::Encoded(bytes)) = rx.recv_timeout(Duration::from_secs(5)) else {
            panic!("the reader hands a batch on encoded");
        };
        let error = decode_batch::<u64>(&bytes).unwrap_err().to_string();
        assert!(error.contains("decoding a data frame"), "{error}");
    }

    #[test]
    fn a_broken_connection_fails_its_channels() {
        let (a, b, a_to_b, b_to_a) = planes();
        let (rx, _credit) = register_inbound::<u64>(&b, &b_to_a, (1, 7), 8).unwrap();
        a_to_b.write(FrameKind::Data, (1, 7), &data(&[1])).unwrap();
        // The peer process dies: its end of the connection closes.
        a_to_b.close();
        drop(a);
        let (got, failed) = drain(&rx);
        assert_eq!(got, [vec![1]]);
        assert!(
            failed,
            "the receiving task must not wait forever for the rest"
        );
    }

    #[test]
    fn frames_of_a_forgotten_attempt_are_dropped() {
        let (_a, b, a_to_b, b_to_a) = planes();
        let (rx, _credit) = register_inbound::<u64>(&b, &b_to_a, (3, 1), 8).unwrap();
        let mut stale = RemoteSender::<u64>::new(a_to_b, (3, 1));
        stale.send(Message::Batch(vec![1])).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        b.forget_attempt(3);
        stale.send(Message::Batch(vec![2])).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "a fenced attempt delivers nothing"
        );
    }
}
