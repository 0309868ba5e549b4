//! A log-linear histogram of nanosecond durations, for latency percentiles.
//!
//! Values below 128 ns have a bucket each; above, every power of two is split
//! into 64 buckets, so a bucket's width is at most 1/64 (1.6 %) of its values.
//! Recording is an index computation and an increment: no allocation.

use std::fmt::Write as _;

/// Sub-buckets per power of two.
const SUB: u64 = 64;
/// Buckets in all: exact ones below `2 * SUB`, then `SUB` per power of two.
const BUCKETS: usize = (2 * SUB + 57 * SUB) as usize;

/// Counts of durations in nanoseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = u64::from(63 - v.leading_zeros()) - 6;
    let top = v >> shift;
    (2 * SUB + (shift - 1) * SUB + (top - SUB)) as usize
}

/// The smallest value of bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = (i - 2 * SUB) / SUB + 1;
    let top = (i - 2 * SUB) % SUB + SUB;
    top << shift
}

impl Histogram {
    /// Counts one value.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.record_n(nanos, 1);
    }

    /// Counts `n` values of `nanos`.
    #[inline]
    pub fn record_n(&mut self, nanos: u64, n: u64) {
        self.counts[index(nanos)] += n;
        self.total += n;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1): the lower bound of the bucket holding
    /// the `ceil(q * count)`-th smallest value; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total.max(1));
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank && *c > 0 {
                return lower_bound(i);
            }
        }
        0
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Text form: one `value_ns count` line per non-empty bucket.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let _ = writeln!(text, "{} {c}", lower_bound(i));
        }
        text
    }

    /// Reads the text form back; an error names the first bad line.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut h = Histogram::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (v, c) = line
                .split_once(' ')
                .and_then(|(v, c)| Some((v.parse().ok()?, c.trim().parse().ok()?)))
                .ok_or_else(|| format!("bad histogram line {line:?}"))?;
            h.record_n(v, c);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_128_and_within_two_percent_above() {
        for v in [0u64, 1, 127, 128, 129, 1000, 65_535, 1 << 40, u64::MAX] {
            let lo = lower_bound(index(v));
            assert!(lo <= v, "{v}: bucket starts at {lo}");
            assert!(v - lo <= v / 64, "{v}: bucket starts at {lo}");
        }
        assert!(index(u64::MAX) < BUCKETS);
        for i in 1..BUCKETS {
            assert!(lower_bound(i) > lower_bound(i - 1), "bucket {i}");
            assert_eq!(index(lower_bound(i)), i);
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range_and_a_text_round_trip() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 50;
        assert!(near(h.quantile(0.5), 5_000_000), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 9_900_000), "{}", h.quantile(0.99));
        assert!(near(h.quantile(0.999), 9_990_000), "{}", h.quantile(0.999));
        let back = Histogram::from_text(&h.to_text()).unwrap();
        assert_eq!(back.quantile(0.99), h.quantile(0.99));
        let mut merged = back;
        merged.merge(&h);
        assert_eq!(merged.count(), 20_000);
        assert!(Histogram::from_text("12 x").is_err());
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
