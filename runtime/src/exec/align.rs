//! Barrier alignment across a task's input channels, as a pure state machine.
//!
//! When barrier `n` arrives on a channel, that channel is blocked: the runner
//! stops reading it (nothing is dropped; the records wait in the channel) until
//! barrier `n` has arrived on every channel that has not ended. Then the task
//! snapshots, forwards the barrier and every channel opens again. A channel that
//! has ended counts as aligned, so a finished upstream never holds a checkpoint back.

use crate::error::{Error, Result};
use crate::ids::CheckpointId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    Open,
    /// Barrier of the checkpoint being aligned has arrived; not read until aligned.
    Blocked,
    Ended,
}

/// What the runner does after telling the aligner about a barrier or an end of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Keep reading the channels that are not blocked.
    Wait,
    /// Every live channel has delivered the barrier: snapshot and forward it.
    Aligned(CheckpointId),
}

/// Tracks, per input channel, whether it is open, blocked at a barrier or ended.
#[derive(Debug)]
pub struct Aligner {
    channels: Vec<ChannelState>,
    /// The checkpoint whose barriers are being aligned.
    current: Option<CheckpointId>,
    /// The last checkpoint aligned, to reject barriers that go backwards.
    last: Option<CheckpointId>,
}

impl Aligner {
    /// An aligner for `channels` input channels, all open.
    pub fn new(channels: usize) -> Self {
        Aligner {
            channels: vec![ChannelState::Open; channels],
            current: None,
            last: None,
        }
    }

    /// Whether the runner must not read `channel` now.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.channels[channel] != ChannelState::Open
    }

    /// Whether every channel has ended.
    pub fn all_ended(&self) -> bool {
        self.channels.iter().all(|c| *c == ChannelState::Ended)
    }

    /// Whether a checkpoint is being aligned (some channel is blocked).
    pub fn is_aligning(&self) -> bool {
        self.current.is_some()
    }

    /// Barrier `id` arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, id: CheckpointId) -> Result<Alignment> {
        if self.channels[channel] != ChannelState::Open {
            return Err(Error::Internal(format!(
                "barrier {id} read from channel {channel}, which is not open"
            )));
        }
        if self.last.is_some_and(|last| id <= last) {
            return Err(Error::Internal(format!(
                "barrier {id} arrived after barrier {} was aligned",
                self.last.map_or(0, |l| l.0)
            )));
        }
        match self.current {
            None => self.current = Some(id),
            Some(current) if current != id => {
                return Err(Error::Internal(format!(
                    "barrier {id} arrived on channel {channel} while aligning {current}"
                )))
            }
            Some(_) => {}
        }
        self.channels[channel] = ChannelState::Blocked;
        Ok(self.check())
    }

    /// `channel` ended.
    pub fn on_end(&mut self, channel: usize) -> Alignment {
        self.channels[channel] = ChannelState::Ended;
        self.check()
    }

    fn check(&mut self) -> Alignment {
        let Some(id) = self.current else {
            return Alignment::Wait;
        };
        if self.channels.contains(&ChannelState::Open) {
            return Alignment::Wait;
        }
        for c in &mut self.channels {
            if *c == ChannelState::Blocked {
                *c = ChannelState::Open;
            }
        }
        self.current = None;
        self.last = Some(id);
        Alignment::Aligned(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: CheckpointId = CheckpointId(1);
    const C2: CheckpointId = CheckpointId(2);

    #[test]
    fn a_single_channel_aligns_at_once() {
        let mut a = Aligner::new(1);
        assert_eq!(a.on_barrier(0, C1).unwrap(), Alignment::Aligned(C1));
        assert!(!a.is_blocked(0));
    }

    #[test]
    fn channels_with_the_barrier_are_blocked_until_all_have_it() {
        let mut a = Aligner::new(3);
        assert_eq!(a.on_barrier(1, C1).unwrap(), Alignment::Wait);
        assert!(a.is_blocked(1) && !a.is_blocked(0) && !a.is_blocked(2));
        assert_eq!(a.on_barrier(0, C1).unwrap(), Alignment::Wait);
        assert_eq!(a.on_barrier(2, C1).unwrap(), Alignment::Aligned(C1));
        assert!((0..3).all(|c| !a.is_blocked(c)));
        assert_eq!(a.on_barrier(2, C2).unwrap(), Alignment::Wait);
    }

    #[test]
    fn an_ended_channel_counts_as_aligned() {
        let mut a = Aligner::new(2);
        assert_eq!(a.on_barrier(0, C1).unwrap(), Alignment::Wait);
        assert_eq!(a.on_end(1), Alignment::Aligned(C1));
        assert_eq!(a.on_barrier(0, C2).unwrap(), Alignment::Aligned(C2));
        assert_eq!(a.on_end(0), Alignment::Wait);
        assert!(a.all_ended());
    }

    #[test]
    fn a_barrier_of_the_next_checkpoint_during_alignment_is_an_error() {
        let mut a = Aligner::new(2);
        a.on_barrier(0, C1).unwrap();
        assert!(a.on_barrier(1, C2).is_err());
        assert!(
            a.on_barrier(0, C1).is_err(),
            "a blocked channel must not be read"
        );
    }

    #[test]
    fn barriers_must_not_go_backwards() {
        let mut a = Aligner::new(1);
        a.on_barrier(0, C2).unwrap();
        assert!(a.on_barrier(0, C1).is_err());
    }
}
