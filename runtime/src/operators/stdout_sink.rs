//! A sink that prints records as lines on standard output (at least once: a replay
//! after a failure prints records again). For trying jobs; use the file sink for results.

use std::io::{BufWriter, Stdout, Write};

use crate::data::{Barrier, Batch, Data};
use crate::error::{Error, Result};

use crate::operator::Operator;
use crate::operators::LineFormat;
use crate::state::OperatorSnapshot;

/// Prints records as lines.
pub struct StdoutSink<T> {
    format: LineFormat<T>,
    out: BufWriter<Stdout>,
    line: Vec<u8>,
}

impl<T> StdoutSink<T> {
    /// A sink formatting records with `format`.
    pub fn new(format: LineFormat<T>) -> Self {
        StdoutSink {
            format,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
            line: Vec::with_capacity(256),
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("writing", "standard output", e))
    }
}

impl<T: Data> Operator for StdoutSink<T> {
    type In = T;
    type Out = ();

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        for record in input.drain(..) {
            self.line.clear();
            (self.format)(&record, &mut self.line);
            self.line.push(b'\n');
            self.out
                .write_all(&self.line)
                .map_err(|e| Error::io("writing", "standard output", e))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.flush()?;
        Ok(OperatorSnapshot::default())
    }

    fn end_of_input(&mut self, _output: &mut Batch<()>) -> Result<()> {
        self.flush()
    }
}
