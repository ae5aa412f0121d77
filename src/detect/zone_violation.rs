//! zone_violation: a credential used from a zone it does not belong to.
//!
//! The allowed zones come from the issuance event, else an `[[issuers]]` rule, else the zones
//! learned during the learning period (when `learned = true`). Until one of those is known the
//! detector stays quiet rather than guess.

use serde::Deserialize;
use serde_json::json;

use super::{
    address, allowed_zones, observed_access, zone_list, Analysis, Anomaly, Context, Detector,
    Finding, Findings, Observed,
};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::zones::ZoneId;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Calls whose zone cannot be told (no or unparsable address) are not violations.
    #[serde(default = "yes")]
    ignore_unknown: bool,
    /// Judge credentials without declared zones against the zones learned for them.
    #[serde(default = "yes")]
    learned: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug)]
pub struct ZoneViolation {
    params: Params,
}

impl ZoneViolation {
    pub fn new(params: Params) -> Result<Self, String> {
        Ok(ZoneViolation { params })
    }
}

impl Detector for ZoneViolation {
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
        if observation.zone == ZoneId::UNKNOWN && self.params.ignore_unknown {
            return;
        }
        let Some((allowed, from)) =
            allowed_zones(observation, before, context, self.params.learned)
        else {
            return;
        };
        if allowed.contains(observation.zone) {
            return;
        }
        out.push(|| {
            let zone = context.config.zones.name(observation.zone);
            let allowed = zone_list(context, allowed);
            let networks: Vec<String> =
                before.networks().map(|seen| seen.key.to_string()).collect();
            Finding {
            analysis: Some(Analysis {
                anomaly: Anomaly {
                    observation_parameter: "zone".into(),
                    observation_type: "Distribution Analysis".into(),
                    observed_pattern: "OUTSIDE_ALLOWED_ZONES".into(),
                    observations: vec![Observed::new(zone, None)],
                },
                baseline: Anomaly {
                    observation_parameter: "zone".into(),
                    observation_type: "Distribution Analysis".into(),
                    observed_pattern: if from.is_declared() {
                        "DECLARED"
                    } else {
                        "LEARNED"
                    }
                    .into(),
                    observations: allowed.iter().map(|z| Observed::new(z.clone(), None)).collect(),
                },
            }),
            summary: format!(
                "used from zone {zone} ({}); allowed zones [{}] ({})",
                address(observation),
                allowed.join(", "),
                from.as_str()
            ),
            expected: json!({ "allowed_zones": allowed, "allowed_from": from.as_str(), "seen_networks": networks }),
            observed: observed_access(observation, context),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, issue, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_outside_issued_zones() {
        let bench = Bench::new(DetectorKind::ZoneViolation, "");
        bench.feed(issue(at(0, 0), "k", &["prod"]));
        assert!(bench
            .feed(access(at(1, 0), "k", "10.0.1.5", "s3:Get"))
            .is_empty());
        let findings = bench.feed(access(at(2, 0), "k", "203.0.113.7", "s3:Get"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].summary.contains("zone internet (203.0.113.7)"),
            "{}",
            findings[0].summary
        );
        assert_eq!(findings[0].expected["allowed_zones"][0], "prod");
    }

    #[test]
    fn issuer_rules_apply_to_uses_without_issuance() {
        let bench = Bench::new(DetectorKind::ZoneViolation, "");
        let mut event = access(at(0, 0), "k", "10.0.1.5", "s3:Get");
        event.principal = Some("runner-7".into());
        let findings = bench.feed(event);
        assert_eq!(findings.len(), 1, "runner-* credentials belong to ci");
        assert_eq!(findings[0].expected["allowed_from"], "issuer rule");
    }

    #[test]
    fn learned_zones_arm_after_learning() {
        let bench = Bench::new(DetectorKind::ZoneViolation, "");
        for m in 0..3 {
            assert!(bench
                .feed(access(at(m, 0), "k", "10.0.1.5", "s3:Get"))
                .is_empty());
        }
        // Still young (learning needs 10 minutes): a corp use is learned, not flagged.
        assert!(bench
            .feed(access(at(4, 0), "k", "192.168.1.1", "s3:Get"))
            .is_empty());
        assert!(bench
            .feed(access(at(20, 0), "k", "192.168.1.1", "s3:Get"))
            .is_empty());
        assert_eq!(
            bench
                .feed(access(at(21, 0), "k", "10.2.0.9", "s3:Get"))
                .len(),
            1
        );
    }

    #[test]
    fn unknown_zones_and_unknown_credentials_stay_quiet() {
        let bench = Bench::new(DetectorKind::ZoneViolation, "");
        bench.feed(issue(at(0, 0), "k", &["prod"]));
        assert!(bench
            .feed(access(at(1, 0), "k", "not-an-ip", "s3:Get"))
            .is_empty());
        assert!(bench
            .feed(access(at(1, 0), "other", "203.0.113.7", "s3:Get"))
            .is_empty());
        let strict = Bench::new(DetectorKind::ZoneViolation, "ignore_unknown = false");
        strict.feed(issue(at(0, 0), "k", &["prod"]));
        assert_eq!(
            strict
                .feed(access(at(1, 0), "k", "not-an-ip", "s3:Get"))
                .len(),
            1
        );
    }
}
