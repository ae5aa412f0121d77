//! Source: where raw records come from, with their position for dead letters and checkpoints.
//!
//! A source yields [`Record`]s: the bytes of one record and its [`Origin`] (input name, line,
//! byte offset). Files and stdin are read as lines here; Kafka (later) yields one record per
//! message. Sources never interpret bytes: that is `decode`'s job.

mod framing;
pub mod kafka;
mod lines;

pub use framing::{Framing, MAX_DOCUMENT_BYTES};
pub use lines::{LineReader, ReadOutcome, MAX_RECORD_BYTES};

use std::fmt;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path, or `-` for stdin (shared: one allocation per input, not per record).
    pub input: std::sync::Arc<str>,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the record's first byte.
    pub offset: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (byte {})", self.input, self.line, self.offset)
    }
}
