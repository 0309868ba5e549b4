//! Frames on a data-plane connection: a small fixed header and a payload.
//!
//! ```text
//! u32 length of what follows (little endian)
//! u8  kind      HELLO | DATA | CREDIT
//! u64 attempt
//! u64 channel
//! ... payload   HELLO: the sender's worker id; DATA: one encoded message; CREDIT: u32 count
//! ```

use std::io::{self, Read, Write};

/// Largest payload accepted (a batch larger than this is a bug or an attack).
pub const MAX_PAYLOAD: usize = 256 << 20;
const HEADER: usize = 1 + 8 + 8;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// First frame on a connection: who is calling.
    Hello = 1,
    /// One message of a logical channel.
    Data = 2,
    /// The receiver of a logical channel can take this many more messages.
    Credit = 3,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The attempt it belongs to.
    pub attempt: u64,
    /// The logical channel (0 for `Hello`).
    pub channel: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Writes the frame (not flushed).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        write_frame(w, self.kind, self.attempt, self.channel, &self.payload)
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        if !(HEADER..=HEADER + MAX_PAYLOAD).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        let mut header = [0u8; HEADER];
        r.read_exact(&mut header)?;
        let kind = match header[0] {
            1 => FrameKind::Hello,
            2 => FrameKind::Data,
            3 => FrameKind::Credit,
            k => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown frame kind {k}"),
                ))
            }
        };
        let attempt = u64::from_le_bytes(header[1..9].try_into().unwrap_or_default());
        let channel = u64::from_le_bytes(header[9..17].try_into().unwrap_or_default());
        let mut payload = vec![0u8; len - HEADER];
        r.read_exact(&mut payload)?;
        Ok(Some(Frame {
            kind,
            attempt,
            channel,
            payload,
        }))
    }
}

/// Writes a frame from parts, without building a [`Frame`] (not flushed).
pub fn write_frame(
    w: &mut impl Write,
    kind: FrameKind,
    attempt: u64,
    channel: u64,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(HEADER + payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut header = [0u8; 4 + HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4] = kind as u8;
    header[5..13].copy_from_slice(&attempt.to_le_bytes());
    header[13..21].copy_from_slice(&channel.to_le_bytes());
    w.write_all(&header)?;
    w.write_all(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let frames = [
            Frame {
                kind: FrameKind::Hello,
                attempt: 0,
                channel: 0,
                payload: b"w-1".to_vec(),
            },
            Frame {
                kind: FrameKind::Data,
                attempt: 7,
                channel: 42,
                payload: vec![1; 1000],
            },
            Frame {
                kind: FrameKind::Credit,
                attempt: 7,
                channel: 42,
                payload: 8u32.to_le_bytes().to_vec(),
            },
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            f.write_to(&mut bytes).unwrap();
        }
        let mut r = bytes.as_slice();
        for f in &frames {
            assert_eq!(Frame::read_from(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read_from(&mut r).unwrap(), None);
    }

    #[test]
    fn garbage_is_refused_not_allocated() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0x7f, 2];
        assert!(Frame::read_from(&mut r).is_err());
        let mut bytes = Vec::new();
        write_frame(&mut bytes, FrameKind::Data, 1, 1, b"x").unwrap();
        bytes[4] = 9;
        assert!(Frame::read_from(&mut bytes.as_slice()).is_err());
    }
}
