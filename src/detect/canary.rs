//! canary: any use of a decoy credential.
//!
//! Canary keys are planted where attackers look (repositories, CI variables, laptops) and used
//! by nobody; the first call with one is proof of compromise of wherever it was planted. The
//! registry is the `canaries` list of globs in config. The alert names the caller's network,
//! zone and user agent so the responder knows where to look.

use serde::Deserialize;
use serde_json::json;

use super::{address, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

#[derive(Debug)]
pub struct Canary;

impl Canary {
    pub fn new(_params: Params) -> Result<Self, String> {
        Ok(Canary)
    }
}

impl Detector for Canary {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        _before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        let event = observation.event;
        if event.kind != Kind::Access || !context.config.is_canary(&event.credential) {
            return;
        }
        out.push(|| {
            let network = observation
                .network
                .map_or_else(|| "no network".to_owned(), |n| n.to_string());
            Finding {
                analysis: None,
                summary: format!(
                    "decoy credential used from zone {} ({}, network {network}), user agent {}",
                    context.config.zones.name(observation.zone),
                    address(observation),
                    event.user_agent.as_deref().unwrap_or("none")
                ),
                expected: json!({ "use": "never: a decoy credential" }),
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
    fn any_use_of_a_decoy_fires_and_other_keys_stay_quiet() {
        let bench = Bench::new(DetectorKind::Canary, "");
        let mut event = access(
            at(0, 0),
            "AKIADECOY0001",
            "203.0.113.5",
            "sts:GetCallerIdentity",
        );
        event.user_agent = Some("TruffleHog".into());
        let findings = bench.feed(event);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].summary,
            "decoy credential used from zone internet (203.0.113.5, network 203.0.113.0/24), user agent TruffleHog"
        );
        assert!(bench
            .feed(access(at(1, 0), "AKIAREAL0001", "203.0.113.5", "a"))
            .is_empty());
    }
}
