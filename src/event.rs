//! The normalized event: what every input format decodes into.
//!
//! Everything downstream of `decode` (zones, state, detectors, alerts, archive) sees only this
//! struct. It is also the native input format: one JSON object per line, documented in the
//! README. Credentials are stable identifiers (an AWS access key id, a Vault accessor, a
//! service-account token id), never the secret itself.

use serde::{Deserialize, Serialize};

use crate::decode::Format;
use crate::time::Timestamp;

/// What happened to the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The credential was used to call something.
    Access,
    /// The credential was created (with optional expiry, owner and allowed zones).
    Issue,
    /// The credential was revoked or deactivated.
    Revoke,
    /// The credential was reported exposed (secret scanner, quarantine policy, manual report).
    Leak,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Access, Kind::Issue, Kind::Revoke, Kind::Leak];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Issue => "issue",
            Kind::Revoke => "revoke",
            Kind::Leak => "leak",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether the call succeeded, as the log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    #[default]
    Unknown,
}

impl Outcome {
    fn is_unknown(&self) -> bool {
        *self == Outcome::Unknown
    }
}

/// One normalized event. Field meanings are in the README ("Native format").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Event time, RFC 3339.
    pub ts: Timestamp,
    pub kind: Kind,
    /// Stable credential id; never the secret.
    pub credential: String,
    /// The identity using (access) or creating (issue) the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Caller address as logged; an unparsable value is kept and classified as zone `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Declared environment from the log (mapped to a zone through `environments` in config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `service:action` or `METHOD /path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Outcome::is_unknown")]
    pub outcome: Outcome,
    /// Issue only: when the credential stops being valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Issue only: the zones the credential may be used from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_zones: Vec<String>,
    /// Issue only: the identity the credential belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Leak only: who reported the exposure (`github-secret-scanning`, `aws-quarantine`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_source: Option<String>,
    /// Leak only: where the secret was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_url: Option<String>,
    /// A hash of the credential's secret as the log carries it (`hmac-sha256:<hex>` from
    /// Vault's audit device, or `sha256:<hex>` sent with an issuance); never the secret. A
    /// leak report holding the raw secret is matched to this credential through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Id from the log; when absent the decoder derives one from a hash of the raw record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The input format this event was decoded from.
    #[serde(default, skip_serializing_if = "Format::is_native")]
    pub format: Format,
}

impl Event {
    /// A bare event of `kind` for `credential` at `ts`; the other fields are empty.
    pub fn new(ts: Timestamp, kind: Kind, credential: impl Into<String>) -> Self {
        Event {
            ts,
            kind,
            credential: credential.into(),
            principal: None,
            source_ip: None,
            zone: None,
            endpoint: None,
            user_agent: None,
            outcome: Outcome::Unknown,
            expires_at: None,
            allowed_zones: Vec::new(),
            owner: None,
            leak_source: None,
            leak_url: None,
            secret_hash: None,
            event_id: String::new(),
            format: Format::Native,
        }
    }
}
