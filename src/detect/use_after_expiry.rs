//! use_after_expiry: a credential used after the expiry its issuance declared.
//!
//! A successful call with an expired credential means the issuer does not enforce expiry or
//! the credential was re-minted outside the pipeline; either way someone should look.

use serde::Deserialize;
use serde_json::json;

use super::{address, minutes, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Tolerated clock skew between the issuer and the service that logged the call.
    #[serde(default)]
    grace: Period,
}

#[derive(Debug)]
pub struct UseAfterExpiry {
    params: Params,
}

impl UseAfterExpiry {
    pub fn new(params: Params) -> Result<Self, String> {
        Ok(UseAfterExpiry { params })
    }
}

impl Detector for UseAfterExpiry {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        if observation.event.kind != Kind::Access {
            return;
        }
        let Some(expires) = before.expires_at() else {
            return;
        };
        let ts = observation.event.ts;
        if ts <= expires.saturating_add(self.params.grace) {
            return;
        }
        out.push(|| Finding {
            analysis: None,
            summary: format!(
                "used {} minutes after it expired, from zone {} ({})",
                minutes(ts.since(expires)),
                context.config.zones.name(observation.zone),
                address(observation)
            ),
            expected: json!({ "expires_at": expires, "grace": self.params.grace.to_string() }),
            observed: observed_access(observation, context),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, issue, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_after_expiry_plus_grace() {
        let bench = Bench::new(DetectorKind::UseAfterExpiry, "grace = \"30s\"");
        let mut event = issue(at(0, 0), "k", &[]);
        event.expires_at = Some(at(60, 0));
        bench.feed(event);
        assert!(bench
            .feed(access(at(59, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        assert!(bench
            .feed(access(at(60, 20), "k", "10.0.1.5", "a"))
            .is_empty());
        let findings = bench.feed(access(at(75, 0), "k", "10.0.1.5", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .starts_with("used 15.0 minutes after it expired"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn credentials_without_expiry_never_fire() {
        let bench = Bench::new(DetectorKind::UseAfterExpiry, "");
        bench.feed(issue(at(0, 0), "k", &[]));
        assert!(bench
            .feed(access(at(100_000, 0), "k", "10.0.1.5", "a"))
            .is_empty());
    }
}
