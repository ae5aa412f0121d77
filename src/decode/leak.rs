//! The generic leak report: one JSON object per report, for scanners and manual reports.
//!
//! ```json
//! {"time":"2026-03-01T10:00:00Z","credential":"AKIA...","source":"trufflehog","url":"https://..."}
//! {"time":"2026-03-01T10:00:00Z","secret_sha256":"<64 hex>","source":"pastebin-monitor"}
//! {"time":"2026-03-01T10:00:00Z","owner":"arn:aws:iam::123:user/bob","source":"manual"}
//! ```
//!
//! Exactly one of `credential`, `secret_sha256` or `secret` (hashed on arrival, never stored)
//! names the credential; or `owner` reports every credential used by that identity.

use serde::Deserialize;

use super::{record_hash_id, DecodeError, Decoder, Format, SecretHasher};
use crate::event::{Event, Kind};
use crate::time::Timestamp;

#[derive(Debug, Default, Clone)]
pub struct LeakReportDecoder {
    hasher: SecretHasher,
}

impl LeakReportDecoder {
    pub fn new(hasher: SecretHasher) -> LeakReportDecoder {
        LeakReportDecoder { hasher }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    time: Timestamp,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    secret_sha256: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

impl Decoder for LeakReportDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let report: Report = serde_json::from_slice(record)
            .map_err(|e| DecodeError::new(format!("invalid leak report: {e}")))?;
        let named = [
            &report.credential,
            &report.secret_sha256,
            &report.secret,
            &report.owner,
        ]
        .iter()
        .filter(|field| field.as_deref().is_some_and(|v| !v.trim().is_empty()))
        .count();
        if named != 1 {
            return Err(DecodeError::new(
                "invalid leak report: give exactly one of `credential`, `secret_sha256`, `secret` or `owner`",
            ));
        }
        let credentials = if let Some(id) = report.credential.filter(|v| !v.trim().is_empty()) {
            vec![id]
        } else if let Some(hash) = report.secret_sha256.filter(|v| !v.trim().is_empty()) {
            let hash = hash.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(DecodeError::new(
                    "invalid leak report: `secret_sha256` must be 64 hex digits",
                ));
            }
            vec![format!("sha256:{hash}")]
        } else if let Some(secret) = report.secret.filter(|v| !v.trim().is_empty()) {
            self.hasher.ids(&secret)
        } else {
            let owner = report.owner.clone().unwrap_or_default();
            vec![format!("owner:{owner}")]
        };
        let event_id = report
            .id
            .unwrap_or_else(|| record_hash_id(record.trim_ascii()));
        let mut event = Event::new(report.time, Kind::Leak, String::new());
        event.owner = report.owner;
        event.leak_source = report.source;
        event.leak_url = report.url;
        event.event_id = event_id;
        event.format = Format::Leak;
        super::leak_per_id(credentials, event, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(record: &str) -> Result<Vec<Event>, DecodeError> {
        let mut out = Vec::new();
        LeakReportDecoder::default()
            .decode(record.as_bytes(), &mut out)
            .map(|_| out)
    }

    #[test]
    fn reports_name_a_credential_a_hash_a_secret_or_an_owner() {
        let by_id =
            decode(r#"{"time":"2026-03-01T10:00:00Z","credential":"AKIA1","source":"trufflehog"}"#)
                .unwrap();
        assert_eq!(by_id[0].credential, "AKIA1");
        let hash = "A".repeat(64);
        let by_hash = decode(&format!(
            r#"{{"time":"2026-03-01T10:00:00Z","secret_sha256":"{hash}"}}"#
        ))
        .unwrap();
        assert_eq!(by_hash[0].credential, format!("sha256:{}", "a".repeat(64)));
        let by_secret = decode(r#"{"time":"2026-03-01T10:00:00Z","secret":"hunter2"}"#).unwrap();
        assert_eq!(by_secret[0].credential, crate::decode::secret_id("hunter2"));
        assert!(!serde_json::to_string(&by_secret[0])
            .unwrap()
            .contains("hunter2"));
        let by_owner = decode(r#"{"time":"2026-03-01T10:00:00Z","owner":"bob"}"#).unwrap();
        assert_eq!(by_owner[0].owner.as_deref(), Some("bob"));
    }

    #[test]
    fn ambiguous_or_empty_reports_are_rejected() {
        assert!(decode(r#"{"time":"2026-03-01T10:00:00Z"}"#).is_err());
        assert!(
            decode(r#"{"time":"2026-03-01T10:00:00Z","credential":"a","secret":"b"}"#).is_err()
        );
        assert!(decode(r#"{"time":"2026-03-01T10:00:00Z","secret_sha256":"abc"}"#).is_err());
        assert!(
            decode(r#"{"time":"2026-03-01T10:00:00Z","credential":"a","colour":"red"}"#).is_err()
        );
    }
}
