//! Probing one side of a join with a batch of the other's keys, and when its
//! rows go into the index. An append-only side keeps the rows that came since
//! the index last took them in as a tail, with their keys, outside the
//! index: a probe scans the tail once with the probe batch's few keys. Once
//! the probes have scanned the tail [`SCANS_PER_ROW`] times over, it goes
//! into the index. A side probed rarely (the bids of Nexmark q7, probed once
//! per window by its highest price) then never pays to index every row it
//! keeps; a side probed by every batch is indexed after a few scans.
//! Scanning a row costs a few comparisons of its key, indexing it a hash
//! table insert and later its removal, several times as much: hence eight
//! scans per row. (With two, q7's bids, each scanned by the two or three
//! windows it may pair with, went into the index now and then: 14% of its
//! time in `perf`.)

use std::collections::HashMap;

use datafusion_common::arrow::row::Rows as KeyRows;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::sql::join_side::{Side, TailCounts};

/// How many times over the probes may scan the tail before it is indexed.
const SCANS_PER_ROW: usize = 8;

impl Side {
    /// The pairs of the probe batch's rows (of keys `keys`) with this side's
    /// live rows, in probe row order: each probe row's index in `these`, its
    /// partner in `those`.
    pub fn probe(&mut self, keys: &KeyRows, these: &mut Vec<u32>, those: &mut Vec<(u64, u32)>) {
        if self.tail.rows > 0 {
            self.tail.scanned += self.tail.rows;
            if self.tail.scanned > SCANS_PER_ROW * self.tail.added {
                self.index_tail();
            }
        }
        let first = self.first;
        for row in 0..keys.num_rows() {
            if self.index.is_empty() {
                break;
            }
            if let Some(rows) = self.index.get_mut(keys.row(row).as_ref()) {
                rows.retain(|&mut (sequence, _)| sequence >= first);
                for &pair in rows.iter() {
                    these.push(row as u32);
                    those.push(pair);
                }
            }
        }
        if self.tail.rows == 0 {
            return;
        }
        let found = these.len();
        self.scan_tail(keys, these, those);
        if found > 0 && these.len() > found {
            // Indexed and tail pairs, back in probe row order (then by arrival).
            let mut pairs: Vec<(u32, (u64, u32))> = these.drain(..).zip(those.drain(..)).collect();
            pairs.sort_unstable();
            for (row, pair) in pairs {
                these.push(row);
                those.push(pair);
            }
        }
    }

    /// The tail's rows whose keys are among `keys`, with the probe rows.
    fn scan_tail(&self, keys: &KeyRows, these: &mut Vec<u32>, those: &mut Vec<(u64, u32)>) {
        let start = usize::try_from(self.indexed_to.saturating_sub(self.first)).unwrap_or(0);
        let tail = (self.first..)
            .zip(&self.kept)
            .skip(start)
            .filter_map(|(sequence, kept)| Some((sequence, kept.keys.as_ref()?)));
        if keys.num_rows() == 1 {
            // One probe key (a window's result probing the rows of its
            // window): compare it with each row's, no table needed.
            let key = keys.row(0);
            for (sequence, tail_keys) in tail {
                for row in 0..tail_keys.num_rows() {
                    if tail_keys.row(row) == key {
                        these.push(0);
                        those.push((sequence, row as u32));
                    }
                }
            }
            return;
        }
        let mut probes: HashMap<&[u8], SmallVec<[u32; 1]>, FxBuildHasher> =
            HashMap::with_capacity_and_hasher(keys.num_rows(), FxBuildHasher);
        for row in 0..keys.num_rows() {
            probes
                .entry(keys.row(row).data())
                .or_default()
                .push(row as u32);
        }
        let mut found: Vec<(u32, (u64, u32))> = Vec::new();
        for (sequence, tail_keys) in tail {
            for row in 0..tail_keys.num_rows() {
                if let Some(rows) = probes.get(tail_keys.row(row).data()) {
                    found.extend(rows.iter().map(|&p| (p, (sequence, row as u32))));
                }
            }
        }
        found.sort_unstable();
        for (row, pair) in found {
            these.push(row);
            those.push(pair);
        }
    }

    /// Puts the tail's rows in the index.
    pub(crate) fn index_tail(&mut self) {
        if self.tail.rows == 0 {
            return;
        }
        let first = self.first;
        let start = usize::try_from(self.indexed_to.saturating_sub(first)).unwrap_or(0);
        for at in start..self.kept.len() {
            if let Some(keys) = self.kept[at].keys.take() {
                self.index_rows(first + at as u64, &keys);
            }
        }
        self.indexed_to = first + self.kept.len() as u64;
        self.tail = TailCounts::default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
    use datafusion_common::arrow::row::{RowConverter, SortField};

    use super::*;

    fn keys(converter: &RowConverter, values: &[i64]) -> KeyRows {
        let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        converter.convert_columns(&[column]).unwrap()
    }

    /// A side holding batches of `values`, each row's key its value.
    fn side(converter: &RowConverter, batches: &[&[i64]], lazy: bool) -> Side {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let mut side = Side::new(&schema, false, lazy);
        for values in batches {
            let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
            let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
            let n = values.len();
            side.keep(
                batch,
                keys(converter, values),
                vec![0; n],
                0,
                i64::MAX,
                Vec::new(),
            );
        }
        side
    }

    fn probe(side: &mut Side, converter: &RowConverter, values: &[i64]) -> Vec<(u32, (u64, u32))> {
        let (mut these, mut those) = (Vec::new(), Vec::new());
        side.probe(&keys(converter, values), &mut these, &mut those);
        these.into_iter().zip(those).collect()
    }

    #[test]
    fn a_lazy_side_pairs_as_an_indexed_one_and_indexes_its_rows_once_probed_often() {
        let converter = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let batches: [&[i64]; 3] = [&[1, 2, 3, 2], &[5, 2], &[3, 9, 1]];
        let mut indexed = side(&converter, &batches, false);
        let mut lazy = side(&converter, &batches, true);
        assert_eq!(lazy.tail.rows, 9);
        assert!(lazy.index.is_empty(), "nothing indexed before a probe");
        let probes: [&[i64]; 4] = [&[2, 7, 1], &[3], &[1, 2, 3, 5, 9], &[2, 2]];
        for values in probes.iter().cycle().take(8) {
            let expected = probe(&mut indexed, &converter, values);
            assert!(!expected.is_empty());
            assert_eq!(probe(&mut lazy, &converter, values), expected, "{values:?}");
        }
        assert_eq!(
            lazy.tail.rows, 9,
            "eight probes scanned the rows eight times over"
        );
        let expected = probe(&mut indexed, &converter, &[1]);
        assert_eq!(probe(&mut lazy, &converter, &[1]), expected);
        // The ninth scanned them more than eight times over: indexed.
        assert_eq!(lazy.tail.rows, 0);
        assert_eq!(lazy.index.len(), indexed.index.len());

        // Rows kept later wait in a new tail; both kinds of rows pair.
        for side in [&mut indexed, &mut lazy] {
            let column: ArrayRef = Arc::new(Int64Array::from(vec![2i64, 4]));
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
            let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
            side.keep(
                batch,
                keys(&converter, &[2, 4]),
                vec![0; 2],
                0,
                i64::MAX,
                Vec::new(),
            );
        }
        assert_eq!(lazy.tail.rows, 2);
        let expected = probe(&mut indexed, &converter, &[4, 2]);
        assert_eq!(probe(&mut lazy, &converter, &[4, 2]), expected);
        assert_eq!(expected.first(), Some(&(0, (3, 1))));
    }
}
