//! Decode: raw records (bytes) into normalized [`Event`]s.
//!
//! One decoder per input format, each in its own file, all behind [`Decoder`]. A decoder never
//! panics on input: a record either yields events or a [`DecodeError`] whose reason goes to the
//! dead-letter sink with the record. One record may yield several events (a CloudTrail file
//! with `Records`), so decoders push into a caller-owned buffer that is reused across records.

mod native;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;
pub use native::NativeDecoder;

/// Input formats credwatch understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// credwatch's own JSON lines (see README, "Native format").
    #[default]
    Native,
}

impl Format {
    pub fn is_native(&self) -> bool {
        *self == Format::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
        }
    }

    pub fn decoder(self) -> Box<dyn Decoder + Send> {
        match self {
            Format::Native => Box::new(NativeDecoder),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Format::Native),
            other => Err(format!("unknown format `{other}` (known: native)")),
        }
    }
}

/// Why a record could not be decoded; goes to the dead-letter sink with the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    pub reason: String,
}

impl DecodeError {
    pub fn new(reason: impl Into<String>) -> Self {
        DecodeError {
            reason: reason.into(),
        }
    }
}

/// Turns one raw record into zero or more events.
pub trait Decoder {
    /// Appends the events decoded from `record` to `out`; on error appends nothing.
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError>;
}

/// A stable id for a record that carries none: the first 128 bits of its SHA-256, in hex.
pub fn record_hash_id(record: &[u8]) -> String {
    let digest = Sha256::digest(record);
    hex_prefix(&digest, 16)
}

/// Lower-case hex of the first `bytes` bytes of `data`.
pub fn hex_prefix(data: &[u8], bytes: usize) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes * 2);
    for byte in data.iter().take(bytes) {
        let _ = write!(text, "{byte:02x}");
    }
    text
}
