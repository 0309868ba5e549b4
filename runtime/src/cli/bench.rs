//! `weir bench`: runs a reference pipeline to a discarding sink and prints `RESULT` lines.
//!
//! `rps_per_core` is input records divided by the CPU-seconds (user + sys, from
//! `getrusage`) the process spent in the measured window, which holds steady on a
//! shared machine where wall-clock rates do not.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cli::{parse_interval, Interval};
use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::runner::{LocalRunner, RunConfig};
use crate::pipelines::grep::Mode;
use crate::pipelines::{grep, keyed_sum, GeneratorArgs, Target};

/// The benchmark scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Generated log lines filtered by substring or regex (see --mode).
    Grep,
    /// Generated keyed records, a running sum per key behind a hash exchange.
    KeyedSum,
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
    /// Input records (default: 200 M for grep, 300 M for keyed-sum).
    #[arg(long)]
    pub records: Option<u64>,
    /// grep: substring or regex.
    #[arg(long, value_enum, default_value = "substring")]
    pub mode: Mode,
    /// keyed-sum: number of keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Records per batch between tasks.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
}

/// Process CPU time (user + sys) so far, in seconds.
#[allow(unsafe_code)]
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zero-initialised struct we own; an
    // all-zero rusage is a valid value of the type.
    let usage = unsafe {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed().assume_init();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `weir bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    let records = args.records.unwrap_or(match args.scenario {
        Scenario::Grep => 200_000_000,
        Scenario::KeyedSum => 300_000_000,
    });
    let common = GeneratorArgs {
        records: Some(records),
        rate: None,
        seed: 0,
        output: None,
    };
    let (graph, label) = match args.scenario {
        Scenario::Grep => (
            grep::job(&common, args.mode, None, args.parallelism, &Target::Discard)?,
            format!(
                "scenario=grep mode={}",
                if args.mode == Mode::Regex {
                    "regex"
                } else {
                    "substring"
                }
            ),
        ),
        Scenario::KeyedSum => (
            keyed_sum::job(&common, args.keys, args.parallelism, &Target::Discard)?,
            format!("scenario=keyed-sum keys={} state=heap", args.keys),
        ),
    };
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    let config = RunConfig {
        checkpoint_dir: dir.display().to_string(),
        checkpoint_interval: args.checkpoint_interval.0,
        max_restarts: 0,
        exec: ExecConfig {
            batch_size: args.batch_size.max(1),
            ..ExecConfig::default()
        },
        ..RunConfig::default()
    };
    let runner = LocalRunner::new(graph, config)?;
    let metrics = runner.metrics();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let outcome = runner.run();
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    let read = metrics.source_records();
    if read != records {
        return Err(Error::Internal(format!(
            "the sources read {read} records, expected {records}"
        )));
    }
    println!(
        "RESULT {label} parallelism={} checkpoint_interval={} records={records} checkpoints={} seconds={wall:.3} cpu_seconds={cpu:.3} rps={:.0} rps_per_core={:.0}",
        args.parallelism,
        args.checkpoint_interval.0.map_or("off".to_string(), |d| humantime::format_duration(d).to_string()),
        metrics.checkpoints_completed.load(Ordering::Relaxed),
        records as f64 / wall,
        records as f64 / cpu.max(1e-9),
    );
    Ok(())
}
