//! new_user_agent: a credential with an established baseline called with a client it has never
//! used: a service key that always speaks through the Go SDK suddenly sending `curl` or
//! `python-requests` requests, or an attacker's scanner.
//!
//! Agents are compared by product (`aws-cli`, version stripped) so upgrades stay quiet. Well-known
//! automation (Terraform, Pulumi, CloudFormation, the AWS CLI and SDKs) is named in the alert
//! text, since a key that starts deploying infrastructure is its own kind of surprise.

use serde::Deserialize;
use serde_json::json;

use super::{address, novelty, observed_access, Analysis, Context, Detector, Finding, Findings};
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

#[derive(Debug)]
pub struct NewUserAgent;

impl NewUserAgent {
    pub fn new(_params: Params) -> Result<Self, String> {
        Ok(NewUserAgent)
    }
}

/// A name for well-known automation, from the full user agent.
pub fn automation(user_agent: &str) -> Option<&'static str> {
    let lower = user_agent.to_ascii_lowercase();
    [
        ("terraform", "Terraform"),
        ("pulumi", "Pulumi"),
        ("cloudformation", "CloudFormation"),
        ("aws-cdk", "AWS CDK"),
        ("aws-cli", "AWS CLI"),
        ("boto3", "boto3 (AWS SDK for Python)"),
        ("aws-sdk", "an AWS SDK"),
        ("kubectl", "kubectl"),
        ("trufflehog", "TruffleHog (secret scanner)"),
    ]
    .iter()
    .find(|(needle, _)| lower.contains(needle))
    .map(|(_, name)| *name)
}

impl Detector for NewUserAgent {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        let (Some(agent), Some(full)) = (
            observation.user_agent,
            observation.event.user_agent.as_deref(),
        ) else {
            return;
        };
        let Some(novelty) = novelty(&agent, before.user_agents(), observation, before, context)
        else {
            return;
        };
        out.push(|| {
            let known = novelty.named(|key| context.user_agents.name(*key).to_string());
            let names: Vec<&str> = known.iter().map(|(name, _)| name.as_str()).collect();
            let what = automation(full)
                .map(|name| format!(" ({name})"))
                .unwrap_or_default();
            let summary = format!(
                "called with new user agent {full}{what} from {}; known agents [{}]{}",
                address(observation),
                names.join(", "),
                novelty.notes(before, context)
            );
            let expected = json!({ "seen_user_agents": names, "baseline_events": before.accesses });
            let mut observed = observed_access(observation, context);
            observed["automation"] = json!(automation(full));
            Finding {
                analysis: Some(Analysis::unseen("user_agent", full, known)),
                summary,
                expected,
                observed,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::automation;
    use crate::detect::testkit::{access, at, Bench};
    use crate::detect::DetectorKind;

    fn with_agent(minute: i64, agent: &str) -> crate::event::Event {
        let mut event = access(at(minute, 0), "k", "10.0.1.5", "s3:GetObject");
        event.user_agent = Some(agent.to_owned());
        event
    }

    #[test]
    fn fires_on_a_new_product_after_learning_but_not_on_upgrades() {
        let bench = Bench::new(DetectorKind::NewUserAgent, "");
        for minute in 0..12 {
            assert!(bench
                .feed(with_agent(minute, "aws-sdk-go-v2/1.30.3"))
                .is_empty());
        }
        assert!(
            bench
                .feed(with_agent(13, "aws-sdk-go-v2/1.31.0"))
                .is_empty(),
            "an upgrade"
        );
        let findings = bench.feed(with_agent(
            14,
            "Terraform/1.7.5 (+https://www.terraform.io)",
        ));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].summary.contains("(Terraform)"),
            "{}",
            findings[0].summary
        );
        assert!(
            findings[0]
                .summary
                .ends_with("known agents [aws-sdk-go-v2]"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn quiet_while_learning() {
        let bench = Bench::new(DetectorKind::NewUserAgent, "");
        bench.feed(with_agent(0, "curl/8.5.0"));
        assert!(bench.feed(with_agent(1, "python-requests/2.31")).is_empty());
    }

    #[test]
    fn names_well_known_automation() {
        assert_eq!(automation("aws-cli/2.15.0 Python/3.11"), Some("AWS CLI"));
        assert_eq!(automation("pulumi/3.100"), Some("Pulumi"));
        assert_eq!(automation("curl/8.5.0"), None);
    }
}
