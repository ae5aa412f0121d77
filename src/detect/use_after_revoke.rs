//! use_after_revoke: a credential used after it was revoked.
//!
//! Failed calls count too: an attacker replaying a dead key is worth knowing about, and the
//! outcome is in the evidence.

use serde::Deserialize;
use serde_json::json;

use super::{address, minutes, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Uses this soon after revocation are ignored (revocation takes time to propagate).
    #[serde(default)]
    grace: Period,
}

#[derive(Debug)]
pub struct UseAfterRevoke {
    params: Params,
}

impl UseAfterRevoke {
    pub fn new(params: Params) -> Result<Self, String> {
        Ok(UseAfterRevoke { params })
    }
}

impl Detector for UseAfterRevoke {
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
        let Some(revoked) = before.revoked_at() else {
            return;
        };
        let ts = observation.event.ts;
        if ts <= revoked.saturating_add(self.params.grace) {
            return;
        }
        out.push(|| Finding {
            analysis: None,
            summary: format!(
                "used {} minutes after it was revoked, from zone {} ({}), outcome {}",
                minutes(ts.since(revoked)),
                context.config.zones.name(observation.zone),
                address(observation),
                serde_json::to_value(observation.event.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            expected: json!({ "no_use_after": revoked }),
            observed: observed_access(observation, context),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, lifecycle, Bench};
    use crate::detect::DetectorKind;
    use crate::event::Kind;

    #[test]
    fn fires_after_revocation_only() {
        let bench = Bench::new(DetectorKind::UseAfterRevoke, "");
        assert!(bench
            .feed(access(at(0, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        bench.feed(lifecycle(at(5, 0), Kind::Revoke, "k"));
        let findings = bench.feed(access(at(8, 0), "k", "10.0.1.5", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .starts_with("used 3.0 minutes after it was revoked"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn grace_covers_propagation() {
        let bench = Bench::new(DetectorKind::UseAfterRevoke, "grace = \"1m\"");
        bench.feed(lifecycle(at(5, 0), Kind::Revoke, "k"));
        assert!(bench
            .feed(access(at(5, 30), "k", "10.0.1.5", "a"))
            .is_empty());
        assert_eq!(bench.feed(access(at(6, 30), "k", "10.0.1.5", "a")).len(), 1);
        assert!(bench
            .feed(access(at(7, 0), "other", "10.0.1.5", "a"))
            .is_empty());
    }
}
