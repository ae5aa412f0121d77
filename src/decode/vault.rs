//! HashiCorp Vault audit device (JSON): token issuance, use and revocation.
//!
//! Vault writes each request twice, as a `request` entry and a `response` entry. credwatch
//! reads only `response` entries, which carry the outcome:
//! - a response whose `response.auth.accessor` is set (a login, a token create) `issue`s that
//!   accessor, with the display name as owner and `time + token_ttl` as expiry;
//! - any response made with a token (`auth.accessor` or `request.client_token_accessor`) is an
//!   `access`: endpoint `operation path` (`read secret/data/app`), address from
//!   `remote_address` (with or without port), `failure` when `error` is set;
//! - successful `auth/token/revoke-self` and `auth/token/revoke-accessor` `revoke` the token.
//!
//! The credential is the token's accessor (HMAC-ed by Vault unless `hmac_accessor=false`, which
//! is still a stable id). Client tokens are never read.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{record_hash_id, DecodeError, Decoder, Format};
use crate::event::{Event, Kind, Outcome};
use crate::time::{Period, Timestamp};

#[derive(Debug, Default, Clone, Copy)]
pub struct VaultAuditDecoder;

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    auth: Option<Auth<'a>>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Auth<'a> {
    #[serde(borrow, default)]
    accessor: Option<Cow<'a, str>>,
    /// The token, HMAC-ed by the audit device (`hmac-sha256:<hex>`) unless configured not to.
    #[serde(borrow, default)]
    client_token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    display_name: Option<Cow<'a, str>>,
    #[serde(default)]
    token_ttl: Option<i64>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_token_accessor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    remote_address: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    auth: Option<Auth<'a>>,
}

fn non_empty(value: Option<&Cow<'_, str>>) -> Option<String> {
    value
        .map(|v| v.as_ref())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Decoder for VaultAuditDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let entry: Entry = serde_json::from_slice(record)
            .map_err(|e| DecodeError::new(format!("invalid Vault audit entry: {e}")))?;
        let ts = Timestamp::parse_rfc3339(&entry.time)
            .map_err(|e| DecodeError::new(format!("invalid Vault audit entry: {e}")))?;
        match entry.kind.as_ref() {
            "response" => {}
            "request" => return Ok(()),
            other => {
                return Err(DecodeError::new(format!(
                    "invalid Vault audit entry: unknown type `{other}`"
                )))
            }
        }
        let request = entry.request.as_ref();
        let base_id = request
            .and_then(|r| non_empty(r.id.as_ref()))
            .unwrap_or_else(|| record_hash_id(record.trim_ascii()));
        let failed = match &entry.error {
            Some(Value::String(text)) => !text.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        let accessor = entry
            .auth
            .as_ref()
            .and_then(|a| non_empty(a.accessor.as_ref()))
            .or_else(|| request.and_then(|r| non_empty(r.client_token_accessor.as_ref())));
        let caller = entry
            .auth
            .as_ref()
            .and_then(|a| non_empty(a.display_name.as_ref()));
        let path = request
            .and_then(|r| non_empty(r.path.as_ref()))
            .unwrap_or_default();

        if let Some(accessor) = &accessor {
            let mut event = Event::new(ts, Kind::Access, accessor.clone());
            event.principal = caller.clone();
            event.source_ip = request.and_then(|r| non_empty(r.remote_address.as_ref()));
            let operation = request
                .and_then(|r| non_empty(r.operation.as_ref()))
                .unwrap_or_else(|| "unknown".into());
            event.endpoint = Some(format!("{operation} {path}"));
            event.user_agent = request
                .and_then(|r| r.headers.as_ref())
                .and_then(|h| h.get("user-agent"))
                .and_then(|v| v.get(0).or(Some(v)))
                .and_then(Value::as_str)
                .map(str::to_owned);
            event.outcome = if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            event.secret_hash = entry
                .auth
                .as_ref()
                .and_then(|a| token_hmac(a.client_token.as_ref()));
            event.event_id = base_id.clone();
            event.format = Format::Vault;
            out.push(event);
        }
        if failed {
            return Ok(());
        }
        if let Some(issued) = entry.response.as_ref().and_then(|r| r.auth.as_ref()) {
            if let Some(new_accessor) = non_empty(issued.accessor.as_ref()) {
                let mut event = Event::new(ts, Kind::Issue, new_accessor);
                event.secret_hash = token_hmac(issued.client_token.as_ref());
                event.principal = caller
                    .clone()
                    .or_else(|| (!path.is_empty()).then(|| path.clone()));
                event.owner = non_empty(issued.display_name.as_ref()).or_else(|| {
                    issued
                        .metadata
                        .as_ref()
                        .and_then(|m| m.get("username").or_else(|| m.get("role_name")))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                event.expires_at = issued
                    .token_ttl
                    .filter(|ttl| *ttl > 0)
                    .map(|ttl| ts.saturating_add(Period::from_secs(ttl)));
                event.event_id = format!("{base_id}:issue");
                event.format = Format::Vault;
                out.push(event);
            }
        }
        let revoked = match path.as_str() {
            "auth/token/revoke-self" => accessor.clone(),
            "auth/token/revoke-accessor" => request
                .and_then(|r| r.data.as_ref())
                .and_then(|d| d.get("accessor"))
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            _ => None,
        };
        if let Some(revoked) = revoked {
            let mut event = Event::new(ts, Kind::Revoke, revoked);
            event.principal = caller;
            event.event_id = format!("{base_id}:revoke");
            event.format = Format::Vault;
            out.push(event);
        }
        Ok(())
    }
}

/// The token's HMAC as the audit device logged it; a raw token (an audit device with
/// `hmac_accessor`/`log_raw` settings that leave it readable) is never kept.
fn token_hmac(token: Option<&Cow<'_, str>>) -> Option<String> {
    token
        .map(|t| t.as_ref())
        .filter(|t| t.starts_with("hmac-sha256:"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(record: &str) -> Vec<Event> {
        let mut out = Vec::new();
        VaultAuditDecoder
            .decode(record.as_bytes(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_login_response_issues_the_new_accessor_with_its_ttl() {
        let events = decode(
            r#"{"time":"2026-03-01T10:00:00.000000Z","type":"response","auth":{"client_token":"","accessor":""},
            "request":{"id":"r1","operation":"update","path":"auth/approle/login","remote_address":"10.0.1.5"},
            "response":{"auth":{"client_token":"hmac-sha256:tok","accessor":"hmac-sha256:acc1","display_name":"approle",
            "metadata":{"role_name":"billing"},"token_ttl":3600}},"error":""}"#,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, Kind::Issue);
        assert_eq!(events[0].credential, "hmac-sha256:acc1");
        assert_eq!(events[0].owner.as_deref(), Some("approle"));
        assert_eq!(
            events[0].expires_at,
            Timestamp::parse_rfc3339("2026-03-01T11:00:00Z").ok()
        );
        // The token itself is never read; its audit HMAC is kept only as the secret's hash,
        // so a leak report of the raw token can be matched (see `[leaks]`).
        assert_eq!(events[0].secret_hash.as_deref(), Some("hmac-sha256:tok"));
    }

    #[test]
    fn a_raw_token_in_an_unhashed_audit_log_is_not_kept() {
        let events = decode(
            r#"{"time":"2026-03-01T10:05:00Z","type":"response","auth":{"client_token":"hvs.rawtoken","accessor":"acc1"},
            "request":{"id":"r9","operation":"read","path":"secret/data/x"}}"#,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].secret_hash, None);
        assert!(!serde_json::to_string(&events[0])
            .unwrap()
            .contains("hvs.rawtoken"));
    }

    #[test]
    fn a_read_is_an_access_and_requests_are_skipped() {
        let response = r#"{"time":"2026-03-01T10:05:00Z","type":"response","auth":{"accessor":"hmac-sha256:acc1","display_name":"approle-billing"},
            "request":{"id":"r2","operation":"read","path":"secret/data/billing","remote_address":"10.0.1.5:51234"},"error":"permission denied"}"#;
        let events = decode(response);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].endpoint.as_deref(),
            Some("read secret/data/billing")
        );
        assert_eq!(events[0].source_ip.as_deref(), Some("10.0.1.5:51234"));
        assert_eq!(events[0].outcome, Outcome::Failure);
        assert!(decode(&response.replace("\"response\"", "\"request\"")).is_empty());
    }

    #[test]
    fn revoke_self_and_revoke_accessor_revoke() {
        let events = decode(
            r#"{"time":"2026-03-01T10:10:00Z","type":"response","auth":{"accessor":"hmac-sha256:acc1"},
            "request":{"id":"r3","operation":"update","path":"auth/token/revoke-self"}}"#,
        );
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![Kind::Access, Kind::Revoke]
        );
        let events = decode(
            r#"{"time":"2026-03-01T10:10:00Z","type":"response","auth":{"accessor":"hmac-sha256:admin"},
            "request":{"id":"r4","operation":"update","path":"auth/token/revoke-accessor","data":{"accessor":"hmac-sha256:acc2"}}}"#,
        );
        assert_eq!(events[1].credential, "hmac-sha256:acc2");
    }

    #[test]
    fn bad_entries_are_rejected_with_a_reason() {
        let mut out = Vec::new();
        let err = VaultAuditDecoder
            .decode(br#"{"time":"x","type":"response"}"#, &mut out)
            .unwrap_err();
        assert!(err.reason.contains("RFC 3339"), "{err}");
        let err = VaultAuditDecoder
            .decode(
                br#"{"time":"2026-03-01T10:10:00Z","type":"other"}"#,
                &mut out,
            )
            .unwrap_err();
        assert!(err.reason.contains("unknown type"), "{err}");
    }
}
