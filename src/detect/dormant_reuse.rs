//! dormant_reuse: a credential unused for a long time suddenly used again.
//!
//! Forgotten keys are the ones that leak unnoticed; a key idle for a month waking up from a
//! new place is a classic sign of misuse.

use serde::Deserialize;
use serde_json::json;

use super::{
    address, observed_access, Analysis, Anomaly, Context, Detector, Finding, Findings, Observed,
};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Idle at least this long to count as dormant.
    #[serde(default = "default_idle")]
    idle: Period,
    /// Uses seen before the pause, so a brand-new credential's second use is not "reuse".
    #[serde(default = "default_min_history")]
    min_history: u32,
}

fn default_idle() -> Period {
    Period::from_minutes(30 * 24 * 60)
}

fn default_min_history() -> u32 {
    1
}

#[derive(Debug)]
pub struct DormantReuse {
    params: Params,
}

impl DormantReuse {
    pub fn new(params: Params) -> Result<Self, String> {
        if params.idle <= Period::ZERO {
            return Err("idle must be longer than 0s".into());
        }
        Ok(DormantReuse { params })
    }
}

impl Detector for DormantReuse {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        if observation.event.kind != Kind::Access || before.accesses < self.params.min_history {
            return;
        }
        let Some(last) = before.last_seen else {
            return;
        };
        let idle = observation.event.ts.since(last);
        if idle < self.params.idle {
            return;
        }
        out.push(|| Finding {
            analysis: Some(Analysis {
                anomaly: Anomaly {
                    observation_parameter: "idle_time".into(),
                    observation_type: "Time Pattern Analysis".into(),
                    observed_pattern: "UNUSUAL_TIME".into(),
                    observations: vec![Observed::new(
                        format!("{:.1} days idle", idle.as_secs_f64() / 86_400.0),
                        None,
                    )],
                },
                baseline: Anomaly {
                    observation_parameter: "idle_time".into(),
                    observation_type: "Time Pattern Analysis".into(),
                    observed_pattern: "ACTIVE".into(),
                    observations: vec![Observed::new(
                        format!("last use {last}"),
                        Some(u64::from(before.accesses)),
                    )],
                },
            }),
            summary: format!(
                "used again after {:.1} days idle, from zone {} ({}); last use {last}",
                idle.as_secs_f64() / 86_400.0,
                context.config.zones.name(observation.zone),
                address(observation)
            ),
            expected: json!({ "idle_less_than": self.params.idle.to_string(), "last_seen": last }),
            observed: {
                let mut observed = observed_access(observation, context);
                observed["idle_days"] = json!((idle.as_secs_f64() / 864.0).round() / 100.0);
                observed
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, Bench};
    use crate::detect::DetectorKind;

    #[test]
    fn fires_after_the_idle_period() {
        let bench = Bench::new(DetectorKind::DormantReuse, "idle = \"7d\"");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        let findings = bench.feed(access(at(10 * 24 * 60, 0), "k", "203.0.113.5", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .starts_with("used again after 10.0 days idle"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn quiet_for_active_and_new_credentials() {
        let bench = Bench::new(DetectorKind::DormantReuse, "idle = \"7d\"");
        assert!(bench
            .feed(access(at(0, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        assert!(bench
            .feed(access(at(6 * 24 * 60, 0), "k", "10.0.1.5", "a"))
            .is_empty());
        let strict = Bench::new(DetectorKind::DormantReuse, "idle = \"7d\"\nmin_history = 2");
        strict.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        assert!(strict
            .feed(access(at(8 * 24 * 60, 0), "k", "10.0.1.5", "a"))
            .is_empty());
    }
}
