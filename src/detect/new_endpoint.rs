//! new_endpoint: a credential with an established baseline calling an endpoint
//! (`service:action` or `METHOD /path`) it has not called before.
//!
//! An attacker with a stolen CI key lists users or creates access keys; the CI job never did.
//! Armed after the learning period; endpoints are remembered up to `max_endpoints`.

use serde::Deserialize;
use serde_json::json;

use super::{novelty, observed_access, Analysis, Context, Detector, Finding, Findings};
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

#[derive(Debug)]
pub struct NewEndpoint;

impl NewEndpoint {
    pub fn new(_params: Params) -> Result<Self, String> {
        Ok(NewEndpoint)
    }
}

impl Detector for NewEndpoint {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        let (Some(endpoint), Some(name)) =
            (observation.endpoint, observation.event.endpoint.as_deref())
        else {
            return;
        };
        let Some(novelty) = novelty(&endpoint, before.endpoints(), observation, before, context)
        else {
            return;
        };
        out.push(|| {
            let known = novelty.named(|key| context.endpoints.name(*key).to_string());
            let names: Vec<&str> = known.iter().map(|(name, _)| name.as_str()).collect();
            let summary = format!(
                "called new endpoint {name}; known endpoints [{}]{}",
                names.join(", "),
                novelty.notes(before, context)
            );
            let expected = json!({ "seen_endpoints": names, "baseline_events": before.accesses });
            Finding {
                analysis: Some(Analysis::unseen("endpoint", name, known)),
                summary,
                expected,
                observed: observed_access(observation, context),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_on_a_new_endpoint_after_learning() {
        let bench = Bench::new(DetectorKind::NewEndpoint, "");
        for m in 0..12 {
            let endpoint = if m % 2 == 0 {
                "s3:GetObject"
            } else {
                "s3:PutObject"
            };
            assert!(bench
                .feed(access(at(m, 0), "k", "10.0.1.5", endpoint))
                .is_empty());
        }
        let findings = bench.feed(access(at(13, 0), "k", "10.0.1.5", "iam:CreateAccessKey"));
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].summary,
            "called new endpoint iam:CreateAccessKey; known endpoints [s3:GetObject, s3:PutObject]"
        );
    }

    #[test]
    fn quiet_while_learning_and_for_known_endpoints() {
        let bench = Bench::new(DetectorKind::NewEndpoint, "");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "s3:GetObject"));
        assert!(bench
            .feed(access(at(1, 0), "k", "10.0.1.5", "iam:ListUsers"))
            .is_empty());
        for m in 2..15 {
            assert!(bench
                .feed(access(at(m, 0), "k", "10.0.1.5", "s3:GetObject"))
                .is_empty());
        }
    }
}
