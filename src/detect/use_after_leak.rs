//! use_after_leak: any use of a credential after it was reported exposed.
//!
//! Attackers try leaked keys within minutes; the alert says how many minutes after the report
//! the use came, who reported the leak and where the secret was found.

use serde::Deserialize;
use serde_json::json;

use super::{address, minutes, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Uses this soon after the report are ignored (for example the reporter's own check).
    #[serde(default)]
    grace: Period,
}

#[derive(Debug)]
pub struct UseAfterLeak {
    params: Params,
}

impl UseAfterLeak {
    pub fn new(params: Params) -> Result<Self, String> {
        Ok(UseAfterLeak { params })
    }
}

impl Detector for UseAfterLeak {
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
        // The credential's own report, else one naming its user as owner; the earlier counts.
        let leak = match (before.leak(), observation.owner_leak.as_ref()) {
            (Some(own), Some(owner)) => Some(if owner.at < own.at { owner } else { own }),
            (own, owner) => own.or(owner),
        };
        let Some(leak) = leak else {
            return;
        };
        let ts = observation.event.ts;
        if ts < leak.at.saturating_add(self.params.grace) {
            return;
        }
        let after = ts.since(leak.at);
        let source = leak.source.as_deref().unwrap_or("an unnamed source");
        out.push(|| Finding {
            analysis: None,
            summary: format!(
                "used {} minutes after it was reported leaked by {source}{}, from zone {} ({})",
                minutes(after),
                leak.url
                    .as_deref()
                    .map(|url| format!(" ({url})"))
                    .unwrap_or_default(),
                context.config.zones.name(observation.zone),
                address(observation)
            ),
            expected: json!({
                "no_use_after": leak.at,
                "leak_source": leak.source,
                "leak_url": leak.url,
            }),
            observed: {
                let mut observed = observed_access(observation, context);
                observed["minutes_after_leak"] = json!(after.as_minutes_f64());
                observed
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, lifecycle, Bench};
    use crate::detect::DetectorKind;
    use crate::event::Kind;

    #[test]
    fn fires_with_minutes_since_the_report() {
        let bench = Bench::new(DetectorKind::UseAfterLeak, "");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        let mut leak = lifecycle(at(10, 0), Kind::Leak, "k");
        leak.leak_source = Some("github-secret-scanning".into());
        leak.leak_url = Some("https://github.com/o/r/blob/main/.env".into());
        bench.feed(leak);
        let findings = bench.feed(access(at(27, 0), "k", "203.0.113.9", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].summary.starts_with(
                "used 17.0 minutes after it was reported leaked by github-secret-scanning"
            ),
            "{}",
            findings[0].summary
        );
        assert_eq!(findings[0].observed["minutes_after_leak"], 17.0);
    }

    #[test]
    fn a_report_naming_the_owner_covers_the_owners_keys() {
        let bench = Bench::new(DetectorKind::UseAfterLeak, "");
        let mut leak = lifecycle(at(10, 0), Kind::Leak, "aws-user:arn:aws:iam::1:user/bob");
        leak.owner = Some("arn:aws:iam::1:user/bob".into());
        bench.feed(leak);
        let mut use_by_bob = access(at(12, 0), "AKIABOB", "10.0.1.5", "a");
        use_by_bob.principal = Some("arn:aws:iam::1:user/bob".into());
        assert_eq!(bench.feed(use_by_bob).len(), 1);
        let mut use_by_alice = access(at(12, 0), "AKIAALICE", "10.0.1.5", "a");
        use_by_alice.principal = Some("arn:aws:iam::1:user/alice".into());
        assert!(bench.feed(use_by_alice).is_empty());
    }

    #[test]
    fn quiet_before_a_report_and_within_grace() {
        let bench = Bench::new(DetectorKind::UseAfterLeak, "grace = \"2m\"");
        assert!(bench
            .feed(access(at(0, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        bench.feed(lifecycle(at(10, 0), Kind::Leak, "k"));
        assert!(bench
            .feed(access(at(11, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        assert_eq!(bench.feed(access(at(13, 0), "k", "10.0.1.5", "a")).len(), 1);
    }
}
