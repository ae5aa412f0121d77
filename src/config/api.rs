//! `[api]`: the operations HTTP server `credwatch run` starts.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use super::{read_secret, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<String>,
    #[serde(default)]
    github_secret_env: Option<String>,
    #[serde(default)]
    github_secret_file: Option<String>,
    #[serde(default)]
    github_partner_keys_file: Option<String>,
    #[serde(default)]
    leaks_topic: Option<String>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_ring")]
    alerts_kept: usize,
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_ring() -> usize {
    10_000
}

/// Validated `[api]` settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/v1`.
    pub token: Secret,
    /// Secret of GitHub webhook deliveries (`X-Hub-Signature-256`), if GitHub posts here.
    pub github_secret: Option<Secret>,
    /// GitHub's secret scanning public keys, if GitHub's partner program posts here.
    pub github_partner_keys: Option<crate::decode::github_partner::PartnerKeys>,
    /// Input topic (native format) that leak reports posted here are produced to.
    pub leaks_topic: Option<String>,
    pub max_body_bytes: usize,
    /// Recent alerts kept in memory for `GET /v1/alerts`.
    pub alerts_kept: usize,
}

impl RawApi {
    pub(super) fn validate(self, base: Option<&Path>) -> Result<ApiConfig, String> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "listen: `{}` is not host:port (for example 127.0.0.1:9464)",
                self.listen
            )
        })?;
        let token = read_secret(&self.token_env, &self.token_file, "token", base)?
            .ok_or("give `token_env` or `token_file`: the /v1 API always needs a bearer token")?;
        if token.expose().len() < 16 {
            return Err("the bearer token must be at least 16 bytes".into());
        }
        let github_secret = read_secret(
            &self.github_secret_env,
            &self.github_secret_file,
            "github_secret",
            base,
        )?;
        let github_partner_keys = match &self.github_partner_keys_file {
            None => None,
            Some(path) => {
                let path = super::resolve(base, path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "github_partner_keys_file: cannot read {}: {e}",
                        path.display()
                    )
                })?;
                Some(
                    crate::decode::github_partner::PartnerKeys::parse(&text)
                        .map_err(|e| format!("github_partner_keys_file {}: {e}", path.display()))?,
                )
            }
        };
        if self.max_body_bytes == 0 || self.alerts_kept == 0 {
            return Err("max_body_bytes and alerts_kept must be positive".into());
        }
        Ok(ApiConfig {
            listen,
            token,
            github_secret,
            github_partner_keys,
            leaks_topic: self.leaks_topic.filter(|t| !t.is_empty()),
            max_body_bytes: self.max_body_bytes,
            alerts_kept: self.alerts_kept,
        })
    }
}
