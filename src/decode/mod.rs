//! Decode: raw records (bytes) into normalized [`Event`]s.
//!
//! One decoder per input format, each in its own file, all behind [`Decoder`]. A decoder never
//! panics on input: a record either yields events, yields nothing (a valid record that says
//! nothing about credentials, such as a console login: counted as ignored), or fails with a
//! [`DecodeError`] whose reason goes to the dead-letter sink with the record. One record may
//! yield several events (an AssumeRole call is an access by the caller's key and the issuance
//! of a new one), so decoders push into a caller-owned buffer reused across records.
//!
//! Containers (a JSON array, CloudTrail's `{"Records": [...]}`, a Kubernetes `EventList`) are
//! split into their elements by [`split_records`] before decoding, so one bad element is one
//! dead letter and the rest still decode.

mod auto;
mod cloudtrail;
mod github;
pub mod github_partner;
mod k8s;
mod leak;
mod native;
mod vault;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::event::Event;
pub use auto::AutoDecoder;
pub use cloudtrail::{parse_aws_time, CloudTrailDecoder};
pub use github::GithubSecretScanningDecoder;
pub use k8s::K8sAuditDecoder;
pub use leak::LeakReportDecoder;
#[doc(hidden)]
pub use native::decode_as_derived;
pub use native::NativeDecoder;
pub use vault::VaultAuditDecoder;

/// Input formats credwatch understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// credwatch's own JSON lines (see README, "Native format").
    #[default]
    Native,
    /// AWS CloudTrail records (single, `{"Records": [...]}`, arrays, Logstash-shaped).
    Cloudtrail,
    /// HashiCorp Vault audit device (JSON).
    Vault,
    /// Kubernetes audit events (audit.k8s.io/v1).
    K8s,
    /// GitHub secret scanning alert webhook payloads.
    GithubSecretScanning,
    /// The generic leak report (see README).
    Leak,
    /// Detect the format of each record.
    Auto,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Native,
        Format::Cloudtrail,
        Format::Vault,
        Format::K8s,
        Format::GithubSecretScanning,
        Format::Leak,
        Format::Auto,
    ];

    /// Position in [`Format::ALL`] (declaration order; called per event, so no search).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_native(&self) -> bool {
        *self == Format::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Cloudtrail => "cloudtrail",
            Format::Vault => "vault",
            Format::K8s => "k8s",
            Format::GithubSecretScanning => "github-secret-scanning",
            Format::Leak => "leak",
            Format::Auto => "auto",
        }
    }

    pub fn decoder(self) -> Box<dyn Decoder + Send> {
        self.decoder_with(&SecretHasher::default())
    }

    /// A decoder that turns raw secrets in leak reports into ids with `hasher`.
    pub fn decoder_with(self, hasher: &SecretHasher) -> Box<dyn Decoder + Send> {
        match self {
            Format::Native => Box::new(NativeDecoder::new()),
            Format::Cloudtrail => Box::new(CloudTrailDecoder),
            Format::Vault => Box::new(VaultAuditDecoder),
            Format::K8s => Box::new(K8sAuditDecoder),
            Format::GithubSecretScanning => {
                Box::new(GithubSecretScanningDecoder::new(hasher.clone()))
            }
            Format::Leak => Box::new(LeakReportDecoder::new(hasher.clone())),
            Format::Auto => Box::new(AutoDecoder::new(hasher.clone())),
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
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown format `{s}` (known: {})", known.join(", "))
            })
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
    /// Appending nothing and returning `Ok` means the record was valid but irrelevant.
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError>;

    /// Empties `events` (the previous record's) before the next `decode`. A decoder may keep
    /// their buffers for the next record's strings; callers that decode many records should
    /// call this rather than `clear`.
    fn recycle(&mut self, events: &mut Vec<Event>) {
        events.clear();
    }
}

/// A stable id for a record that carries none: the first 128 bits of its SHA-256, in hex.
pub fn record_hash_id(record: &[u8]) -> String {
    let mut id = String::new();
    record_hash_id_into(record, &mut id);
    id
}

/// [`record_hash_id`] appended to `id` (a reused buffer).
pub fn record_hash_id_into(record: &[u8], id: &mut String) {
    hex_prefix_into(&Sha256::digest(record), 16, id);
}

/// How raw secrets in leak reports become credential ids, never stored themselves: always the
/// plain SHA-256 (`sha256:<hex>`), and with a configured key also HMAC-SHA256 under it
/// (`hmac-sha256:<hex>`), which is how Vault's audit device logs tokens. Events whose
/// `secret_hash` is one of these bind it to their credential, so a leak report holding only the
/// secret reaches the credential it belongs to.
#[derive(Clone, Default)]
pub struct SecretHasher {
    key: Option<std::sync::Arc<crate::config::Secret>>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHasher(keyed: {})", self.key.is_some())
    }
}

impl SecretHasher {
    pub fn new(key: Option<crate::config::Secret>) -> SecretHasher {
        SecretHasher {
            key: key.map(std::sync::Arc::new),
        }
    }

    /// Whether raw secrets are also HMAC-ed under a configured key.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The ids a raw secret is known by: `sha256:<hex>`, then `hmac-sha256:<hex>` when keyed.
    pub fn ids(&self, secret: &str) -> Vec<String> {
        let mut ids = vec![secret_id(secret)];
        if let Some(key) = &self.key {
            use hmac::Mac;
            if let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key.expose()) {
                mac.update(secret.as_bytes());
                ids.push(format!(
                    "hmac-sha256:{}",
                    hex_prefix(&mac.finalize().into_bytes(), 32)
                ));
            }
        }
        ids
    }
}

/// One leak event per id a reported secret is known by (see [`SecretHasher`]): copies of
/// `report` naming each credential; the first keeps `report.event_id`, the others get `:1`,
/// `:2`, so every copy has an id of its own and a redelivery the same ids.
pub(crate) fn leak_per_id(credentials: Vec<String>, report: Event, out: &mut Vec<Event>) {
    for (index, credential) in credentials.into_iter().enumerate() {
        let mut event = report.clone();
        event.credential = credential;
        if index > 0 {
            event.event_id = format!("{}:{index}", report.event_id);
        }
        out.push(event);
    }
}

/// Whether a credential id names a secret by its hash (`sha256:` or `hmac-sha256:`).
pub fn is_secret_hash(id: &str) -> bool {
    id.starts_with("sha256:") || id.starts_with("hmac-sha256:")
}

/// The credential id credwatch uses for a raw secret: never the secret, only its SHA-256.
pub fn secret_id(secret: &str) -> String {
    format!(
        "sha256:{}",
        hex_prefix(&Sha256::digest(secret.as_bytes()), 32)
    )
}

/// Bytes from hex (either case); `None` for an odd length or any non-hex character.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |digit: u8| (digit as char).to_digit(16);
    digits
        .chunks(2)
        .map(|pair| Some((value(pair[0])? * 16 + value(pair[1])?) as u8))
        .collect()
}

/// Lower-case hex of the first `bytes` bytes of `data`.
pub fn hex_prefix(data: &[u8], bytes: usize) -> String {
    let mut text = String::with_capacity(bytes * 2);
    hex_prefix_into(data, bytes, &mut text);
    text
}

/// [`hex_prefix`] appended to `text`.
pub fn hex_prefix_into(data: &[u8], bytes: usize, text: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in data.iter().take(bytes) {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 15)]));
    }
}

#[derive(Deserialize)]
struct CloudTrailFile<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventList<'a> {
    kind: &'a str,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

// Built once: a searcher per call would cost more than the scan on short records.
static RECORDS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"Records\""));
static EVENT_LIST: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"EventList\""));

/// Splits a container record into its elements: a JSON array, CloudTrail's
/// `{"Records": [...]}` or a Kubernetes `EventList`; anything else is one element. Elements are
/// sub-slices of `record`, so their offsets can be recovered for dead letters.
pub fn split_records(record: &[u8]) -> Vec<&[u8]> {
    let trimmed = record.trim_ascii();
    let first = trimmed.first().copied();
    let elements: Option<Vec<&RawValue>> = if first == Some(b'[') {
        serde_json::from_slice::<Vec<&RawValue>>(trimmed).ok()
    } else if first == Some(b'{') && RECORDS.find(trimmed).is_some() {
        serde_json::from_slice::<CloudTrailFile>(trimmed)
            .ok()
            .map(|file| file.records)
    } else if first == Some(b'{') && EVENT_LIST.find(trimmed).is_some() {
        serde_json::from_slice::<EventList>(trimmed)
            .ok()
            .filter(|list| list.kind == "EventList")
            .map(|list| list.items)
    } else {
        None
    };
    match elements {
        Some(elements) => elements
            .into_iter()
            .map(|raw| raw.get().as_bytes())
            .collect(),
        None => vec![record],
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_arrays_and_wrappers_into_sub_slices() {
        let array = br#"[{"a":1}, {"b":2}]"#;
        let parts = split_records(array);
        assert_eq!(parts, vec![&br#"{"a":1}"#[..], br#"{"b":2}"#]);
        let offset = parts[1].as_ptr() as usize - array.as_ptr() as usize;
        assert_eq!(offset, 10);
        let records = br#"{"Records":[{"eventName":"A"},{"eventName":"B"}]}"#;
        assert_eq!(split_records(records).len(), 2);
        let list =
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"verb":"get"}]}"#;
        assert_eq!(split_records(list), vec![&br#"{"verb":"get"}"#[..]]);
        let single = br#"{"eventName":"A"}"#;
        assert_eq!(split_records(single), vec![&single[..]]);
        let broken = br#"[{"a":1},"#;
        assert_eq!(
            split_records(broken),
            vec![&broken[..]],
            "a broken container is one bad record"
        );
    }

    #[test]
    fn formats_parse_by_name() {
        for (index, format) in Format::ALL.into_iter().enumerate() {
            assert_eq!(format.as_str().parse::<Format>().unwrap(), format);
            assert_eq!(
                format.index(),
                index,
                "ALL lists formats in declaration order"
            );
        }
        assert!("syslog"
            .parse::<Format>()
            .unwrap_err()
            .contains("known: native, cloudtrail"));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(from_hex("00ffA1"), Some(vec![0, 255, 161]));
        assert_eq!(
            from_hex(&hex_prefix(&[1, 2, 254], 3)),
            Some(vec![1, 2, 254])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(
            from_hex("€a"),
            None,
            "multi-byte characters are junk, not a panic"
        );
    }

    #[test]
    fn secret_ids_never_contain_the_secret() {
        let id = secret_id("ghp_abcdefghijklmnop");
        assert!(id.starts_with("sha256:"));
        assert!(!id.contains("abcdefghijklmnop"));
        assert_eq!(id.len(), 7 + 64);
    }
}
