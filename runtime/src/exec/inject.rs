//! Failure injection for `--inject-failures N`: kill a random task at N seeded random moments.
//!
//! A bounded job can end before a random moment comes; the failures still due
//! then strike between its final checkpoint's completion and its commit, one per
//! attempt, so a job asked for N failures always takes N.

use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Decides when, and which task, to fail next.
#[derive(Debug)]
pub struct FailureInjector {
    remaining: u32,
    rng: Rng,
    next_at: Option<Instant>,
    max_delay: Duration,
}

impl FailureInjector {
    /// An injector that fails `count` times, seeded with `seed`, each time at a
    /// random moment up to `max_delay` after the job (re)started.
    pub fn new(count: u32, seed: u64, max_delay: Duration) -> Self {
        FailureInjector {
            remaining: count,
            rng: Rng::new(seed ^ 0x5eed_fa11),
            next_at: None,
            max_delay: max_delay.max(Duration::from_millis(50)),
        }
    }

    /// Failures still to inject.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Called when a deployment starts: schedules its failure, if any are left.
    pub fn on_start(&mut self, now: Instant) {
        self.next_at = (self.remaining > 0).then(|| {
            let nanos = self.rng.below(self.max_delay.as_nanos() as u64);
            now + Duration::from_nanos(nanos)
        });
    }

    /// When the next failure is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// When the final checkpoint of a bounded job has completed: if failures are
    /// left, the index (below `tasks`) of the task to fail before it commits.
    pub fn poll_final(&mut self, tasks: usize) -> Option<usize> {
        if self.remaining > 0 && tasks > 0 {
            self.next_at = None;
            self.remaining -= 1;
            Some(self.rng.below(tasks as u64) as usize)
        } else {
            None
        }
    }

    /// If a failure is due at `now`, the index (below `tasks`) of the task to fail.
    pub fn poll(&mut self, now: Instant, tasks: usize) -> Option<usize> {
        if self.next_at.is_some_and(|t| t <= now) && tasks > 0 {
            self.next_at = None;
            self.remaining -= 1;
            Some(self.rng.below(tasks as u64) as usize)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_exactly_the_requested_number_of_failures() {
        let mut inj = FailureInjector::new(2, 1, Duration::from_millis(100));
        let t0 = Instant::now();
        let mut fired = 0;
        for _ in 0..5 {
            inj.on_start(t0);
            if inj.poll(t0 + Duration::from_secs(1), 4).is_some() {
                fired += 1;
            }
        }
        assert_eq!(fired, 2);
        assert_eq!(inj.remaining(), 0);
    }

    #[test]
    fn failures_not_yet_due_strike_at_the_final_checkpoint_one_per_attempt() {
        let mut inj = FailureInjector::new(2, 1, Duration::from_secs(3600));
        let t0 = Instant::now();
        inj.on_start(t0);
        assert_eq!(inj.poll(t0, 4), None);
        assert!(inj.poll_final(4).is_some_and(|victim| victim < 4));
        assert_eq!(inj.next_at(), None);
        inj.on_start(t0);
        assert!(inj.poll_final(4).is_some());
        assert_eq!(inj.remaining(), 0);
        inj.on_start(t0);
        assert_eq!(inj.poll_final(4), None);
        assert_eq!(inj.next_at(), None);
    }
}
