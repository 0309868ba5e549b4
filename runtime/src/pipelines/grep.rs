//! `grep`: generated 100-byte log lines filtered by a substring or a regex.
//!
//! Line `i` is exactly 100 ASCII bytes: `i` zero-padded to 20 digits, a space,
//! `ERROR` if `mix(i) % 10 == 0` else `INFO `, a space, `status=` and
//! `200 + (mix(i) >> 8) % 400`, then a fixed 63-byte filler.

use std::fmt;

use clap::Parser;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::api::{JobBuilder, JobGraph};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::keys::mix;
use crate::pipelines::generator::{block_share, generate_blocks, Generator, GeneratorSource};
use crate::pipelines::{sink_lines, GeneratorArgs, Target};

/// Length of a log line.
pub const LINE_LEN: usize = 100;
const FILLER: &[u8; 63] = b" host=worker-07 path=/api/v1/items/lookup?id=abcdef latency_ms=";

/// One generated log line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LogLine(pub [u8; LINE_LEN]);

impl fmt::Debug for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for LogLine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for LogLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = LogLine;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{LINE_LEN} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<LogLine, E> {
                v.try_into()
                    .map(LogLine)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<LogLine, A::Error> {
                let mut line = [0u8; LINE_LEN];
                for (i, b) in line.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(LogLine(line))
            }
        }
        d.deserialize_bytes(LineVisitor)
    }
}

/// Writes line `i` of the appendix into `line` (all 100 bytes).
pub fn render(i: u64, line: &mut [u8; LINE_LEN]) {
    let mut n = i;
    for b in line[..20].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    line[20] = b' ';
    render_tail(i, line);
}

/// Writes bytes 21..100 of line `i` (everything after the number and its space).
fn render_tail(i: u64, line: &mut [u8; LINE_LEN]) {
    line[26] = b' ';
    line[27..34].copy_from_slice(b"status=");
    line[37..].copy_from_slice(FILLER);
    render_fields(i, line);
}

/// Writes the only bytes after the number that differ between lines: level and status.
#[inline]
fn render_fields(i: u64, line: &mut [u8; LINE_LEN]) {
    let m = mix(i);
    line[21..26].copy_from_slice(if m.is_multiple_of(10) {
        b"ERROR"
    } else {
        b"INFO "
    });
    let status = 200 + (m >> 8) % 400;
    line[34] = b'0' + (status / 100) as u8;
    line[35] = b'0' + (status / 10 % 10) as u8;
    line[36] = b'0' + (status % 10) as u8;
}

/// Generates the appendix's log lines; consecutive lines reuse the previous line's
/// digits and bump them like an odometer instead of formatting the number anew.
#[derive(Clone)]
pub struct LogLines {
    line: [u8; LINE_LEN],
    /// The index the buffer holds, if any.
    current: Option<u64>,
    split: u32,
    splits: u32,
}

impl LogLines {
    /// A generator for one split (set in `open`).
    pub fn new() -> Self {
        LogLines {
            line: [b' '; LINE_LEN],
            current: None,
            split: 0,
            splits: 1,
        }
    }

    #[inline]
    fn advance_to(&mut self, i: u64) {
        if self.current.map(|c| c + 1) == Some(i) {
            // Increment the 20 decimal digits in place.
            for b in self.line[..20].iter_mut().rev() {
                if *b == b'9' {
                    *b = b'0';
                } else {
                    *b += 1;
                    break;
                }
            }
            render_fields(i, &mut self.line);
        } else {
            render(i, &mut self.line);
        }
        self.current = Some(i);
    }
}

impl Default for LogLines {
    fn default() -> Self {
        Self::new()
    }
}

impl Generator for LogLines {
    type Out = LogLine;

    fn open(&mut self, split: u32, splits: u32, _state: Option<&[u8]>) -> Result<()> {
        (self.split, self.splits) = (split, splits);
        Ok(())
    }

    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<LogLine>) {
        let (split, splits) = (self.split, self.splits);
        generate_blocks(position, count, split, splits, out, |i| {
            self.advance_to(i);
            LogLine(self.line)
        });
    }

    fn share(&self, total: u64, split: u32, splits: u32) -> u64 {
        block_share(total, split, splits)
    }
}

/// How lines are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Keep lines containing the pattern.
    Substring,
    /// Keep lines matching the pattern as a regular expression.
    Regex,
}

/// Arguments of `grep`.
#[derive(Debug, Parser)]
#[command(
    name = "grep",
    about = "Generated 100-byte log lines filtered by a substring or a regex"
)]
pub struct GrepArgs {
    #[command(flatten)]
    /// Generator options.
    pub common: GeneratorArgs,
    /// Match mode.
    #[arg(long, value_enum, default_value = "substring")]
    pub mode: Mode,
    /// What to match (default: ERROR in substring mode, `ERROR status=5\d\d` in regex mode).
    #[arg(long)]
    pub pattern: Option<String>,
}

/// Builds the `grep` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<GrepArgs>("grep", args)?;
    args.common.refuse_input_topic("grep")?;
    args.common.kafka.formats.refuse("grep")?;
    let target = args.common.target()?;
    job(&args.common, args.mode, args.pattern, parallelism, &target)
}

/// The `grep` job: generated lines, a filter, and `target`.
pub fn job(
    common: &GeneratorArgs,
    mode: Mode,
    pattern: Option<String>,
    parallelism: u32,
    target: &Target,
) -> Result<JobGraph> {
    let mut job = JobBuilder::new("grep");
    job.parallelism(parallelism);
    let (total, rate) = (common.records, common.rate);
    let lines = job.source("lines", move |_| {
        GeneratorSource::new(LogLines::new(), total, rate)
    });
    let kept = match mode {
        Mode::Substring => {
            let pattern = pattern.unwrap_or_else(|| "ERROR".into()).into_bytes();
            let finder = memchr::memmem::Finder::new(&pattern).into_owned();
            lines.filter("match", move |l: &LogLine| finder.find(&l.0).is_some())
        }
        Mode::Regex => {
            let pattern = pattern.unwrap_or_else(|| r"ERROR status=5\d\d".into());
            let regex = regex::bytes::Regex::new(&pattern).map_err(|e| {
                Error::Usage(format!(
                    "grep: --pattern {pattern:?} is not a valid regex: {e}"
                ))
            })?;
            lines.filter("match", move |l: &LogLine| regex.is_match(&l.0))
        }
    };
    sink_lines(kept, target, |l: &LogLine, out| out.extend_from_slice(&l.0));
    job.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_appendix() {
        let mut line = [0u8; LINE_LEN];
        render(0, &mut line);
        let text = String::from_utf8(line.to_vec()).unwrap();
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("00000000000000000000 "));
        assert_eq!(&text[27..34], "status=");
        assert!(text.ends_with(" host=worker-07 path=/api/v1/items/lookup?id=abcdef latency_ms="));
        let errors = (0..100_000u64)
            .filter(|i| mix(*i).is_multiple_of(10))
            .count();
        assert!((9_000..11_000).contains(&errors));
    }

    #[test]
    fn the_odometer_matches_fresh_rendering() {
        let mut g = LogLines::new();
        let mut out = Vec::new();
        g.generate(0, 3000, &mut out);
        for (i, l) in out.iter().enumerate() {
            let mut fresh = [0u8; LINE_LEN];
            render(i as u64, &mut fresh);
            assert_eq!(l.0, fresh, "line {i}");
        }
        let mut fresh = [0u8; LINE_LEN];
        render(9_999, &mut fresh);
        g.current = Some(9_998);
        render(9_998, &mut g.line);
        g.advance_to(9_999);
        assert_eq!(g.line, fresh);
        g.advance_to(10_000);
        render(10_000, &mut fresh);
        assert_eq!(g.line, fresh);
    }

    #[test]
    fn log_lines_round_trip_through_bincode() {
        let mut line = [0u8; LINE_LEN];
        render(42, &mut line);
        let bytes = bincode::serialize(&LogLine(line)).unwrap();
        assert_eq!(
            bincode::deserialize::<LogLine>(&bytes).unwrap(),
            LogLine(line)
        );
    }
}
