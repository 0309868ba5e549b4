//! `wordcount`: lines of text files split into words, with a running count per word.
//!
//! Words are maximal runs of alphanumeric characters, lowercased. Like Flink's
//! streaming word count, every occurrence emits the word's count so far, so the
//! last line of a word in the output carries its total.

use std::path::PathBuf;

use clap::Parser;

use crate::api::{JobBuilder, JobGraph};
use crate::error::{Error, Result};
use crate::operators::TextFileSource;
use crate::pipelines::{sink_lines, Target};

/// Arguments of `wordcount`.
#[derive(Debug, Parser)]
#[command(name = "wordcount", about = "Text files in, (word, count) out")]
pub struct WordCountArgs {
    /// Text files to read (UTF-8).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Directory for the exactly-once file sink (lines go to stdout if not given).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Builds the `wordcount` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<WordCountArgs>("wordcount", args)?;
    for path in &args.input {
        std::fs::File::open(path).map_err(|e| {
            Error::Usage(format!(
                "pipeline wordcount: --input {}: {e}",
                path.display()
            ))
        })?;
        if path.is_dir() {
            return Err(Error::Usage(format!(
                "pipeline wordcount: --input {} is a directory",
                path.display()
            )));
        }
    }
    let mut job = JobBuilder::new("wordcount");
    job.parallelism(parallelism);
    let files = args.input.clone();
    let counts = job
        .source("lines", move |_| TextFileSource::new(files.clone()))
        .flat_map("split", |line: String, out: &mut Vec<(String, u64)>| {
            for word in line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                out.push((word.to_lowercase(), 1));
            }
        })
        .key_by_ref(|r: &(String, u64)| &r.0)
        .reduce("count", |acc: &mut (String, u64), r: (String, u64)| {
            acc.1 += r.1
        });
    sink_lines(
        counts,
        &Target::from_output(args.output.as_deref()),
        |r: &(String, u64), out| {
            out.extend_from_slice(r.0.as_bytes());
            out.push(b',');
            out.extend_from_slice(itoa::Buffer::new().format(r.1).as_bytes());
        },
    );
    job.build()
}
