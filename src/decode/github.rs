//! GitHub secret scanning alert webhooks (`secret_scanning_alert`): leak reports.
//!
//! `created` and `reopened` alerts become `leak` events (`publicly_leaked`, `validated` and
//! others are treated the same); `resolved` and the like are ignored. The credential is the
//! secret itself only for AWS access key ids (which are ids, not secrets); any other secret is
//! replaced by its SHA-256 (`sha256:<hex>`, see README), so no raw secret is ever stored.

use serde::Deserialize;

use super::{DecodeError, Decoder, Format, SecretHasher};
use crate::event::{Event, Kind};
use crate::time::Timestamp;

#[derive(Debug, Default, Clone)]
pub struct GithubSecretScanningDecoder {
    hasher: SecretHasher,
}

impl GithubSecretScanningDecoder {
    pub fn new(hasher: SecretHasher) -> GithubSecretScanningDecoder {
        GithubSecretScanningDecoder { hasher }
    }
}

#[derive(Deserialize)]
struct Webhook {
    action: String,
    alert: Alert,
    #[serde(default)]
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Alert {
    #[serde(default)]
    number: Option<u64>,
    #[serde(default)]
    secret_type: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    #[serde(default)]
    full_name: Option<String>,
}

/// AWS access key ids are 20 upper-case letters and digits starting with a known prefix.
pub(crate) fn is_aws_key_id(secret: &str) -> bool {
    secret.len() == 20
        && [
            "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "APKA",
        ]
        .iter()
        .any(|p| secret.starts_with(p))
        && secret
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl Decoder for GithubSecretScanningDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        let hook: Webhook = serde_json::from_slice(record).map_err(|e| {
            DecodeError::new(format!("invalid GitHub secret scanning webhook: {e}"))
        })?;
        if !matches!(
            hook.action.as_str(),
            "created" | "reopened" | "publicly_leaked" | "validated"
        ) {
            return Ok(());
        }
        let alert = hook.alert;
        let time = if hook.action == "created" {
            alert.created_at.as_deref()
        } else {
            alert.updated_at.as_deref().or(alert.created_at.as_deref())
        }
        .ok_or_else(|| {
            DecodeError::new("invalid GitHub secret scanning webhook: alert has no `created_at`")
        })?;
        let ts = Timestamp::parse_rfc3339(time).map_err(|e| {
            DecodeError::new(format!("invalid GitHub secret scanning webhook: {e}"))
        })?;
        let secret = alert
            .secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DecodeError::new("invalid GitHub secret scanning webhook: alert has no `secret` to identify the credential"))?;
        let credentials = if is_aws_key_id(secret) {
            vec![secret.to_owned()]
        } else {
            self.hasher.ids(secret)
        };
        let repository = hook
            .repository
            .and_then(|r| r.full_name)
            .unwrap_or_default();
        let event_id = format!(
            "github:{repository}:{}:{}",
            alert.number.unwrap_or(0),
            hook.action
        );
        let mut event = Event::new(ts, Kind::Leak, String::new());
        event.leak_source = Some(match &alert.secret_type {
            Some(kind) => format!("github-secret-scanning ({kind})"),
            None => "github-secret-scanning".to_owned(),
        });
        event.leak_url = alert.html_url;
        event.event_id = event_id;
        event.format = Format::GithubSecretScanning;
        super::leak_per_id(credentials, event, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_alerts_are_leaks_without_the_secret() {
        let record = br#"{"action":"created","alert":{"number":42,"secret_type":"github_personal_access_token",
            "secret":"ghp_supersecretvalue","html_url":"https://github.com/o/r/security/secret-scanning/42",
            "created_at":"2026-03-01T10:00:00Z"},"repository":{"full_name":"o/r"}}"#;
        let mut out = Vec::new();
        GithubSecretScanningDecoder::default()
            .decode(record, &mut out)
            .unwrap();
        assert_eq!(out[0].kind, Kind::Leak);
        assert!(out[0].credential.starts_with("sha256:"));
        let json = serde_json::to_string(&out[0]).unwrap();
        assert!(!json.contains("supersecretvalue"), "{json}");
        assert_eq!(out[0].event_id, "github:o/r:42:created");
    }

    #[test]
    fn aws_key_ids_are_kept_and_resolutions_ignored() {
        let record = br#"{"action":"created","alert":{"secret_type":"aws_access_key_id","secret":"AKIAIOSFODNN7EXAMPLE","created_at":"2026-03-01T10:00:00Z"}}"#;
        let mut out = Vec::new();
        GithubSecretScanningDecoder::default()
            .decode(record, &mut out)
            .unwrap();
        assert_eq!(out[0].credential, "AKIAIOSFODNN7EXAMPLE");
        out.clear();
        let resolved =
            br#"{"action":"resolved","alert":{"secret":"x","created_at":"2026-03-01T10:00:00Z"}}"#;
        GithubSecretScanningDecoder::default()
            .decode(resolved, &mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
