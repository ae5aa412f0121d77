//! Redaction: raw secret material never leaves credwatch, not even in dead letters.
//!
//! Decoders never copy secrets into events (they hash them or skip them). A record that fails
//! to decode is kept whole as a dead letter, though, and a GitHub webhook, a leak report or a
//! CloudTrail `AssumeRole` record can carry a raw secret or session token. Before a dead letter
//! is written, the values of secret-bearing fields are replaced by `[redacted sha256:<16 hex>]`
//! (enough to match a report, useless to an attacker), in the record and in the reason.
//! Records that are not JSON are scanned for the same `"field": "value"` pairs.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::decode::hex_prefix;

/// Field names whose string values are secrets (compared case-insensitively).
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "secretaccesskey",
    "sessiontoken",
    "client_token",
    "token",
    "password",
    "private_key",
    "privatekey",
];

fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_FIELDS.contains(&lower.as_str())
}

fn placeholder(secret: &str) -> String {
    format!(
        "[redacted sha256:{}]",
        hex_prefix(&Sha256::digest(secret.as_bytes()), 8)
    )
}

/// Secret values found in a JSON value, depth-first.
fn collect(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(text) if is_secret_field(key) && !text.is_empty() => {
                        found.push(text.clone())
                    }
                    other => collect(other, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

/// Secret values in a record that is not valid JSON: `"field": "value"` pairs found by scanning.
fn scan(text: &str, found: &mut Vec<String>) {
    let lower = text.to_ascii_lowercase();
    for field in SECRET_FIELDS {
        let needle = format!("\"{field}\"");
        let mut from = 0;
        while let Some(at) = lower[from..].find(&needle) {
            let after = from + at + needle.len();
            from = after;
            let rest = text[after..].trim_start();
            let Some(rest) = rest.strip_prefix(':') else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let end = rest.find('"').unwrap_or(rest.len());
            if end > 0 {
                found.push(rest[..end].to_owned());
            }
        }
    }
}

/// The record and reason with every secret value replaced.
pub fn redact<'a>(record: &'a [u8], reason: &'a str) -> (Cow<'a, [u8]>, Cow<'a, str>) {
    let Ok(text) = std::str::from_utf8(record) else {
        return (Cow::Borrowed(record), Cow::Borrowed(reason));
    };
    let mut secrets = Vec::new();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => collect(&value, &mut secrets),
        Err(_) => scan(text, &mut secrets),
    }
    if secrets.is_empty() {
        return (Cow::Borrowed(record), Cow::Borrowed(reason));
    }
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let (mut text, mut reason) = (text.to_owned(), reason.to_owned());
    for secret in &secrets {
        let mark = placeholder(secret);
        text = text.replace(secret.as_str(), &mark);
        reason = reason.replace(secret.as_str(), &mark);
    }
    (Cow::Owned(text.into_bytes()), Cow::Owned(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_json_records_and_reasons_are_replaced() {
        let record = br#"{"action":"created","alert":{"number":"ghp_SECRETVALUE123","secret":"ghp_SECRETVALUE123"}}"#;
        let (clean, reason) = redact(
            record,
            "invalid type: string \"ghp_SECRETVALUE123\", expected u64",
        );
        let clean = String::from_utf8(clean.into_owned()).unwrap();
        assert!(!clean.contains("SECRETVALUE"), "{clean}");
        assert!(!reason.contains("SECRETVALUE"), "{reason}");
        assert!(clean.contains("[redacted sha256:"), "{clean}");
        assert!(
            clean.contains("\"action\":\"created\""),
            "the rest is kept: {clean}"
        );
    }

    #[test]
    fn session_tokens_in_broken_json_are_found_by_scanning() {
        let record = br#"{"eventName":"AssumeRole","responseElements":{"credentials":{"sessionToken": "IQoJb3JpZ2luX2VjE","accessKeyId":"ASIA1"}"#;
        let (clean, _) = redact(record, "EOF while parsing");
        let clean = String::from_utf8(clean.into_owned()).unwrap();
        assert!(!clean.contains("IQoJb3JpZ2luX2VjE"), "{clean}");
        assert!(clean.contains("ASIA1"), "ids are not secrets: {clean}");
    }

    #[test]
    fn records_without_secrets_are_untouched() {
        let record = br#"{"ts":"x","kind":"access"}"#;
        let (clean, reason) = redact(record, "bad ts");
        assert!(matches!(clean, Cow::Borrowed(_)));
        assert_eq!(reason, "bad ts");
    }
}
