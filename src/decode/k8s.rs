//! Kubernetes audit events (`audit.k8s.io/v1` `Event`): service-account tokens as credentials.
//!
//! - A request authenticated as `system:serviceaccount:NS:NAME` is an `access` by that
//!   credential (the service account's identity; when the API server logs the token's
//!   `authentication.kubernetes.io/credential-id`, that id is appended so each token is its own
//!   credential). Endpoint `verb resource[/subresource]`, address `sourceIPs[0]`, outcome from
//!   `responseStatus.code`.
//! - `create serviceaccounts/token` (TokenRequest) `issue`s the account's credential, owned by
//!   the account and issued by the requesting user. Its expiry is not recorded: tokens of one
//!   account share the account's identity unless credential ids are logged.
//! - `delete serviceaccounts` `revoke`s it.
//! - Other users (people, nodes, controllers with client certificates) are not credentials
//!   credwatch tracks: such records are ignored. `RequestReceived` stages are skipped so a
//!   request counts once.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{record_hash_id, DecodeError, Decoder, Format};
use crate::event::{Event, Kind, Outcome};
use crate::time::Timestamp;

#[derive(Debug, Default, Clone, Copy)]
pub struct K8sAuditDecoder;

#[derive(Deserialize)]
struct AuditEvent<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stage: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    verb: Option<Cow<'a, str>>,
    #[serde(default)]
    user: Option<User>,
    #[serde(rename = "sourceIPs", default)]
    source_ips: Vec<String>,
    #[serde(rename = "userAgent", borrow, default)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(rename = "objectRef", default)]
    object: Option<ObjectRef>,
    #[serde(rename = "responseStatus", default)]
    status: Option<Value>,
    #[serde(rename = "stageTimestamp", borrow, default)]
    stage_time: Option<Cow<'a, str>>,
    #[serde(rename = "requestReceivedTimestamp", borrow, default)]
    received_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    extra: Option<Value>,
}

#[derive(Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

const SERVICE_ACCOUNT: &str = "system:serviceaccount:";

impl Decoder for K8sAuditDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let audit: AuditEvent = serde_json::from_slice(record)
            .map_err(|e| DecodeError::new(format!("invalid Kubernetes audit event: {e}")))?;
        if let Some(kind) = audit.kind.as_deref() {
            if kind != "Event" {
                return Err(DecodeError::new(format!(
                    "invalid Kubernetes audit event: kind `{kind}`, expected `Event`"
                )));
            }
        }
        let time = audit
            .stage_time
            .as_deref()
            .or(audit.received_time.as_deref())
            .or(audit.timestamp.as_deref())
            .ok_or_else(|| DecodeError::new("invalid Kubernetes audit event: no `stageTimestamp` or `requestReceivedTimestamp`"))?;
        let ts = Timestamp::parse_lenient(time).ok_or_else(|| {
            DecodeError::new(format!(
                "invalid Kubernetes audit event: bad timestamp `{time}`"
            ))
        })?;
        if audit.stage.as_deref() == Some("RequestReceived") {
            return Ok(());
        }
        let verb = audit
            .verb
            .as_deref()
            .ok_or_else(|| DecodeError::new("invalid Kubernetes audit event: no `verb`"))?;
        let base_id = match audit.audit_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => record_hash_id(record.trim_ascii()),
        };
        let username = audit
            .user
            .as_ref()
            .and_then(|u| u.username.clone())
            .unwrap_or_default();
        let object = audit.object.as_ref();
        let resource = object.and_then(|o| o.resource.as_deref()).unwrap_or("");
        let subresource = object.and_then(|o| o.subresource.as_deref());
        let code = audit
            .status
            .as_ref()
            .and_then(|s| s.get("code"))
            .and_then(Value::as_i64);

        if username.starts_with(SERVICE_ACCOUNT) {
            let credential_id = audit
                .user
                .as_ref()
                .and_then(|u| u.extra.as_ref())
                .and_then(|extra| extra.get("authentication.kubernetes.io/credential-id"))
                .and_then(|ids| ids.get(0))
                .and_then(Value::as_str);
            let credential = match credential_id {
                Some(id) => format!("{username}/{id}"),
                None => username.clone(),
            };
            let mut event = Event::new(ts, Kind::Access, credential);
            event.principal = Some(username.clone());
            event.source_ip = audit.source_ips.first().cloned();
            let target = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_owned(),
            };
            event.endpoint = Some(if target.is_empty() {
                verb.to_owned()
            } else {
                format!("{verb} {target}")
            });
            event.user_agent = audit.user_agent.as_deref().map(str::to_owned);
            event.outcome = match code {
                Some(code) if code >= 400 => Outcome::Failure,
                Some(_) => Outcome::Success,
                None => Outcome::Unknown,
            };
            event.event_id = base_id.clone();
            event.format = Format::K8s;
            out.push(event);
        }

        let succeeded = code.is_none_or(|c| c < 400);
        if resource == "serviceaccounts" && succeeded {
            let account = object.and_then(|o| {
                Some(format!(
                    "{SERVICE_ACCOUNT}{}:{}",
                    o.namespace.as_deref()?,
                    o.name.as_deref()?
                ))
            });
            let lifecycle = match (verb, subresource) {
                ("create", Some("token")) => Some(Kind::Issue),
                ("delete", None) => Some(Kind::Revoke),
                _ => None,
            };
            if let (Some(kind), Some(account)) = (lifecycle, account) {
                let mut event = Event::new(ts, kind, account.clone());
                event.principal = (!username.is_empty()).then_some(username);
                if kind == Kind::Issue {
                    event.owner = Some(account);
                }
                event.event_id = format!("{base_id}:{}", kind.as_str());
                event.format = Format::K8s;
                out.push(event);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(record: &str) -> Vec<Event> {
        let mut out = Vec::new();
        K8sAuditDecoder.decode(record.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn service_account_requests_are_accesses() {
        let events = decode(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete","verb":"get",
            "user":{"username":"system:serviceaccount:kube-system:replicaset-controller"},"sourceIPs":["192.168.99.100"],
            "objectRef":{"resource":"pods","subresource":"exec","namespace":"default"},"responseStatus":{"code":403},
            "stageTimestamp":"2018-10-26T13:42:46.808261Z"}"#,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].credential,
            "system:serviceaccount:kube-system:replicaset-controller"
        );
        assert_eq!(events[0].endpoint.as_deref(), Some("get pods/exec"));
        assert_eq!(events[0].outcome, Outcome::Failure);
    }

    #[test]
    fn token_requests_issue_and_account_deletion_revokes() {
        let issue = decode(
            r#"{"kind":"Event","auditID":"a2","stage":"ResponseComplete","verb":"create","user":{"username":"admin"},
            "objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"ci","name":"deployer"},
            "responseStatus":{"code":201},"stageTimestamp":"2026-03-01T10:00:00Z"}"#,
        );
        assert_eq!(
            issue.len(),
            1,
            "admin is a person, not a tracked credential"
        );
        assert_eq!(
            (issue[0].kind, issue[0].credential.as_str()),
            (Kind::Issue, "system:serviceaccount:ci:deployer")
        );
        let revoke = decode(
            r#"{"kind":"Event","auditID":"a3","stage":"ResponseComplete","verb":"delete","user":{"username":"admin"},
            "objectRef":{"resource":"serviceaccounts","namespace":"ci","name":"deployer"},"stageTimestamp":"2026-03-01T11:00:00Z"}"#,
        );
        assert_eq!(revoke[0].kind, Kind::Revoke);
    }

    #[test]
    fn credential_ids_split_tokens_and_request_received_is_skipped() {
        let record = r#"{"kind":"Event","auditID":"a4","stage":"ResponseComplete","verb":"list",
            "user":{"username":"system:serviceaccount:ci:deployer","extra":{"authentication.kubernetes.io/credential-id":["JTI=7f1c"]}},
            "objectRef":{"resource":"secrets"},"stageTimestamp":"2026-03-01T10:00:00Z"}"#;
        assert_eq!(
            decode(record)[0].credential,
            "system:serviceaccount:ci:deployer/JTI=7f1c"
        );
        assert!(decode(&record.replace("ResponseComplete", "RequestReceived")).is_empty());
    }
}
