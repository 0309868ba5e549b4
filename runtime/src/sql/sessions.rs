//! [`OpenSessions`]: the open session windows of every key of a session
//! aggregate, as Flink merges them: a row opens the window `[t, t + gap)`,
//! which merges with every session it overlaps or touches; a session is due
//! when time passes its end. Rows are held by reference ([`RowAt`]); the
//! operator keeps their columns.

use std::collections::{BTreeSet, HashMap};

use rustc_hash::FxBuildHasher;

/// Where a kept row is: its batch's id and its index there.
pub type RowAt = (u32, u32);

/// One open session of a key.
pub struct Session {
    /// Its first row's time.
    pub start: i64,
    /// Its last row's time plus the gap.
    pub end: i64,
    /// Its rows.
    pub rows: Vec<RowAt>,
}

/// A key's open sessions.
struct KeySessions {
    key_group: u32,
    sessions: Vec<Session>,
}

/// The open sessions of every key.
pub struct OpenSessions {
    gap: i64,
    /// Slot of each key with open sessions, by its key in the row format.
    index: HashMap<Box<[u8]>, u32, FxBuildHasher>,
    slots: Vec<Option<(Box<[u8]>, KeySessions)>>,
    free: Vec<u32>,
    /// (end, slot, start): a session due when time passes `end - 1`. Kept
    /// lazily: a session that grew is found early and re-armed, and one
    /// merged into another (or fired) leaves its entry to be skipped.
    timers: BTreeSet<(i64, u32, i64)>,
}

impl OpenSessions {
    /// No sessions, closing after `gap` ms without a row.
    pub fn new(gap: i64) -> Self {
        OpenSessions {
            gap,
            index: HashMap::with_hasher(FxBuildHasher),
            slots: Vec::new(),
            free: Vec::new(),
            timers: BTreeSet::new(),
        }
    }

    /// The slot of `key`, made if the key has no open session.
    pub fn slot(&mut self, key: &[u8], key_group: u32) -> u32 {
        if let Some(&slot) = self.index.get(key) {
            return slot;
        }
        let entry = Some((
            Box::<[u8]>::from(key),
            KeySessions {
                key_group,
                sessions: Vec::new(),
            },
        ));
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key.into(), slot);
        slot
    }

    /// Puts `row`, of time `t`, into the sessions of the key in `slot`: a
    /// new one, or the one it falls in, merging those it bridges.
    pub fn place(&mut self, slot: u32, t: i64, row: RowAt) {
        let (start, end) = (t, t.saturating_add(self.gap));
        let Some((_, key)) = self.slots[slot as usize].as_mut() else {
            return;
        };
        let sessions = &mut key.sessions;
        // Flink's windows merge when they overlap or touch.
        let Some(first) = sessions
            .iter()
            .position(|s| s.start <= end && s.end >= start)
        else {
            sessions.push(Session {
                start,
                end,
                rows: vec![row],
            });
            self.timers.insert((end, slot, start));
            return;
        };
        let mut merged_start = sessions[first].start.min(start);
        let mut merged_end = sessions[first].end.max(end);
        let mut starts_before = vec![sessions[first].start];
        let mut i = first + 1;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.start <= merged_end && s.end >= merged_start {
                let absorbed = sessions.swap_remove(i);
                merged_start = merged_start.min(absorbed.start);
                merged_end = merged_end.max(absorbed.end);
                starts_before.push(absorbed.start);
                sessions[first].rows.extend(absorbed.rows);
                // A merge can reach sessions checked before: look again.
                i = first + 1;
            } else {
                i += 1;
            }
        }
        let session = &mut sessions[first];
        session.start = merged_start;
        session.end = merged_end;
        session.rows.push(row);
        // Every session's start has a timer; a new start needs one.
        if !starts_before.contains(&merged_start) {
            self.timers.insert((merged_end, slot, merged_start));
        }
    }

    /// Adds a session saved by a checkpoint, or `row` to it if it is back
    /// already (its key's slot `slot`).
    pub fn restore(&mut self, slot: u32, start: i64, end: i64, row: RowAt) {
        let Some((_, key)) = self.slots[slot as usize].as_mut() else {
            return;
        };
        match key.sessions.iter_mut().find(|s| s.start == start) {
            Some(session) => session.rows.push(row),
            None => {
                key.sessions.push(Session {
                    start,
                    end,
                    rows: vec![row],
                });
                self.timers.insert((end, slot, start));
            }
        }
    }

    /// Takes out the sessions that end by `time`.
    pub fn due(&mut self, time: i64) -> Vec<Session> {
        let mut due = Vec::new();
        while let Some(&(end, slot, start)) = self.timers.first() {
            if end - 1 > time {
                break;
            }
            self.timers.pop_first();
            let Some((_, key)) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            let Some(i) = key.sessions.iter().position(|s| s.start == start) else {
                continue;
            };
            let now_ends = key.sessions[i].end;
            if now_ends - 1 > time {
                self.timers.insert((now_ends, slot, start));
                continue;
            }
            due.push(key.sessions.swap_remove(i));
            if key.sessions.is_empty() {
                if let Some((bytes, _)) = self.slots[slot as usize].take() {
                    self.index.remove(&bytes);
                }
                self.free.push(slot);
            }
        }
        due
    }

    /// The earliest end of a timer: no session is due before it.
    pub fn next_end(&self) -> Option<i64> {
        self.timers.first().map(|&(end, _, _)| end)
    }

    /// Every open session with its key group.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots
            .iter()
            .flatten()
            .flat_map(|(_, key)| key.sessions.iter().map(|s| (key.key_group, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(sessions: &OpenSessions) -> Vec<(i64, i64, usize)> {
        let mut all: Vec<_> = sessions
            .iter()
            .map(|(_, s)| (s.start, s.end, s.rows.len()))
            .collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn rows_within_the_gap_share_a_session_and_a_bridging_row_merges_two() {
        let mut open = OpenSessions::new(5);
        let ann = open.slot(b"ann", 0);
        open.place(ann, 10, (0, 0));
        open.place(ann, 30, (0, 1));
        open.place(ann, 15, (0, 2)); // touches [10, 15): [10, 20)
        assert_eq!(bounds(&open), [(10, 20, 2), (30, 35, 1)]);
        open.place(ann, 25, (0, 3)); // [25, 30) touches [30, 35) only
        assert_eq!(bounds(&open), [(10, 20, 2), (25, 35, 2)]);
        open.place(ann, 20, (0, 4)); // [20, 25) touches both
        assert_eq!(bounds(&open), [(10, 35, 5)]);
        open.place(ann, 4, (0, 5)); // [4, 9) is apart
        assert_eq!(bounds(&open), [(4, 9, 1), (10, 35, 5)]);

        // Due once time passes the end's last millisecond, and only then.
        assert!(open.due(7).is_empty());
        let due = open.due(8);
        assert_eq!((due.len(), due[0].start), (1, 4));
        assert!(open.due(33).is_empty());
        let due = open.due(34);
        assert_eq!((due[0].start, due[0].end, due[0].rows.len()), (10, 35, 5));
        assert!(open.iter().next().is_none());
        assert_eq!(open.next_end(), None);
    }

    #[test]
    fn a_key_that_closed_its_sessions_gives_its_slot_to_another() {
        let mut open = OpenSessions::new(5);
        let ann = open.slot(b"ann", 1);
        open.place(ann, 0, (0, 0));
        assert_eq!(open.due(10).len(), 1);
        let bob = open.slot(b"bob", 2);
        assert_eq!(bob, ann);
        open.place(bob, 20, (1, 0));
        assert_eq!(open.slot(b"bob", 2), bob);
        let groups: Vec<u32> = open.iter().map(|(g, _)| g).collect();
        assert_eq!(groups, [2]);
    }
}
