//! Line-delimited records from any reader (files, stdin), with a size limit.
//!
//! A record longer than [`MAX_RECORD_BYTES`] is not buffered whole: its first bytes are kept
//! for the dead letter and the rest skipped, so hostile input cannot exhaust memory.

use std::io::{self, BufRead};

/// Longest record accepted, in bytes (1 MiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A record is in the buffer (without its line ending).
    Record,
    /// A record exceeded the limit; the buffer holds its first bytes, `len` is its full size.
    TooLong { len: u64 },
    /// End of input.
    End,
}

/// Reads line-delimited records, tracking line numbers and byte offsets.
pub struct LineReader<R> {
    reader: R,
    limit: usize,
    line: u64,
    offset: u64,
    record_offset: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(reader: R) -> Self {
        LineReader::with_limit(reader, MAX_RECORD_BYTES)
    }

    pub fn with_limit(reader: R, limit: usize) -> Self {
        LineReader {
            reader,
            limit,
            line: 0,
            offset: 0,
            record_offset: 0,
        }
    }

    /// Continues a reader positioned at byte `offset`, after `line` lines (a resumed input).
    pub fn resumed(reader: R, offset: u64, line: u64) -> Self {
        LineReader {
            offset,
            record_offset: offset,
            line,
            ..LineReader::new(reader)
        }
    }

    /// 1-based line number of the last record read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Byte offset of the last record read.
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    /// Byte offset just past the last record read (where a resume would start).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record into `buf` (cleared first).
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> io::Result<ReadOutcome> {
        buf.clear();
        self.record_offset = self.offset;
        let mut total: u64 = 0;
        let mut saw_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            saw_any = true;
            let (chunk, found_newline) = match memchr_newline(available) {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let room = self.limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            total += chunk.len() as u64;
            let consumed = chunk.len() + usize::from(found_newline);
            self.reader.consume(consumed);
            self.offset += consumed as u64;
            if found_newline {
                break;
            }
        }
        if !saw_any {
            return Ok(ReadOutcome::End);
        }
        self.line += 1;
        if buf.last() == Some(&b'\r') && total as usize == buf.len() {
            buf.pop();
            total -= 1;
        }
        if total > self.limit as u64 {
            Ok(ReadOutcome::TooLong { len: total })
        } else {
            Ok(ReadOutcome::Record)
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], limit: usize) -> Vec<(ReadOutcome, Vec<u8>, u64)> {
        let mut reader = LineReader::with_limit(input, limit);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let outcome = reader.next_record(&mut buf).unwrap();
            if outcome == ReadOutcome::End {
                return out;
            }
            out.push((outcome, buf.clone(), reader.record_offset()));
        }
    }

    #[test]
    fn splits_lines_and_tracks_offsets() {
        let records = read_all(b"ab\r\ncd\n\nef", 100);
        let texts: Vec<&[u8]> = records.iter().map(|(_, b, _)| b.as_slice()).collect();
        assert_eq!(texts, vec![&b"ab"[..], b"cd", b"", b"ef"]);
        let offsets: Vec<u64> = records.iter().map(|(_, _, o)| *o).collect();
        assert_eq!(offsets, vec![0, 4, 7, 8]);
    }

    #[test]
    fn long_records_are_cut_and_reported() {
        let records = read_all(b"0123456789\nok\n", 4);
        assert_eq!(records[0].0, ReadOutcome::TooLong { len: 10 });
        assert_eq!(records[0].1, b"0123");
        assert_eq!(records[1].0, ReadOutcome::Record);
        assert_eq!(records[1].1, b"ok");
    }
}
