//! The native format: one [`Event`] as a JSON object per record.
//!
//! Strict on purpose: unknown fields, a missing credential or a bad timestamp reject the record
//! with a reason, because a typo in a field name would otherwise silently blind a detector.

use super::{record_hash_id, DecodeError, Decoder};
use crate::event::{Event, Kind};

#[derive(Debug, Default, Clone, Copy)]
pub struct NativeDecoder;

impl Decoder for NativeDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        // One UTF-8 check over the whole record, then `from_str`, which trusts it: parsing
        // from bytes would check every string again on its own.
        let text = std::str::from_utf8(record)
            .map_err(|e| DecodeError::new(format!("invalid native event: not UTF-8 ({e})")))?;
        let mut event: Event = serde_json::from_str(text)
            .map_err(|e| DecodeError::new(format!("invalid native event: {e}")))?;
        if event.credential.trim().is_empty() {
            return Err(DecodeError::new(
                "invalid native event: `credential` is empty",
            ));
        }
        if event.kind != Kind::Issue
            && (event.expires_at.is_some() || !event.allowed_zones.is_empty())
        {
            return Err(DecodeError::new(format!(
                "invalid native event: `expires_at` and `allowed_zones` belong to `issue` events, not `{}`",
                event.kind.as_str()
            )));
        }
        if event.event_id.is_empty() {
            event.event_id = record_hash_id(trim_ascii(record));
        }
        out.push(event);
        Ok(())
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<Vec<Event>, DecodeError> {
        let mut out = Vec::new();
        NativeDecoder.decode(line.as_bytes(), &mut out).map(|_| out)
    }

    #[test]
    fn decodes_an_access_event_and_derives_a_stable_id() {
        let line = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA1","source_ip":"10.0.1.7","endpoint":"s3:GetObject"}"#;
        let first = decode(line).unwrap();
        let again = decode(&format!("  {line}\n")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].credential, "AKIA1");
        assert_eq!(first[0].event_id.len(), 32);
        assert_eq!(
            first[0].event_id, again[0].event_id,
            "surrounding whitespace must not change the id"
        );
    }

    #[test]
    fn keeps_an_explicit_event_id() {
        let line =
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"revoke","credential":"k","event_id":"evt-9"}"#;
        assert_eq!(decode(line).unwrap()[0].event_id, "evt-9");
    }

    #[test]
    fn rejects_unknown_fields_with_their_name() {
        let line = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credentail":"k"}"#;
        let err = decode(line).unwrap_err();
        assert!(err.reason.contains("credentail"), "{err}");
    }

    #[test]
    fn rejects_empty_credentials_and_bad_kinds() {
        assert!(
            decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":" "}"#).is_err()
        );
        let err =
            decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"use","credential":"k"}"#).unwrap_err();
        assert!(err.reason.contains("unknown variant"), "{err}");
    }

    #[test]
    fn rejects_issue_fields_on_other_kinds() {
        let err = decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","allowed_zones":["prod"]}"#)
            .unwrap_err();
        assert!(err.reason.contains("allowed_zones"), "{err}");
    }
}
