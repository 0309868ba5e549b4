//! The pipelines shipped in the `weir` binary, registered by name, with their arguments.

pub mod generator;
pub mod grep;
pub mod kafka_formats;
pub mod kafka_io;
pub mod kafka_records;
pub mod keyed_sum;
pub mod nexmark;
pub mod simulated_work;
pub mod sql;
pub mod state_machine;
pub mod wordcount;

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

use crate::api::{JobGraph, Stream};
use crate::data::Data;
use crate::error::{Error, Result};
use crate::kafka::KafkaSink;
use crate::operators::{DiscardSink, FileSink, LineFormat, StdoutSink};

/// A pipeline the binary can run by name.
pub struct Pipeline {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// Builds the job from its arguments at a default parallelism.
    pub build: fn(&[String], u32) -> Result<JobGraph>,
    /// Its argument parser, for help and listings.
    pub command: fn() -> clap::Command,
}

/// Every built-in pipeline.
pub fn all() -> Vec<Pipeline> {
    vec![
        Pipeline {
            name: "wordcount",
            about: "text files in, (word, count) out: a running count per word",
            build: wordcount::build,
            command: wordcount::WordCountArgs::command,
        },
        Pipeline {
            name: "grep",
            about: "generated 100-byte log lines filtered by a substring or a regex",
            build: grep::build,
            command: grep::GrepArgs::command,
        },
        Pipeline {
            name: "keyed-sum",
            about: "generated (key, value) records, a running sum per key, (key, sum) out per record",
            build: keyed_sum::build,
            command: keyed_sum::KeyedSumArgs::command,
        },
        Pipeline {
            name: "nexmark",
            about: "the Nexmark auction events (persons, auctions, bids) and one query: q0-q5, q7, q8, q11, q12",
            build: nexmark::build,
            command: nexmark::NexmarkArgs::command,
        },
        Pipeline {
            name: "sql",
            about: "a SQL script (CREATE TABLEs, INSERT INTOs) over the data dictionary; `weir sql` runs one",
            build: sql::build,
            command: sql::SqlJobArgs::command,
        },
        Pipeline {
            name: "state-machine",
            about: "per-address event sequences checked against a state machine; invalid transitions raise alerts",
            build: state_machine::build,
            command: state_machine::StateMachineArgs::command,
        },
    ]
}

/// The pipeline called `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<Pipeline> {
    let mut all = all();
    match all.iter().position(|p| p.name == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => Err(Error::Usage(format!(
            "unknown pipeline {name:?}; known pipelines: {} (see `weir pipelines`)",
            all.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Builds pipeline `name` from its arguments at `parallelism` with `max_parallelism`
/// key groups: how a worker builds the same job as its coordinator.
pub fn build(
    name: &str,
    args: &[String],
    parallelism: u32,
    max_parallelism: u32,
) -> Result<JobGraph> {
    let mut graph = (find(name)?.build)(args, parallelism)?;
    graph.max_parallelism = max_parallelism;
    Ok(graph)
}

/// `keyed`, its next operator's state forgotten `ttl` after a key's last
/// record if set (`--state-ttl`).
pub(crate) fn expiring<T: crate::data::Data>(
    keyed: crate::api::KeyedStream<T, u64>,
    ttl: Option<std::time::Duration>,
) -> crate::api::KeyedStream<T, u64> {
    match ttl {
        Some(ttl) => keyed.state_ttl(ttl),
        None => keyed,
    }
}

/// Arguments every generating pipeline takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GeneratorArgs {
    /// Records to generate in all (unbounded if not given).
    #[arg(long)]
    pub records: Option<u64>,
    /// Records per second over all source subtasks (as fast as possible if not given).
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for the exactly-once file sink (lines go to stdout if not given).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Drop the output instead of writing it (for benchmarks).
    #[arg(long, conflicts_with = "output")]
    pub discard: bool,
    /// Kafka input and output.
    #[command(flatten)]
    pub kafka: kafka_io::KafkaArgs,
}

impl GeneratorArgs {
    /// Where the output goes: dropped, a Kafka topic, the file sink, or stdout.
    pub fn target(&self) -> Result<Target> {
        if self.discard {
            return Ok(Target::Discard);
        }
        if let Some(output) = self.kafka.output()? {
            return Ok(Target::Kafka(Box::new(output)));
        }
        Ok(Target::from_output(self.output.as_deref()))
    }

    /// Fails if an input topic is given to `pipeline`, which only generates.
    pub fn refuse_input_topic(&self, pipeline: &str) -> Result<()> {
        match &self.kafka.input_topic {
            Some(topic) => Err(Error::Usage(format!(
                "pipeline {pipeline} generates its input; it cannot read topic {topic}"
            ))),
            None => Ok(()),
        }
    }
}

pub(crate) fn positive_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of records per second"
        )),
    }
}

/// Parses a pipeline's arguments; errors become one line naming the pipeline.
pub fn parse<A: Parser>(pipeline: &str, args: &[String]) -> Result<A> {
    A::try_parse_from(std::iter::once(pipeline.to_string()).chain(args.iter().cloned())).map_err(
        |e| {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Error::Usage(e.render().to_string())
                }
                _ => {
                    let rendered = e.render().to_string();
                    let first = rendered.lines().next().unwrap_or("invalid arguments");
                    Error::Usage(format!(
                        "pipeline {pipeline}: {} (see `weir pipelines`)",
                        first.trim_start_matches("error: ")
                    ))
                }
            }
        },
    )
}

/// Where a pipeline's results go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Lines on standard output (at least once).
    Stdout,
    /// The exactly-once file sink in this directory.
    Files(PathBuf),
    /// Nowhere (benchmarks).
    Discard,
    /// A Kafka topic, each line a record's value (no key, round-robin).
    Kafka(Box<kafka_io::KafkaOutput>),
}

impl Target {
    /// The file sink for `Some(dir)`, stdout otherwise.
    pub fn from_output(output: Option<&Path>) -> Self {
        output.map_or(Target::Stdout, |d| Target::Files(d.to_path_buf()))
    }
}

/// Ends `stream` in `target`, formatting records as lines with `format`.
pub fn sink_lines<T: Data>(stream: Stream<T>, target: &Target, format: LineFormat<T>) {
    match target {
        Target::Files(dir) => {
            let dir = dir.clone();
            stream.sink("sink", move |_| FileSink::new(dir.clone(), format));
        }
        Target::Stdout => {
            stream.sink("sink", move |_| StdoutSink::new(format));
        }
        Target::Discard => {
            stream.sink("sink", |_| DiscardSink::new());
        }
        Target::Kafka(output) => {
            let output = output.clone();
            stream.sink("sink", move |_| {
                KafkaSink::new(output.config.clone(), &output.topic, move |r: &T, out| {
                    format(r, out)
                })
                .guarantee(output.guarantee)
                .transaction_timeout(output.transaction_timeout)
            });
        }
    }
}
