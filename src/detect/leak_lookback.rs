//! leak_lookback: when a leak report arrives, the uses from new networks or zones in the hours
//! before it.
//!
//! A secret is usually found some time after it was exposed; an attacker who found it first
//! has already used it by the time the report arrives, and `use_after_leak` only sees what
//! comes after. The state keeps each credential's recent *novel* uses (a network or zone its
//! armed baseline did not know); on the report, those within `window` before it are evidence
//! that the leak was already exploited. Older history is in the archive (see
//! examples/queries/before-leak.sql).

use serde::Deserialize;
use serde_json::json;

use super::{Analysis, Anomaly, Context, Detector, Finding, Findings, Observed};
use crate::event::Kind;
use crate::state::{CredentialState, Observation};
use crate::time::Period;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// How far before the report to look.
    #[serde(default = "default_window")]
    pub window: Period,
}

fn default_window() -> Period {
    Period::from_minutes(24 * 60)
}

#[derive(Debug)]
pub struct LeakLookback {
    params: Params,
}

impl LeakLookback {
    pub fn new(params: Params) -> Result<Self, String> {
        if params.window <= Period::ZERO {
            return Err("window must be longer than zero".into());
        }
        Ok(LeakLookback { params })
    }
}

impl Detector for LeakLookback {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        let event = observation.event;
        // Only the first report: a second one about the same leak adds nothing.
        if event.kind != Kind::Leak || before.leak().is_some() {
            return;
        }
        let uses = before.novel_uses();
        if uses.is_empty() {
            return;
        }
        let since = event.ts.micros() - self.params.window.micros();
        let recent: Vec<_> = uses
            .iter()
            .filter(|u| u.at.micros() >= since && u.at <= event.ts)
            .collect();
        if recent.is_empty() {
            return;
        }
        let describe = |u: &crate::state::NovelUse| {
            let network = u
                .network
                .map_or_else(|| "no network".to_owned(), |n| n.to_string());
            let zone = context.config.zones.name(u.zone);
            let what = if u.new_zone { "new zone" } else { "zone" };
            format!("{network} ({what} {zone}) at {}", u.at)
        };
        let places: Vec<String> = recent.iter().map(|u| describe(u)).collect();
        let source = event.leak_source.as_deref().unwrap_or("an unnamed source");
        out.push(|| Finding {
            summary: format!(
                "reported leaked by {source}; in the {} before the report it was used from {} new place{}: {}",
                self.params.window,
                recent.len(),
                if recent.len() == 1 { "" } else { "s" },
                places.join("; ")
            ),
            expected: json!({
                "window": self.params.window.to_string(),
                "seen_networks": before.networks().map(|s| s.key.to_string()).collect::<Vec<_>>(),
                "seen_zones": super::zone_list(context, before.seen_zones),
            }),
            observed: json!({
                "leak_source": event.leak_source,
                "leak_url": event.leak_url,
                "reported_at": event.ts,
                "novel_uses": recent.iter().map(|u| json!({
                    "time": u.at,
                    "network": u.network.map(|n| n.to_string()),
                    "zone": context.config.zones.name(u.zone),
                    "new_zone": u.new_zone,
                })).collect::<Vec<_>>(),
            }),
            analysis: Some(Analysis {
                anomaly: Anomaly {
                    observation_parameter: "network".into(),
                    observation_type: "Time Pattern Analysis".into(),
                    observed_pattern: "UNSEEN_BEFORE_LEAK_REPORT".into(),
                    observations: recent
                        .iter()
                        .map(|u| Observed::new(describe(u), None))
                        .collect(),
                },
                baseline: Anomaly {
                    observation_parameter: "network".into(),
                    observation_type: "Frequency Analysis".into(),
                    observed_pattern: "FREQUENT".into(),
                    observations: before
                        .networks()
                        .map(|s| Observed::new(s.key.to_string(), Some(u64::from(s.count))))
                        .collect(),
                },
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::testkit::{access, at, lifecycle, Bench};
    use crate::detect::DetectorKind;
    use crate::event::Kind;

    fn leak(minute: i64) -> crate::event::Event {
        let mut event = lifecycle(at(minute, 0), Kind::Leak, "k");
        event.leak_source = Some("trufflehog".into());
        event
    }

    #[test]
    fn a_report_names_the_new_places_used_within_the_window_before_it() {
        let bench = Bench::new(DetectorKind::LeakLookback, "window = \"2h\"");
        for m in 0..12 {
            bench.feed(access(at(m, 0), "k", "10.0.1.5", "a"));
        }
        bench.feed(access(at(30, 0), "k", "10.0.7.5", "a"));
        bench.feed(access(at(200, 0), "k", "203.0.113.9", "a"));
        bench.feed(access(at(210, 0), "k", "10.0.1.5", "a"));
        let findings = bench.feed(leak(240));
        assert_eq!(findings.len(), 1);
        let summary = &findings[0].summary;
        assert!(
            summary.contains("in the 2h before the report it was used from 1 new place: 203.0.113.0/24 (new zone internet) at 2026-03-01T03:20:00Z"),
            "{summary}"
        );
        assert!(bench.feed(leak(250)).is_empty(), "only the first report");
    }

    #[test]
    fn quiet_without_novel_uses_or_while_learning() {
        let bench = Bench::new(DetectorKind::LeakLookback, "");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        bench.feed(access(at(1, 0), "k", "203.0.113.9", "a"));
        assert!(
            bench.feed(leak(5)).is_empty(),
            "still learning: nothing was novel"
        );
        let quiet = Bench::new(DetectorKind::LeakLookback, "");
        for m in 0..20 {
            quiet.feed(access(at(m, 0), "k", "10.0.1.5", "a"));
        }
        assert!(quiet.feed(leak(30)).is_empty());
    }
}
