//! unknown_credential: the first use of a credential whose issuance was never seen.
//!
//! Where every issuance flows through credwatch (a Vault, an IAM pipeline), a key nobody issued
//! is forged, leaked from elsewhere or a forgotten legacy key. Fires once per credential;
//! scope the rule (`[scope] credentials`) to the id patterns whose issuance you do see.

use serde::Deserialize;
use serde_json::json;

use super::{address, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

#[derive(Debug)]
pub struct UnknownCredential;

impl UnknownCredential {
    pub fn new(_params: Params) -> Result<Self, String> {
        Ok(UnknownCredential)
    }
}

impl Detector for UnknownCredential {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        if observation.event.kind != Kind::Access
            || before.issued_at.is_some()
            || before.accesses > 0
        {
            return;
        }
        out.push(|| Finding {
            analysis: None,
            summary: format!(
                "used but never issued, from zone {} ({})",
                context.config.zones.name(observation.zone),
                address(observation)
            ),
            expected: json!({ "issued": true }),
            observed: observed_access(observation, context),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, issue, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_once_for_a_credential_never_issued() {
        let bench = Bench::new(DetectorKind::UnknownCredential, "");
        assert_eq!(
            bench
                .feed(access(at(0, 0), "ghost", "203.0.113.5", "a"))
                .len(),
            1
        );
        assert!(bench
            .feed(access(at(1, 0), "ghost", "203.0.113.5", "a"))
            .is_empty());
    }

    #[test]
    fn quiet_for_issued_credentials() {
        let bench = Bench::new(DetectorKind::UnknownCredential, "");
        bench.feed(issue(at(0, 0), "k", &[]));
        assert!(bench
            .feed(access(at(1, 0), "k", "10.0.1.5", "a"))
            .is_empty());
    }
}
