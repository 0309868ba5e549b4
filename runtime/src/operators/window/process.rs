//! [`WindowProcess`]: the keyed process function that runs windows, with its
//! panes as the key's state and its triggers as the key's timers.
//!
//! Triggers, as Flink's defaults: an event-time window fires once the
//! watermark reaches its last instant, a processing-time one once the clock
//! does. With allowed lateness the pane stays until the watermark passes its
//! end by that much; a record for it arriving meanwhile updates it and fires it
//! again at once. A record late for every window it falls into goes to the late
//! output (or is dropped). Early firings, by processing-time interval or by
//! record count, emit a pane's contents so far and keep it.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{Data, EventTime, Tagged};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operators::keyed_process::{KeyedProcess, KeyedValue};
use crate::operators::window::{Shape, Window, WindowFunction, WindowTime, Windows};
use crate::state::{TimeDomain, Timers};

/// One window of a key and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pane<A> {
    window: Window,
    acc: A,
    records: u64,
    fired: bool,
}

/// A key's open windows (few: one per open window of the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panes<A> {
    panes: Vec<Pane<A>>,
    /// Count windows: how many of the key's windows fired.
    completed: u64,
}

impl<A> Default for Panes<A> {
    fn default() -> Self {
        Panes {
            panes: Vec::new(),
            completed: 0,
        }
    }
}

impl<A: Data> KeyedValue for Panes<A> {
    fn is_cleared(&self) -> bool {
        self.panes.is_empty() && self.completed == 0
    }
}

/// Windows of records of type `T` keyed by `K`, computing `F`.
pub struct WindowProcess<T, K, F> {
    windows: Windows<T>,
    function: Arc<F>,
    /// Whether records late for all their windows go to the side output.
    late_output: bool,
    _key: PhantomData<fn(K)>,
}

impl<T, K, F> WindowProcess<T, K, F> {
    /// Windows `windows` computing `function`; late records to the side output
    /// if `late_output`.
    pub fn new(windows: Windows<T>, function: Arc<F>, late_output: bool) -> Self {
        WindowProcess {
            windows,
            function,
            late_output,
            _key: PhantomData,
        }
    }

    fn domain(&self) -> TimeDomain {
        match self.windows.time {
            WindowTime::Event(_) => TimeDomain::EventTime,
            WindowTime::Processing => TimeDomain::ProcessingTime,
        }
    }

    fn cleanup_time(&self, window: Window) -> EventTime {
        window.max_timestamp().saturating_add(self.windows.lateness)
    }
}

impl<T, K, F> WindowProcess<T, K, F>
where
    T: Data,
    K: Data,
    F: WindowFunction<T, K>,
{
    fn emit(&self, key: &K, pane: &Pane<F::Acc>, out: &mut Vec<Tagged<F::Out, T>>) {
        self.function.emit(key, pane.window, &pane.acc, &mut |r| {
            out.push(Tagged::Main(r))
        });
    }

    /// Emits a pane that is dropped right after, moving its contents.
    fn emit_last(&self, key: &K, pane: Pane<F::Acc>, out: &mut Vec<Tagged<F::Out, T>>) {
        self.function
            .emit_last(key, pane.window, pane.acc, &mut |r| {
                out.push(Tagged::Main(r))
            });
    }

    /// Sets the timers of a new pane.
    fn arm(&self, window: Window, timers: &mut Timers<'_, K>) {
        if let Shape::Count(_) = self.windows.shape {
            return;
        }
        match self.domain() {
            TimeDomain::EventTime => {
                timers.register_event_time(window.max_timestamp());
                if self.windows.lateness > 0 {
                    timers.register_event_time(self.cleanup_time(window));
                }
                if let Some(every) = self.windows.early_every {
                    timers.register_processing_time(next_period(timers.now(), every));
                }
            }
            TimeDomain::ProcessingTime => timers.register_processing_time(window.max_timestamp()),
        }
    }

    /// Cancels the timers of a pane merged into another.
    fn disarm(&self, window: Window, timers: &mut Timers<'_, K>) {
        match self.domain() {
            TimeDomain::EventTime => {
                timers.delete_event_time(window.max_timestamp());
                if self.windows.lateness > 0 {
                    timers.delete_event_time(self.cleanup_time(window));
                }
            }
            TimeDomain::ProcessingTime => timers.delete_processing_time(window.max_timestamp()),
        }
    }

    /// Adds `record` to the pane of `window` (merging sessions first) and fires
    /// it if a late or early firing is due.
    fn add(
        &self,
        key: &K,
        panes: &mut Panes<F::Acc>,
        window: Window,
        record: &T,
        timers: &mut Timers<'_, K>,
        out: &mut Vec<Tagged<F::Out, T>>,
    ) {
        let index = if let Shape::Session { .. } = self.windows.shape {
            self.merge_sessions(panes, window, timers)
        } else {
            panes.panes.iter().position(|p| p.window == window)
        };
        let index = index.unwrap_or_else(|| {
            self.arm(window, timers);
            panes.panes.push(Pane {
                window,
                acc: F::Acc::default(),
                records: 0,
                fired: false,
            });
            panes.panes.len() - 1
        });
        let pane = &mut panes.panes[index];
        self.function.add(&mut pane.acc, record);
        pane.records += 1;
        let early = self
            .windows
            .early_every_count
            .is_some_and(|n| pane.records.is_multiple_of(n));
        if pane.fired || early {
            self.emit(key, pane, out);
        }
    }

    /// Merges every pane overlapping `window` into one covering them all;
    /// returns its index (`None` if none overlapped).
    fn merge_sessions(
        &self,
        panes: &mut Panes<F::Acc>,
        window: Window,
        timers: &mut Timers<'_, K>,
    ) -> Option<usize> {
        let overlaps =
            |p: &Pane<F::Acc>| p.window.start < window.end && window.start < p.window.end;
        let first = panes.panes.iter().position(overlaps)?;
        let mut merged = panes.panes.swap_remove(first);
        let old = merged.window;
        let mut changed = window.start < old.start || window.end > old.end;
        merged.window.start = merged.window.start.min(window.start);
        merged.window.end = merged.window.end.max(window.end);
        let mut i = 0;
        while i < panes.panes.len() {
            if panes.panes[i].window.start < merged.window.end
                && merged.window.start < panes.panes[i].window.end
            {
                let other = panes.panes.swap_remove(i);
                self.disarm(other.window, timers);
                merged.window.start = merged.window.start.min(other.window.start);
                merged.window.end = merged.window.end.max(other.window.end);
                self.function.merge(&mut merged.acc, other.acc);
                merged.records += other.records;
                merged.fired |= other.fired;
                changed = true;
            } else {
                i += 1;
            }
        }
        if changed {
            self.disarm(old, timers);
            self.arm(merged.window, timers);
        }
        panes.panes.push(merged);
        Some(panes.panes.len() - 1)
    }
}

impl<T, K, F> KeyedProcess for WindowProcess<T, K, F>
where
    T: Data,
    K: Data + StableHash + Eq + std::hash::Hash,
    F: WindowFunction<T, K>,
{
    type Key = K;
    type In = T;
    type Out = Tagged<F::Out, T>;
    type State = Panes<F::Acc>;

    fn process(
        &self,
        key: &K,
        panes: &mut Panes<F::Acc>,
        record: T,
        timers: &mut Timers<'_, K>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if let Shape::Count(n) = self.windows.shape {
            let window = Window {
                start: (panes.completed * n) as EventTime,
                end: ((panes.completed + 1) * n) as EventTime,
            };
            self.add(key, panes, window, &record, timers, out);
            if panes.panes.first().is_some_and(|p| p.records >= n) {
                let pane = panes.panes.remove(0);
                if !pane.fired && self.windows.early_every_count != Some(n) {
                    self.emit_last(key, pane, out);
                }
                panes.completed += 1;
            }
            return Ok(());
        }
        let (time, watermark) = match &self.windows.time {
            WindowTime::Event(timestamp) => (timestamp(&record), timers.watermark()),
            WindowTime::Processing => (timers.now(), EventTime::MIN),
        };
        let mut on_time = false;
        self.windows.shape.assign(time, |window| {
            if self.cleanup_time(window) <= watermark {
                return;
            }
            on_time = true;
            self.add(key, panes, window, &record, timers, out);
        });
        if !on_time && self.late_output {
            out.push(Tagged::Side(record));
        }
        Ok(())
    }

    fn on_timer(
        &self,
        key: &K,
        panes: &mut Panes<F::Acc>,
        time: EventTime,
        domain: TimeDomain,
        timers: &mut Timers<'_, K>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        if domain != self.domain() {
            // An early firing: what each unfired pane holds so far.
            for pane in panes.panes.iter().filter(|p| !p.fired) {
                self.emit(key, pane, out);
            }
            // The next firing is the next period after now: periods missed
            // while the task was busy or stopped are not made up in a burst.
            if let Some(every) = self.windows.early_every {
                if panes.panes.iter().any(|p| !p.fired) {
                    timers.register_processing_time(next_period(timers.now(), every));
                }
            }
            return Ok(());
        }
        let mut i = 0;
        while i < panes.panes.len() {
            let pane = &panes.panes[i];
            let due = !pane.fired && pane.window.max_timestamp() <= time;
            if self.cleanup_time(pane.window) <= time {
                // Its last firing: the pane's contents move into the result.
                let pane = panes.panes.swap_remove(i);
                if due {
                    self.emit_last(key, pane, out);
                }
                continue;
            }
            if due {
                panes.panes[i].fired = true;
                self.emit(key, &panes.panes[i], out);
            }
            i += 1;
        }
        // Keep the panes in window order: sessions and tests read them so.
        panes.panes.sort_by_key(|p| p.window);
        Ok(())
    }
}

/// The first multiple of `every` (ms) after `now`: when an early firing is due.
fn next_period(now: EventTime, every: i64) -> EventTime {
    now - now.rem_euclid(every) + every
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
