//! `[respond.webhook]`: how revocations reach the revocation broker.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::rules::Severity;
use crate::time::Period;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRespond {
    webhook: RawWebhook,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: Period,
    #[serde(default = "default_backoff")]
    backoff: Period,
    #[serde(default = "default_max_backoff")]
    max_backoff: Period,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default = "default_max_queued")]
    max_queued: usize,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    protected: Vec<String>,
    #[serde(default = "default_min_severity")]
    min_severity: Severity,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    outbox: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    max: u32,
    per: Period,
}

fn default_timeout() -> Period {
    Period::from_secs(5)
}
fn default_backoff() -> Period {
    Period::from_micros(500_000)
}
fn default_max_backoff() -> Period {
    Period::from_secs(30)
}
fn default_max_queued() -> usize {
    1000
}
fn default_min_severity() -> Severity {
    Severity::High
}

/// The webhook secret: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// At most `max` revocations per `per` of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Period,
}

/// Validated webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub timeout: Period,
    pub backoff: Period,
    pub max_backoff: Period,
    /// Attempts per delivery before it is left in the outbox for the next start; unlimited
    /// when `None`.
    pub max_attempts: Option<u32>,
    /// Revocations decided but not yet delivered that may wait in memory; past it, input
    /// consumption pauses until the broker catches up (backpressure, never a drop).
    pub max_queued: usize,
    pub dry_run: bool,
    pub protected_patterns: Vec<String>,
    pub protected: GlobSet,
    pub min_severity: Severity,
    pub rate_limit: Option<RateLimit>,
    pub outbox: PathBuf,
}

impl WebhookConfig {
    pub fn is_protected(&self, credential: &str) -> bool {
        self.protected.is_match(credential)
    }
}

impl RawRespond {
    pub(super) fn validate(self, base: Option<&Path>) -> Result<WebhookConfig, String> {
        let raw = self.webhook;
        let url = reqwest::Url::parse(&raw.url)
            .map_err(|e| format!("webhook.url: `{}`: {e}", raw.url))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("webhook.url: `{}` must be http or https", raw.url));
        }
        let secret = super::read_secret(&raw.secret_env, &raw.secret_file, "webhook.secret", base)?
            .ok_or("webhook: give `secret_env` or `secret_file` (never the secret itself)")?;
        if secret.expose().len() < 16 {
            return Err("webhook: the secret must be at least 16 bytes".into());
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in &raw.protected {
            builder.add(
                Glob::new(pattern).map_err(|e| format!("webhook.protected: `{pattern}`: {e}"))?,
            );
        }
        let protected = builder
            .build()
            .map_err(|e| format!("webhook.protected: {e}"))?;
        if let Some(limit) = &raw.rate_limit {
            if limit.max == 0 || limit.per <= Period::ZERO {
                return Err("webhook.rate_limit: `max` and `per` must be positive".into());
            }
        }
        if raw.timeout <= Period::ZERO
            || raw.backoff <= Period::ZERO
            || raw.max_backoff < raw.backoff
        {
            return Err(
                "webhook: timeout and backoff must be positive, max_backoff at least backoff"
                    .into(),
            );
        }
        if raw.max_queued == 0 {
            return Err("webhook.max_queued: must be at least 1".into());
        }
        Ok(WebhookConfig {
            url: raw.url,
            secret,
            timeout: raw.timeout,
            backoff: raw.backoff,
            max_backoff: raw.max_backoff,
            max_attempts: raw.max_attempts,
            max_queued: raw.max_queued,
            dry_run: raw.dry_run,
            protected_patterns: raw.protected,
            protected,
            min_severity: raw.min_severity,
            rate_limit: raw.rate_limit.map(|r| RateLimit {
                max: r.max,
                per: r.per,
            }),
            outbox: super::resolve(base, &raw.outbox),
        })
    }
}
