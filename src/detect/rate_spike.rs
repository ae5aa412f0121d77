//! rate_spike: calls in one minute far above the credential's usual rate.
//!
//! The baseline is an EWMA of active minutes' call counts with its variance (see
//! `state::rate`). A minute is a spike when its count exceeds all of `min_calls`,
//! `mean + sigmas * std_dev` and `min_ratio * mean`; the detector fires once, on the call that
//! crosses the threshold, so a spike is one finding however long the minute runs.

use serde::Deserialize;
use serde_json::json;

use super::{observed_access, Analysis, Anomaly, Context, Detector, Finding, Findings, Observed};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_sigmas")]
    sigmas: f64,
    /// Never fire below this many calls in a minute.
    #[serde(default = "default_min_calls")]
    min_calls: u32,
    /// Never fire below this multiple of the mean.
    #[serde(default = "default_min_ratio")]
    min_ratio: f64,
    /// Active minutes of history required before the baseline is trusted.
    #[serde(default = "default_min_minutes")]
    min_minutes: u32,
}

fn default_sigmas() -> f64 {
    6.0
}
fn default_min_calls() -> u32 {
    60
}
fn default_min_ratio() -> f64 {
    3.0
}
fn default_min_minutes() -> u32 {
    10
}

#[derive(Debug)]
pub struct RateSpike {
    params: Params,
}

impl RateSpike {
    pub fn new(params: Params) -> Result<Self, String> {
        if !(params.sigmas.is_finite() && params.sigmas >= 0.0) {
            return Err("sigmas must be a non-negative number".into());
        }
        if !(params.min_ratio.is_finite() && params.min_ratio >= 1.0) {
            return Err("min_ratio must be at least 1".into());
        }
        Ok(RateSpike { params })
    }

    fn threshold(&self, mean: f64, std_dev: f64) -> f64 {
        (self.params.min_calls as f64)
            .max(mean + self.params.sigmas * std_dev)
            .max(self.params.min_ratio * mean)
    }
}

impl Detector for RateSpike {
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
        let view = before.rate.view_at(
            observation.event.ts.minute(),
            context.config.bounds.rate_alpha,
        );
        if view.minutes < self.params.min_minutes {
            return;
        }
        let count = view.count as f64;
        // The threshold is never below `min_calls`: a count at most that (nearly every call)
        // is decided without the square root.
        if count <= self.params.min_calls as f64 {
            return;
        }
        let std_dev = view.std_dev();
        let threshold = self.threshold(view.mean, std_dev);
        if !(count > threshold && count - 1.0 <= threshold) {
            return;
        }
        out.push(|| Finding {
            analysis: Some(Analysis {
                anomaly: Anomaly {
                    observation_parameter: "calls_per_minute".into(),
                    observation_type: "Volume Analysis".into(),
                    observed_pattern: "SURGE".into(),
                    observations: vec![Observed::new(view.count.to_string(), Some(u64::from(view.count)))],
                },
                baseline: Anomaly {
                    observation_parameter: "calls_per_minute".into(),
                    observation_type: "Volume Analysis".into(),
                    observed_pattern: "NORMAL_VOLUME".into(),
                    observations: vec![Observed::new(
                        format!("{:.1} ± {:.1} per active minute over {} minutes", view.mean, std_dev, view.minutes),
                        Some(u64::from(view.minutes)),
                    )],
                },
            }),
            summary: format!(
                "{} calls within one minute; usual {:.1} ± {:.1} per active minute (threshold {:.0})",
                view.count, view.mean, std_dev, threshold
            ),
            expected: json!({
                "mean_per_minute": round2(view.mean),
                "std_dev": round2(std_dev),
                "baseline_minutes": view.minutes,
                "threshold": round2(threshold),
            }),
            observed: {
                let mut observed = observed_access(observation, context);
                observed["calls_this_minute"] = json!(view.count);
                observed
            },
        });
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, Bench};
    use crate::detect::DetectorKind;

    fn steady(bench: &Bench, minutes: i64, per_minute: i64) {
        for m in 0..minutes {
            for s in 0..per_minute {
                assert!(bench
                    .feed(access(at(m, s % 60), "k", "10.0.1.5", "a"))
                    .is_empty());
            }
        }
    }

    #[test]
    fn fires_once_when_a_minute_crosses_the_threshold() {
        let bench = Bench::new(DetectorKind::RateSpike, "min_calls = 20");
        steady(&bench, 30, 5);
        let mut fired = Vec::new();
        for i in 0..100 {
            let findings = bench.feed(access(at(31, i % 60), "k", "10.0.1.5", "a"));
            if !findings.is_empty() {
                fired.push((i, findings));
            }
        }
        assert_eq!(fired.len(), 1, "one finding per spiking minute");
        let (index, findings) = &fired[0];
        assert_eq!(*index, 20, "the 21st call crosses max(20, 5 + 6*0, 3*5)");
        assert!(
            findings[0]
                .summary
                .starts_with("21 calls within one minute"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn quiet_without_enough_history_or_below_min_calls() {
        let bench = Bench::new(DetectorKind::RateSpike, "");
        steady(&bench, 5, 2);
        for i in 0..100 {
            assert!(
                bench
                    .feed(access(at(6, i % 60), "k", "10.0.1.5", "a"))
                    .is_empty(),
                "only 5 minutes of history"
            );
        }
        let bench = Bench::new(DetectorKind::RateSpike, "");
        steady(&bench, 20, 2);
        for i in 0..50 {
            assert!(
                bench
                    .feed(access(at(21, i % 60), "k", "10.0.1.5", "a"))
                    .is_empty(),
                "below min_calls 60"
            );
        }
    }

    #[test]
    fn rejects_nonsense_parameters() {
        assert!(DetectorKind::RateSpike
            .build(toml::from_str("min_ratio = 0.5").unwrap())
            .is_err());
        assert!(DetectorKind::RateSpike
            .build(toml::from_str("sigmas = -1.0").unwrap())
            .is_err());
        assert!(DetectorKind::RateSpike
            .build(toml::from_str("sigma = 3.0").unwrap())
            .is_err());
    }
}
