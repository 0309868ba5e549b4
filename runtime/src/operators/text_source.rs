//! A source of the lines of text files; files are spread over the subtasks.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};

use crate::operator::{OperatorContext, Source, SourceStatus};
use crate::state::{OperatorSnapshot, RestoredState};

/// Where a subtask is: which of its files, and the byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    file: usize,
    offset: u64,
}

/// Reads lines of text; subtask `i` of `p` reads files `i, i+p, i+2p, ...`.
/// Lines must be UTF-8; a line that is not fails the job with its file and offset.
pub struct TextFileSource {
    all: Vec<PathBuf>,
    mine: Vec<PathBuf>,
    position: Position,
    reader: Option<BufReader<File>>,
    line: String,
}

impl TextFileSource {
    /// A source over `files`.
    pub fn new(files: Vec<PathBuf>) -> Self {
        TextFileSource {
            all: files,
            mine: Vec::new(),
            position: Position::default(),
            reader: None,
            line: String::new(),
        }
    }

    fn open_current(&mut self) -> Result<()> {
        let path = &self.mine[self.position.file];
        let mut file = File::open(path).map_err(|e| Error::io("opening input", path, e))?;
        file.seek(SeekFrom::Start(self.position.offset))
            .map_err(|e| Error::io("seeking in input", path, e))?;
        self.reader = Some(BufReader::with_capacity(1 << 16, file));
        Ok(())
    }
}

impl Source for TextFileSource {
    type Out = String;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        let (i, p) = (ctx.subtask.index as usize, ctx.subtask.parallelism as usize);
        self.mine = self.all.iter().skip(i).step_by(p).cloned().collect();
        if let Some(position) = restored.and_then(|r| r.position) {
            self.position = serde_json::from_value(position).map_err(|e| Error::State {
                uid: ctx.uid.0.clone(),
                reason: format!("bad position: {e}"),
            })?;
        }
        Ok(())
    }

    fn poll(&mut self, output: &mut Batch<String>, max: usize) -> Result<SourceStatus> {
        while output.len() < max {
            if self.position.file >= self.mine.len() {
                return Ok(SourceStatus::Finished);
            }
            if self.reader.is_none() {
                self.open_current()?;
            }
            let Some(reader) = self.reader.as_mut() else {
                return Err(Error::Internal("input reader missing after open".into()));
            };
            self.line.clear();
            let read = reader
                .read_line(&mut self.line)
                .map_err(|e| Error::BadRecord {
                    operator: "text source".into(),
                    reason: format!(
                        "{} at byte {}: {e}",
                        self.mine[self.position.file].display(),
                        self.position.offset
                    ),
                })?;
            if read == 0 {
                self.reader = None;
                self.position = Position {
                    file: self.position.file + 1,
                    offset: 0,
                };
                continue;
            }
            self.position.offset += read as u64;
            let line = self.line.trim_end_matches(['\n', '\r']);
            output.push(line.to_string());
        }
        Ok(SourceStatus::Ready)
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot {
            position: Some(
                serde_json::to_value(self.position).map_err(|e| Error::Internal(e.to_string()))?,
            ),
            ..Default::default()
        })
    }
}
