//! Dead letters: records that could not be decoded, kept with the reason.
//!
//! Bad input never stops a run and is never lost: each rejected record is counted and, when a
//! dead-letter destination is configured, written as one JSON line with its origin, the reason
//! and the record itself (as text when it is UTF-8, else base64), with secret values redacted
//! (see `redact`).

use std::io::{self, Write};

use base64::Engine as _;
use serde::Serialize;

use crate::source::Origin;

#[derive(Serialize)]
struct Letter<'a> {
    input: &'a str,
    line: u64,
    offset: u64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_base64: Option<String>,
    /// Set when the record was longer than the limit and only its start is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_from: Option<u64>,
}

/// Writes rejected records as JSON lines.
pub struct DeadLetterWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> DeadLetterWriter<W> {
    pub fn new(out: W) -> Self {
        DeadLetterWriter { out, written: 0 }
    }

    /// Records `record` from `origin`, rejected for `reason`. `full_len` is the record's real
    /// length when `record` holds only its first bytes.
    pub fn write(
        &mut self,
        origin: &Origin,
        reason: &str,
        record: &[u8],
        full_len: Option<u64>,
    ) -> io::Result<()> {
        let text = std::str::from_utf8(record).ok();
        let letter = Letter {
            input: &origin.input,
            line: origin.line,
            offset: origin.offset,
            reason,
            record: text,
            record_base64: match text {
                Some(_) => None,
                None => Some(base64::engine::general_purpose::STANDARD.encode(record)),
            },
            truncated_from: full_len,
        };
        serde_json::to_writer(&mut self.out, &letter)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_binary_records() {
        let mut writer = DeadLetterWriter::new(Vec::new());
        let origin = Origin {
            input: std::sync::Arc::from("x.jsonl"),
            line: 3,
            offset: 40,
        };
        writer.write(&origin, "bad json", b"{nope", None).unwrap();
        writer
            .write(&origin, "not utf-8", &[0xff, 0x00], Some(9))
            .unwrap();
        let text = String::from_utf8(writer.out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["record"], "{nope");
        assert_eq!(lines[0]["line"], 3);
        assert_eq!(lines[1]["record_base64"], "/wA=");
        assert_eq!(lines[1]["truncated_from"], 9);
    }
}
