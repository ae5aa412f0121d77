//! AWS CloudTrail: API calls made with access keys, and the calls that mint, revoke or
//! quarantine keys.
//!
//! - Any record whose `userIdentity.accessKeyId` is set is an `access` by that key; the
//!   endpoint is `service:EventName` (`s3:GetObject`), the outcome is `failure` when
//!   `errorCode` is set.
//! - `CreateAccessKey`, `AssumeRole*`, `GetSessionToken` and `GetFederationToken` that
//!   succeeded also `issue` the key in `responseElements`, with its owner and expiry (ISO 8601
//!   or CloudTrail's `Sep 14, 2020, 7:10:27 AM`). Session tokens are never copied.
//! - `DeleteAccessKey`, and `UpdateAccessKey` to `Inactive`, `revoke` a key.
//! - Attaching AWS's compromised-key quarantine policy (`AWSCompromisedKeyQuarantine*`) to a
//!   user is a `leak` report for that user's keys: the event's `owner` is the user's ARN.
//!
//! `sourceIPAddress` that is not an address (`ec2.amazonaws.com`, `AWS Internal`) becomes the
//! event's declared environment, which config maps to a zone through `environments`; an
//! address that does not parse (`08.1.250.216`) is kept and lands in zone `unknown`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{record_hash_id, DecodeError, Decoder, Format};
use crate::event::{Event, Kind, Outcome};
use crate::time::Timestamp;

#[derive(Debug, Default, Clone, Copy)]
pub struct CloudTrailDecoder;

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "eventTime", borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(rename = "@timestamp", borrow, default)]
    logstash_time: Option<Cow<'a, str>>,
    #[serde(rename = "eventName", borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "sourceIPAddress", borrow, default)]
    source_ip: Option<Cow<'a, str>>,
    #[serde(rename = "userAgent", borrow, default)]
    user_agent: Option<Cow<'a, str>>,
    /// Only whether it is set and not null matters: skipped, not built.
    #[serde(rename = "errorCode", default)]
    error_code: Option<serde::de::IgnoredAny>,
    #[serde(rename = "recipientAccountId", borrow, default)]
    recipient_account: Option<Cow<'a, str>>,
    #[serde(rename = "userIdentity", borrow, default)]
    user_identity: Option<UserIdentity<'a>>,
    // `requestParameters` and `responseElements` are skipped here: most records are API
    // calls whose bodies say nothing about credentials, and building them as `Value`s cost
    // more than the rest of the decode. The few calls that need them are parsed again with
    // [`Bodies`].
}

/// The request and response of a lifecycle call, parsed only for [`LIFECYCLE_CALLS`].
#[derive(Deserialize)]
struct Bodies {
    #[serde(rename = "requestParameters", default)]
    request: Option<Value>,
    #[serde(rename = "responseElements", default)]
    response: Option<Value>,
}

/// Calls whose request or response can mint, revoke or quarantine a key.
const LIFECYCLE_CALLS: &[&str] = &[
    "CreateAccessKey",
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetSessionToken",
    "GetFederationToken",
    "DeleteAccessKey",
    "UpdateAccessKey",
    "AttachUserPolicy",
    "PutUserPolicy",
];

#[derive(Deserialize)]
struct UserIdentity<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arn: Option<Cow<'a, str>>,
    #[serde(rename = "accountId", borrow, default)]
    account: Option<Cow<'a, str>>,
    #[serde(rename = "userName", borrow, default)]
    user_name: Option<Cow<'a, str>>,
    #[serde(rename = "accessKeyId", borrow, default)]
    access_key: Option<Cow<'a, str>>,
    #[serde(rename = "invokedBy", borrow, default)]
    invoked_by: Option<Cow<'a, str>>,
}

impl UserIdentity<'_> {
    /// Who made the call: the service for AWS services, else the ARN, else the user name.
    fn principal(&self) -> Option<String> {
        if self.kind.as_deref() == Some("AWSService") {
            if let Some(service) = self.invoked_by.as_deref().filter(|s| !s.is_empty()) {
                return Some(service.to_owned());
            }
        }
        self.arn
            .as_deref()
            .or(self.user_name.as_deref())
            .or(self.invoked_by.as_deref())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

impl Decoder for CloudTrailDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let parsed: Record = serde_json::from_slice(record)
            .map_err(|e| DecodeError::new(format!("invalid CloudTrail record: {e}")))?;
        let time = parsed
            .event_time
            .as_deref()
            .or(parsed.logstash_time.as_deref())
            .ok_or_else(|| {
                DecodeError::new("invalid CloudTrail record: no `eventTime` (nor `@timestamp`)")
            })?;
        let ts = parse_aws_time(time).ok_or_else(|| {
            DecodeError::new(format!(
                "invalid CloudTrail record: bad `eventTime` `{time}`"
            ))
        })?;
        let name = parsed
            .event_name
            .as_deref()
            .ok_or_else(|| DecodeError::new("invalid CloudTrail record: no `eventName`"))?;
        let base_id = match parsed.event_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => record_hash_id(record.trim_ascii()),
        };
        // `Option` reads a JSON null as `None`.
        let failed = parsed.error_code.is_some();
        let identity = parsed.user_identity.as_ref();
        let principal = identity.and_then(UserIdentity::principal);
        let account = identity
            .and_then(|i| i.account.as_deref())
            .or(parsed.recipient_account.as_deref())
            .unwrap_or("*")
            .to_owned();
        let (source_ip, environment) = match parsed.source_ip.as_deref() {
            Some(text)
                if text
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit())
                    || text.contains(' ') =>
            {
                (None, Some(text.to_owned()))
            }
            Some(text) if !text.is_empty() => (Some(text.to_owned()), None),
            _ => (None, None),
        };
        let first = out.len();

        if let Some(key) = identity
            .and_then(|i| i.access_key.as_deref())
            .filter(|k| !k.is_empty())
        {
            let mut event = Event::new(ts, Kind::Access, key);
            event.principal = principal.clone();
            event.source_ip = source_ip.clone();
            event.zone = environment.clone();
            let service = parsed.event_source.as_deref().unwrap_or("unknown");
            let service = service.strip_suffix(".amazonaws.com").unwrap_or(service);
            event.endpoint = Some(format!("{service}:{name}"));
            event.user_agent = parsed.user_agent.as_deref().map(str::to_owned);
            event.outcome = if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            event.event_id = base_id.clone();
            event.format = Format::Cloudtrail;
            out.push(event);
        }

        if !failed && LIFECYCLE_CALLS.contains(&name) {
            let bodies: Bodies = match serde_json::from_slice(record) {
                Ok(bodies) => bodies,
                Err(error) => {
                    out.truncate(first); // On error, nothing is appended.
                    return Err(DecodeError::new(format!(
                        "invalid CloudTrail record: {error}"
                    )));
                }
            };
            let lifecycle = lifecycle(
                name,
                bodies.request.as_ref(),
                bodies.response.as_ref(),
                &account,
            );
            if let Some((kind, credential, owner, expires)) = lifecycle {
                let mut event = Event::new(ts, kind, credential);
                event.principal = principal;
                event.owner = owner;
                event.expires_at = expires;
                event.event_id = format!("{base_id}:{}", kind.as_str());
                event.format = Format::Cloudtrail;
                if kind == Kind::Leak {
                    event.leak_source = Some("aws-compromised-key-quarantine".into());
                }
                out.push(event);
            }
        }
        if out.len() == first {
            tracing::trace!(
                event = name,
                "CloudTrail record without credential activity."
            );
        }
        Ok(())
    }
}

type Lifecycle = (Kind, String, Option<String>, Option<Timestamp>);

/// The lifecycle event a successful call implies, if any.
fn lifecycle(
    name: &str,
    request: Option<&Value>,
    response: Option<&Value>,
    account: &str,
) -> Option<Lifecycle> {
    let text = |value: Option<&Value>, path: &[&str]| -> Option<String> {
        let mut node = value?;
        for key in path {
            node = node.get(key)?;
        }
        node.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    match name {
        "CreateAccessKey" => {
            let key = text(response, &["accessKey", "accessKeyId"])?;
            let owner =
                text(response, &["accessKey", "userName"]).map(|user| user_arn(account, &user));
            Some((Kind::Issue, key, owner, None))
        }
        "AssumeRole"
        | "AssumeRoleWithSAML"
        | "AssumeRoleWithWebIdentity"
        | "GetSessionToken"
        | "GetFederationToken" => {
            let key = text(response, &["credentials", "accessKeyId"])?;
            let owner = text(response, &["assumedRoleUser", "arn"])
                .or_else(|| text(response, &["federatedUser", "arn"]));
            let expires =
                text(response, &["credentials", "expiration"]).and_then(|t| parse_aws_time(&t));
            Some((Kind::Issue, key, owner, expires))
        }
        "DeleteAccessKey" => {
            let key = text(request, &["accessKeyId"])?;
            Some((Kind::Revoke, key, None, None))
        }
        "UpdateAccessKey" => {
            let key = text(request, &["accessKeyId"])?;
            (text(request, &["status"]).as_deref() == Some("Inactive")).then_some((
                Kind::Revoke,
                key,
                None,
                None,
            ))
        }
        "AttachUserPolicy" | "PutUserPolicy" => {
            let policy =
                text(request, &["policyArn"]).or_else(|| text(request, &["policyName"]))?;
            if !policy.contains("AWSCompromisedKeyQuarantine") {
                return None;
            }
            let user = text(request, &["userName"])?;
            let arn = user_arn(account, &user);
            Some((Kind::Leak, format!("aws-user:{arn}"), Some(arn), None))
        }
        _ => None,
    }
}

fn user_arn(account: &str, user: &str) -> String {
    format!("arn:aws:iam::{account}:user/{user}")
}

/// Parses CloudTrail times: RFC 3339 or the console form of `responseElements`.
pub fn parse_aws_time(text: &str) -> Option<Timestamp> {
    Timestamp::parse_lenient(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(record: &str) -> Vec<Event> {
        let mut out = Vec::new();
        CloudTrailDecoder
            .decode(record.as_bytes(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn console_times_parse_as_utc() {
        let expected = Timestamp::parse_rfc3339("2020-09-14T07:10:27Z").unwrap();
        assert_eq!(parse_aws_time("Sep 14, 2020, 7:10:27 AM"), Some(expected));
        let pm = Timestamp::parse_rfc3339("2024-08-01T13:33:28Z").unwrap();
        assert_eq!(parse_aws_time("Aug 1, 2024 1:33:28 PM"), Some(pm));
        assert_eq!(parse_aws_time("2024-08-01T13:33:28Z"), Some(pm));
        assert_eq!(parse_aws_time("yesterday"), None);
    }

    #[test]
    fn an_api_call_is_an_access_by_its_key() {
        let events = decode(
            r#"{"eventTime":"2024-07-30T21:31:21Z","eventName":"GetObject","eventSource":"s3.amazonaws.com","eventID":"e1",
            "sourceIPAddress":"200.249.253.51","userAgent":"aws-cli","errorCode":"AccessDenied",
            "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/alice","accessKeyId":"AKIA1"}}"#,
        );
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.kind, Kind::Access);
        assert_eq!(event.credential, "AKIA1");
        assert_eq!(event.endpoint.as_deref(), Some("s3:GetObject"));
        assert_eq!(
            event.principal.as_deref(),
            Some("arn:aws:iam::1:user/alice")
        );
        assert_eq!(event.outcome, Outcome::Failure);
        assert_eq!(event.event_id, "e1");
        assert_eq!(event.format, Format::Cloudtrail);
    }

    #[test]
    fn assume_role_is_an_access_and_an_issuance_without_the_session_token() {
        let events = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"AssumeRole","eventSource":"sts.amazonaws.com","eventID":"e2",
            "sourceIPAddress":"ec2.amazonaws.com","userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"},
            "responseElements":{"credentials":{"accessKeyId":"ASIA1","sessionToken":"SECRET-TOKEN","expiration":"Jul 30, 2024, 9:46:15 PM"},
            "assumedRoleUser":{"arn":"arn:aws:sts::1:assumed-role/web/i-1"}}}"#,
        );
        assert_eq!(
            events.len(),
            1,
            "the service call has no access key of its own"
        );
        let issue = &events[0];
        assert_eq!(issue.kind, Kind::Issue);
        assert_eq!(issue.credential, "ASIA1");
        assert_eq!(issue.principal.as_deref(), Some("ec2.amazonaws.com"));
        assert_eq!(
            issue.owner.as_deref(),
            Some("arn:aws:sts::1:assumed-role/web/i-1")
        );
        assert_eq!(
            issue.expires_at,
            Timestamp::parse_rfc3339("2024-07-30T21:46:15Z").ok()
        );
        assert_eq!(issue.event_id, "e2:issue");
        assert!(!serde_json::to_string(issue)
            .unwrap()
            .contains("SECRET-TOKEN"));
    }

    #[test]
    fn service_names_become_declared_environments_and_bad_ips_are_kept() {
        let events = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"GetObject","eventSource":"s3.amazonaws.com",
            "sourceIPAddress":"AWS Internal","userIdentity":{"accessKeyId":"ASIA1"}}"#,
        );
        assert_eq!(events[0].zone.as_deref(), Some("AWS Internal"));
        assert_eq!(events[0].source_ip, None);
        let events = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"GetObject","eventSource":"s3.amazonaws.com",
            "sourceIPAddress":"08.1.250.216","userIdentity":{"accessKeyId":"ASIA1"}}"#,
        );
        assert_eq!(events[0].source_ip.as_deref(), Some("08.1.250.216"));
    }

    #[test]
    fn key_deletion_deactivation_and_quarantine() {
        let revoke = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"UpdateAccessKey","eventSource":"iam.amazonaws.com",
            "requestParameters":{"accessKeyId":"AKIA9","status":"Inactive"}}"#,
        );
        assert_eq!(
            (revoke[0].kind, revoke[0].credential.as_str()),
            (Kind::Revoke, "AKIA9")
        );
        let active = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"UpdateAccessKey","requestParameters":{"accessKeyId":"AKIA9","status":"Active"}}"#,
        );
        assert!(active.is_empty());
        let leak = decode(
            r#"{"eventTime":"2024-07-30T21:31:15Z","eventName":"AttachUserPolicy","recipientAccountId":"123",
            "requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}}"#,
        );
        assert_eq!(leak[0].kind, Kind::Leak);
        assert_eq!(leak[0].owner.as_deref(), Some("arn:aws:iam::123:user/bob"));
    }

    #[test]
    fn records_without_time_or_name_are_rejected_with_a_reason() {
        let mut out = Vec::new();
        let err = CloudTrailDecoder
            .decode(br#"{"eventName":"GetObject"}"#, &mut out)
            .unwrap_err();
        assert!(err.reason.contains("eventTime"), "{err}");
        let err = CloudTrailDecoder
            .decode(br#"{"eventTime":"2024-07-30T21:31:15Z"}"#, &mut out)
            .unwrap_err();
        assert!(err.reason.contains("eventName"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn logstash_records_use_at_timestamp() {
        let events = decode(
            r#"{"@timestamp":"2024-07-30T21:31:15.000Z","@version":"1","eventName":"ListBuckets","eventSource":"s3.amazonaws.com","userIdentity":{"accessKeyId":"AKIA2"}}"#,
        );
        assert_eq!(events[0].credential, "AKIA2");
    }
}
