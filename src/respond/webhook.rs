//! The webhook client: one signed POST per attempt, retried with exponential backoff and
//! jitter on connection errors, timeouts, 5xx, 408 and 429 (honouring `Retry-After`); any other
//! 4xx is final.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::blocking::Client;
use reqwest::StatusCode;

use super::signature::{sign, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::WebhookConfig;

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again, after at least this long when the broker said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The broker refused it; trying again would not help.
    Refused {
        reason: String,
    },
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    Refused {
        attempts: u32,
        reason: String,
    },
    /// Attempts exhausted (or stopping): stays in the outbox for the next start.
    Pending {
        attempts: u32,
        reason: String,
    },
}

/// Posts signed revocation requests.
pub struct WebhookClient {
    client: Client,
    url: String,
    secret: Vec<u8>,
    backoff: Duration,
    max_backoff: Duration,
    max_attempts: Option<u32>,
}

fn duration(period: crate::time::Period) -> Duration {
    Duration::from_micros(period.micros().max(0) as u64)
}

impl WebhookClient {
    pub fn new(config: &WebhookConfig) -> Result<WebhookClient, reqwest::Error> {
        let client = Client::builder()
            .timeout(duration(config.timeout))
            .user_agent(concat!("credwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookClient {
            client,
            url: config.url.clone(),
            secret: config.secret.expose().to_vec(),
            backoff: duration(config.backoff),
            max_backoff: duration(config.max_backoff),
            max_attempts: config.max_attempts,
        })
    }

    /// One attempt, signed with the current time.
    pub fn attempt(&self, key: &str, body: &[u8]) -> Attempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(&self.secret, timestamp, body))
            .header(IDEMPOTENCY_HEADER, key)
            .body(body.to_vec())
            .send();
        match response {
            Err(error) => Attempt::Retry {
                reason: if error.is_timeout() {
                    "timeout".into()
                } else {
                    format!("connection: {error}")
                },
                after: None,
            },
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Attempt::Delivered;
                }
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let reason = format!("HTTP {status}");
                if status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS
                {
                    Attempt::Retry { reason, after }
                } else {
                    Attempt::Refused { reason }
                }
            }
        }
    }

    /// Attempts until delivered, refused, out of attempts, or `stop()` says so.
    pub fn deliver(&self, key: &str, body: &[u8], stop: &dyn Fn() -> bool) -> Outcome {
        let mut attempts = 0;
        let mut backoff = self.backoff;
        loop {
            attempts += 1;
            let attempt = self.attempt(key, body);
            tracing::info!(key, attempts, outcome = ?attempt, "Revocation attempt.");
            match attempt {
                Attempt::Delivered => return Outcome::Delivered { attempts },
                Attempt::Refused { reason } => return Outcome::Refused { attempts, reason },
                Attempt::Retry { reason, after } => {
                    if self.max_attempts.is_some_and(|max| attempts >= max) || stop() {
                        return Outcome::Pending { attempts, reason };
                    }
                    // Full jitter on the exponential step, never less than Retry-After.
                    let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
                    let wait = after.map_or(jittered, |after| after.max(jittered));
                    let deadline = std::time::Instant::now() + wait;
                    while std::time::Instant::now() < deadline {
                        if stop() {
                            return Outcome::Pending { attempts, reason };
                        }
                        std::thread::sleep(Duration::from_millis(20).min(wait));
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}
