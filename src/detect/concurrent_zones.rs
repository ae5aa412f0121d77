//! concurrent_zones: one credential used from two zones within a short window.
//!
//! A key that works from the prod VPC and, two minutes later, from a laptop has been copied.
//! Credentials declared for several zones (issuance or issuer rule) may alternate between
//! those zones freely; anything else is flagged.

use serde::Deserialize;
use serde_json::json;

use super::{address, observed_access, Context, Detector, Finding, Findings};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;
use crate::zones::ZoneId;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Two zones used within this much event time count as concurrent.
    #[serde(default = "default_window")]
    window: Period,
}

fn default_window() -> Period {
    Period::from_minutes(5)
}

#[derive(Debug)]
pub struct ConcurrentZones {
    params: Params,
}

impl ConcurrentZones {
    pub fn new(params: Params) -> Result<Self, String> {
        if params.window <= Period::ZERO {
            return Err("window must be longer than 0s".into());
        }
        Ok(ConcurrentZones { params })
    }
}

impl Detector for ConcurrentZones {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        if observation.event.kind != Kind::Access || observation.zone == ZoneId::UNKNOWN {
            return;
        }
        let Some((last_zone, last_at)) = before.last_zone() else {
            return;
        };
        if last_zone == observation.zone {
            return;
        }
        let gap = observation.event.ts.since(last_at);
        let gap = Period::from_micros(gap.micros().abs());
        if gap > self.params.window {
            return;
        }
        let declared_both = before.allowed_from().is_declared()
            && before.allowed.contains(last_zone)
            && before.allowed.contains(observation.zone);
        if declared_both {
            return;
        }
        let zones = &context.config.zones;
        out.push(|| Finding {
            analysis: None,
            summary: format!(
                "used from zone {} ({}) {}s after a use from zone {}; window {}",
                zones.name(observation.zone),
                address(observation),
                gap.as_secs_f64().round(),
                zones.name(last_zone),
                self.params.window
            ),
            expected: json!({
                "one_zone_within": self.params.window.to_string(),
                "previous_zone": zones.name(last_zone),
                "previous_time": last_at,
            }),
            observed: observed_access(observation, context),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, issue, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_on_two_zones_within_the_window() {
        let bench = Bench::new(DetectorKind::ConcurrentZones, "window = \"5m\"");
        assert!(bench
            .feed(access(at(0, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        let findings = bench.feed(access(at(2, 0), "k", "203.0.113.9", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .contains("120s after a use from zone prod"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn quiet_when_far_apart_or_same_zone() {
        let bench = Bench::new(DetectorKind::ConcurrentZones, "");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        assert!(bench
            .feed(access(at(1, 0), "k", "10.0.2.5", "a"))
            .is_empty());
        assert!(bench
            .feed(access(at(30, 0), "k", "203.0.113.9", "a"))
            .is_empty());
    }

    #[test]
    fn declared_multi_zone_credentials_may_alternate() {
        let bench = Bench::new(DetectorKind::ConcurrentZones, "");
        bench.feed(issue(at(0, 0), "k", &["prod", "ci"]));
        bench.feed(access(at(1, 0), "k", "10.0.1.5", "a"));
        assert!(bench
            .feed(access(at(1, 30), "k", "10.2.1.5", "a"))
            .is_empty());
        assert_eq!(
            bench.feed(access(at(2, 0), "k", "203.0.113.9", "a")).len(),
            1
        );
    }

    #[test]
    fn rejects_an_empty_window() {
        assert!(DetectorKind::ConcurrentZones
            .build(toml::from_str("window = \"0\"").unwrap())
            .is_err());
    }
}
