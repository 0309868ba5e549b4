//! `weir bench`: runs a reference pipeline and prints one `RESULT` line.
//!
//! `rps_per_core` is input records divided by the CPU-seconds (user + sys, from
//! `getrusage`, summed over every process of the run) spent in the measured
//! window, which holds steady on a shared machine where wall-clock rates do not.
//! With `--rate`, keyed-sum's source stamps records and its sink measures their
//! end-to-end latency (`p50_us`, `p99_us`, `p999_us`; the sink's first second is
//! left out as warm-up). With `--workers N`, the job runs on N worker processes
//! (see [`crate::cli::bench_cluster`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cli::bench_cluster::{cpu_seconds_of, run_on_workers, Cost};
use crate::cli::run::StateOptions;
use crate::cli::{parse_duration, parse_interval, Interval};
use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::runner::{LocalRunner, RunConfig};
use crate::histogram::Histogram;
use crate::keys::DEFAULT_MAX_PARALLELISM;
use crate::operators::LatencySink;
use crate::pipelines::grep::Mode;
use crate::pipelines::nexmark::model::Kind;
use crate::state::{Backend, StateConfig};

/// The benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Generated log lines filtered by substring or regex (see --mode).
    Grep,
    /// Generated keyed records, a running sum per key behind a hash exchange.
    KeyedSum,
    /// Large keyed state: full and incremental checkpoint, savepoint, restore and
    /// rescale from 2 to 3 (see --keys, --value-bytes, --state-backend).
    StateSize,
    /// A Nexmark query over generated auction events (see --query, --events).
    Nexmark,
    /// A SQL script over the built-in Nexmark tables (see --query-file, --events).
    Sql,
}

/// Options of `weir bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 1)]
    pub parallelism: u32,
    /// Time between checkpoints (`off`: only the final one).
    #[arg(long, default_value = "off", value_parser = parse_interval)]
    pub checkpoint_interval: Interval,
    /// Input records (default: 200 M for grep, 300 M for keyed-sum, 100 M on
    /// workers, 10 M Nexmark events, 10 s worth with --rate).
    #[arg(long, visible_alias = "events")]
    pub records: Option<u64>,
    /// nexmark: the query.
    #[arg(long, value_enum, default_value = "q0")]
    pub query: crate::pipelines::nexmark::Query,
    /// sql: the script (a Nexmark query in SQL, such as examples/sql/nexmark/q5.sql).
    #[arg(long, required_if_eq("scenario", "sql"))]
    pub query_file: Option<std::path::PathBuf>,
    /// grep: substring or regex.
    #[arg(long, value_enum, default_value = "substring")]
    pub mode: Mode,
    /// keyed-sum, state-size: number of keys (state-size: default 1,000,000).
    #[arg(long)]
    pub keys: Option<u64>,
    /// keyed-sum: forget a key's sum this long after its last record (see
    /// `weir run keyed-sum --state-ttl`).
    #[arg(long, value_parser = parse_duration)]
    pub state_ttl: Option<Duration>,
    /// state-size: bytes of each key's value.
    #[arg(long, default_value_t = 1000)]
    pub value_bytes: usize,
    /// state-size: how the savepoints write RocksDB state (`native` or `canonical`).
    #[arg(long, default_value = "native", value_parser = crate::cli::parse_savepoint_format)]
    pub savepoint_format: crate::data::SavepointFormat,
    /// Records per batch between tasks.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// keyed-sum: run on this many `weir worker` processes (0: in this process).
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// keyed-sum: records per second; measures end-to-end latency instead of
    /// peak throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long a partly filled batch may wait before it is sent (0: send at once).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub buffer_timeout: Duration,
    /// Where checkpoints go (a directory, file:// or s3:// URI; default: a
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub checkpoint_dir: Option<String>,
    /// The state backend.
    #[command(flatten)]
    pub state: StateOptions,
    /// keyed-sum: read `key,value` records from Kafka instead of generating them.
    #[command(flatten)]
    pub kafka: KafkaBench,
}

/// keyed-sum from a Kafka topic (filled by `weir kafka-load`; `--records` must be
/// its record count) to a Kafka topic.
#[derive(Debug, clap::Args)]
pub struct KafkaBench {
    /// Kafka bootstrap servers.
    #[arg(long, requires = "input_topic")]
    pub kafka_brokers: Option<String>,
    /// The topic to read, to its end offsets at the start.
    #[arg(long, requires = "kafka_brokers")]
    pub input_topic: Option<String>,
    /// The topic to write (else the sums are dropped).
    #[arg(long, requires = "input_topic")]
    pub output_topic: Option<String>,
    /// The output's guarantee: exactly-once, at-least-once or none.
    #[arg(long, default_value = "exactly-once")]
    pub kafka_guarantee: String,
}

impl KafkaBench {
    /// The keyed-sum arguments that read and write Kafka, and the label's words.
    fn pipeline_args(&self) -> Option<(Vec<String>, String)> {
        let (brokers, input) = (self.kafka_brokers.as_ref()?, self.input_topic.as_ref()?);
        let mut args = vec![
            "--kafka-brokers".to_string(),
            brokers.clone(),
            "--input-topic".to_string(),
            input.clone(),
            "--input-bounded".to_string(),
        ];
        let label = match &self.output_topic {
            Some(output) => {
                args.extend([
                    "--output-topic".to_string(),
                    output.clone(),
                    "--kafka-guarantee".to_string(),
                    self.kafka_guarantee.clone(),
                ]);
                format!(
                    " input=kafka output=kafka guarantee={}",
                    self.kafka_guarantee
                )
            }
            None => {
                args.push("--discard".to_string());
                " input=kafka output=discard".to_string()
            }
        };
        Some((args, label))
    }
}

/// Runs `weir bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    if args.scenario != Scenario::KeyedSum && args.state_ttl.is_some() {
        return Err(Error::Usage("--state-ttl applies to keyed-sum only".into()));
    }
    if args.scenario == Scenario::StateSize {
        return state_size(&args);
    }
    if args.scenario != Scenario::KeyedSum && (args.workers > 0 || args.rate.is_some()) {
        return Err(Error::Usage(
            "--workers and --rate apply to keyed-sum only".into(),
        ));
    }
    if args.parallelism == 0 {
        return Err(Error::Usage("--parallelism must be at least 1".into()));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Usage("--rate must be a positive number".into()));
    }
    let records = args.records.unwrap_or(match (args.scenario, args.rate) {
        (_, Some(rate)) => (rate * 10.0) as u64,
        (Scenario::Grep, None) => 200_000_000,
        (Scenario::KeyedSum, None) if args.workers > 0 => 100_000_000,
        (Scenario::KeyedSum, None) => 300_000_000,
        (Scenario::StateSize, None) => 0,
        (Scenario::Nexmark | Scenario::Sql, None) => 10_000_000,
    });
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io("creating the bench directory", &dir, e))?;
    let latency_file = dir.join("latency");
    let keys = args.keys.unwrap_or(10_000);
    let (pipeline, mut pipeline_args, label) = match args.scenario {
        Scenario::StateSize => return Err(Error::Internal("state-size has its own runner".into())),
        Scenario::Grep => (
            "grep",
            vec![
                "--mode".to_string(),
                if args.mode == Mode::Regex {
                    "regex"
                } else {
                    "substring"
                }
                .to_string(),
            ],
            format!(
                "scenario=grep mode={}",
                if args.mode == Mode::Regex {
                    "regex"
                } else {
                    "substring"
                }
            ),
        ),
        Scenario::Nexmark => (
            "nexmark",
            vec!["--query".to_string(), args.query.name()],
            format!(
                "nexmark-{} state={}",
                args.query.name(),
                args.state.state_backend.name()
            ),
        ),
        Scenario::Sql => {
            let file = args.query_file.clone().unwrap_or_default();
            let query = file
                .file_stem()
                .map_or("sql".to_string(), |s| s.to_string_lossy().into_owned());
            let mut sql = vec!["--file".to_string(), file.display().to_string()];
            for table in ["person", "auction", "bid"] {
                sql.extend([
                    "--option".to_string(),
                    format!("{table}.events.num={records}"),
                ]);
            }
            (
                "sql",
                sql,
                format!(
                    "sql-nexmark-{query} state={}",
                    args.state.state_backend.name()
                ),
            )
        }
        Scenario::KeyedSum => {
            let mut pipeline_args = vec!["--keys".to_string(), keys.to_string()];
            let mut ttl = String::new();
            if let Some(state_ttl) = args.state_ttl {
                let state_ttl = humantime::format_duration(state_ttl).to_string();
                pipeline_args.extend(["--state-ttl".to_string(), state_ttl.clone()]);
                ttl = format!(" state_ttl={}", state_ttl.replace(' ', ""));
            }
            (
                "keyed-sum",
                pipeline_args,
                format!(
                    "scenario=keyed-sum keys={} state={}{ttl} workers={}",
                    keys,
                    match args.state.state_backend {
                        Backend::Heap => "heap".to_string(),
                        Backend::Rocksdb =>
                            format!("rocksdb cache_mb={}", args.state.state_cache_mb),
                    },
                    args.workers
                ),
            )
        }
    };
    if args.scenario != Scenario::Sql {
        pipeline_args.extend(["--records".to_string(), records.to_string()]);
    }
    let kafka = match args.scenario {
        Scenario::KeyedSum => args.kafka.pipeline_args(),
        _ => None,
    };
    if kafka.is_some() && args.rate.is_some() {
        return Err(Error::Usage(
            "--rate generates records; it does not apply to --input-topic".into(),
        ));
    }
    let mut label = label;
    if let Some((kafka_args, words)) = &kafka {
        pipeline_args.extend(kafka_args.iter().cloned());
        label.push_str(words);
    } else {
        match args.rate {
            Some(rate) => pipeline_args.extend([
                "--rate".to_string(),
                rate.to_string(),
                "--latency-file".to_string(),
                latency_file.display().to_string(),
            ]),
            None if args.scenario == Scenario::Sql => {}
            None => pipeline_args.push("--discard".to_string()),
        }
    }
    let config = RunConfig {
        checkpoint_dir: args
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| dir.join("checkpoints").display().to_string()),
        checkpoint_interval: args.checkpoint_interval.0,
        max_restarts: 0,
        exec: ExecConfig {
            batch_size: args.batch_size.max(1),
            buffer_timeout: args.buffer_timeout,
            state: StateConfig {
                local_dir: args
                    .state
                    .state_dir
                    .clone()
                    .unwrap_or_else(|| dir.join("state")),
                ..args.state.config()
            },
            ..ExecConfig::default()
        },
        ..RunConfig::default()
    };
    let measured = if args.workers > 0 {
        run_on_workers(
            pipeline,
            pipeline_args,
            args.parallelism,
            args.workers,
            (2 * args.parallelism).div_ceil(args.workers),
            config,
        )
        .map(|cost| (cost, None))
    } else {
        run_here(pipeline, &pipeline_args, args.parallelism, config, records)
    };
    let latency = match (&measured, args.rate) {
        (Ok(_), Some(_)) => Some(read_latency(&latency_file, args.parallelism)),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let (cost, checkpoints) = measured?;
    let mut line = format!(
        "RESULT {label} parallelism={} checkpoint_interval={} buffer_timeout={} records={records}",
        args.parallelism,
        args.checkpoint_interval
            .0
            .map_or("off".to_string(), |d| humantime::format_duration(d)
                .to_string()),
        humantime::format_duration(args.buffer_timeout),
    );
    if let Some(c) = checkpoints {
        line.push_str(&format!(" checkpoints={c}"));
    }
    if let Some(rate) = args.rate {
        line.push_str(&format!(" rate={rate}"));
    }
    line.push_str(&format!(
        " seconds={:.3} cpu_seconds={:.3} rps={:.0} rps_per_core={:.0}",
        cost.wall,
        cost.cpu,
        records as f64 / cost.wall,
        records as f64 / cost.cpu.max(1e-9)
    ));
    if let Some(h) = latency {
        let h = h?;
        let us = |q: f64| h.quantile(q) as f64 / 1e3;
        line.push_str(&format!(
            " latency_samples={} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
            h.count(),
            us(0.5),
            us(0.99),
            us(0.999)
        ));
    }
    println!("{line}");
    Ok(())
}

/// `weir bench state-size`, in a temporary directory unless --checkpoint-dir is given.
fn state_size(args: &BenchArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    let config = RunConfig {
        checkpoint_dir: args
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| dir.join("checkpoints").display().to_string()),
        max_restarts: 0,
        exec: ExecConfig {
            batch_size: args.batch_size.max(1),
            state: StateConfig {
                local_dir: args
                    .state
                    .state_dir
                    .clone()
                    .unwrap_or_else(|| dir.join("state")),
                ..args.state.config()
            },
            ..ExecConfig::default()
        },
        ..RunConfig::default()
    };
    let outcome = crate::cli::bench_state::run(
        args.keys.unwrap_or(1_000_000),
        args.value_bytes,
        args.savepoint_format,
        config,
    );
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// Runs the pipeline in this process; returns its cost and completed checkpoints.
fn run_here(
    pipeline: &str,
    args: &[String],
    parallelism: u32,
    config: RunConfig,
    records: u64,
) -> Result<(Cost, Option<u64>)> {
    let graph = crate::pipelines::build(pipeline, args, parallelism, DEFAULT_MAX_PARALLELISM)?;
    let runner = LocalRunner::new(graph, config)?;
    let metrics = runner.metrics();
    let (cpu0, wall0) = (cpu_seconds_of(libc::RUSAGE_SELF), Instant::now());
    runner.run()?;
    let cost = Cost {
        cpu: cpu_seconds_of(libc::RUSAGE_SELF) - cpu0,
        wall: wall0.elapsed().as_secs_f64(),
    };
    // A SQL query reads the events of each kind it names (a join of two
    // kinds reads both); the records it is measured by are all the events.
    let read = metrics.source_records();
    let whole = if pipeline == "sql" {
        read > 0 && read_some_kinds(read, records)
    } else {
        read == records
    };
    if !whole {
        return Err(Error::Internal(format!(
            "the sources read {read} records, expected {records}"
        )));
    }
    Ok((
        cost,
        Some(metrics.checkpoints_completed.load(Ordering::Relaxed)),
    ))
}

/// Whether `read` records are all the events of some of the Nexmark kinds
/// among `events` events.
fn read_some_kinds(read: u64, events: u64) -> bool {
    let kinds = [Kind::Person, Kind::Auction, Kind::Bid];
    (1..8u32).any(|mask| {
        let of = |(i, kind): (usize, &Kind)| (mask >> i & 1 == 1).then(|| kind.count(events));
        kinds.iter().enumerate().filter_map(of).sum::<u64>() == read
    })
}

/// Merges the latency histograms the sink subtasks wrote.
fn read_latency(path: &Path, parallelism: u32) -> Result<Histogram> {
    let mut total = Histogram::default();
    for subtask in 0..parallelism {
        let file: PathBuf = LatencySink::<()>::file(path, subtask);
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io("reading", &file, e))?;
        let h = Histogram::from_text(&text).map_err(|reason| {
            Error::Internal(format!("latency histogram {}: {reason}", file.display()))
        })?;
        total.merge(&h);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_query_reads_all_the_events_of_the_kinds_it_names() {
        // Of 1,000 events: 20 persons, 60 auctions, 920 bids.
        for read in [20, 60, 920, 80, 940, 980, 1_000] {
            assert!(read_some_kinds(read, 1_000), "{read}");
        }
        for read in [0, 19, 921, 2_000] {
            assert!(!read_some_kinds(read, 1_000), "{read}");
        }
    }
}
