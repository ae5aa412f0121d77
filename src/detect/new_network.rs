//! new_network: a credential with an established baseline called from a network (/24 or /48)
//! it has not used before.
//!
//! Armed only after the learning period, so a credential's first networks are learned rather
//! than flagged. Networks are remembered up to `max_networks` per credential, least recently
//! seen forgotten first.

use serde::Deserialize;
use serde_json::json;

use super::{address, novelty, observed_access, Analysis, Context, Detector, Finding, Findings};
use crate::state::{CredentialState, Observation};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

#[derive(Debug)]
pub struct NewNetwork;

impl NewNetwork {
    pub fn new(_params: Params) -> Result<Self, String> {
        Ok(NewNetwork)
    }
}

impl Detector for NewNetwork {
    #[inline(always)]
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    ) {
        let Some(network) = observation.network else {
            return;
        };
        let Some(novelty) = novelty(&network, before.networks(), observation, before, context)
        else {
            return;
        };
        out.push(|| {
            let known = novelty.named(|key| key.to_string());
            let names: Vec<&str> = known.iter().map(|(name, _)| name.as_str()).collect();
            let summary = format!(
                "called from new network {network} ({}, zone {}); known networks [{}]{}",
                address(observation),
                context.config.zones.name(observation.zone),
                names.join(", "),
                novelty.notes(before, context)
            );
            let expected = json!({ "seen_networks": names, "baseline_events": before.accesses });
            Finding {
                analysis: Some(Analysis::unseen("network", network.to_string(), known)),
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
    fn fires_on_a_new_network_after_learning() {
        let bench = Bench::new(DetectorKind::NewNetwork, "");
        for m in 0..12 {
            assert!(bench
                .feed(access(at(m, 0), "k", "10.0.1.5", "a"))
                .is_empty());
        }
        assert!(
            bench
                .feed(access(at(13, 0), "k", "10.0.1.99", "a"))
                .is_empty(),
            "same /24"
        );
        let findings = bench.feed(access(at(14, 0), "k", "10.0.7.5", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].summary.contains("new network 10.0.7.0/24"),
            "{}",
            findings[0].summary
        );
        assert!(
            bench
                .feed(access(at(15, 0), "k", "10.0.7.6", "a"))
                .is_empty(),
            "now known"
        );
    }

    #[test]
    fn a_network_unseen_for_longer_than_forget_after_is_new_again() {
        let mut bench = Bench::new(DetectorKind::NewNetwork, "");
        bench.config.bounds.forget_after = crate::time::Period::from_minutes(60);
        for m in 0..12 {
            bench.feed(access(at(m, 0), "k", "10.0.1.5", "a"));
        }
        // 10.0.2.0/24 is learned at minute 12, then unused while 10.0.1.0/24 stays busy.
        bench.feed(access(at(12, 0), "k", "10.0.2.5", "a"));
        for m in 13..80 {
            bench.feed(access(at(m, 0), "k", "10.0.1.5", "a"));
        }
        assert!(
            bench
                .feed(access(at(72, 0), "k", "10.0.2.6", "a"))
                .is_empty(),
            "60 minutes after its last use it is still remembered"
        );
        let findings = bench.feed(access(at(133, 0), "k", "10.0.2.7", "a"));
        assert_eq!(findings.len(), 1, "61 minutes unseen: forgotten");
        let summary = &findings[0].summary;
        assert!(summary.contains("new network 10.0.2.0/24"), "{summary}");
        assert!(
            summary.contains(
                "known networks [10.0.1.0/24]; last seen 2026-03-01T01:12:00Z, forgotten after 1h"
            ),
            "{summary}"
        );
        assert!(bench
            .feed(access(at(134, 0), "k", "10.0.1.5", "a"))
            .is_empty());
    }

    #[test]
    fn a_network_older_than_an_entry_tells_is_forgotten_even_for_a_late_event() {
        let mut bench = Bench::new(DetectorKind::NewNetwork, "");
        bench.config.bounds.forget_after = crate::time::Period::from_minutes(45 * 24 * 60);
        for m in 0..12 {
            bench.feed(access(at(m, 0), "k", "10.0.1.5", "a"));
        }
        bench.feed(access(at(12, 0), "k", "10.0.2.5", "a"));
        // 60 days later 10.0.2.0/24's entry is as old as an entry gets (45.5 days) ...
        let later = 60 * 24 * 60;
        bench.feed(access(at(later, 0), "k", "10.0.1.5", "a"));
        // ... so an event 20 days late, 40 days after its true last use, does not find it
        // fresh, though the oldest time the entry can read is only 25.5 days before it.
        let late = at(later - 20 * 24 * 60, 0);
        let findings = bench.feed(access(late, "k", "10.0.2.6", "a"));
        assert_eq!(findings.len(), 1, "aged out: forgotten");
        let summary = &findings[0].summary;
        assert!(
            summary.contains("; last seen before 2026-03-15T11:45:00Z, forgotten after 45d"),
            "{summary}"
        );
    }

    fn issue_to(minute: i64, credential: &str, owner: &str) -> crate::event::Event {
        let mut event =
            crate::detect::testkit::lifecycle(at(minute, 0), crate::event::Kind::Issue, credential);
        event.owner = Some(owner.to_owned());
        event
    }

    #[test]
    fn a_new_session_inherits_its_roles_baseline() {
        let role = "arn:aws:sts::1:assumed-role/deploy";
        let bench = Bench::new(DetectorKind::NewNetwork, "");
        bench.feed(issue_to(0, "ASIAOLD", &format!("{role}/session-1")));
        for m in 0..12 {
            let ip = if m % 2 == 0 { "10.0.1.5" } else { "10.0.2.5" };
            bench.feed(access(at(m, 0), "ASIAOLD", ip, "a"));
        }
        // The next session of the role: its own first uses come from one of the role's two
        // networks, then from the other. Learned from scratch, the other would look new once
        // the short learning period is over; inherited, it is known from the start.
        bench.feed(issue_to(20, "ASIANEW", &format!("{role}/session-2")));
        for m in 21..33 {
            assert!(bench
                .feed(access(at(m, 0), "ASIANEW", "10.0.1.6", "a"))
                .is_empty());
        }
        assert!(
            bench
                .feed(access(at(33, 0), "ASIANEW", "10.0.2.6", "a"))
                .is_empty(),
            "the role's other network is inherited, not new"
        );
        let findings = bench.feed(access(at(34, 0), "ASIANEW", "203.0.113.5", "a"));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0]
                .summary
                .ends_with("; baseline inherited from arn:aws:sts::1:assumed-role/deploy"),
            "{}",
            findings[0].summary
        );

        // A credential of another owner learns alone, and so does the false alert.
        bench.feed(issue_to(
            20,
            "ASIAOTHER",
            "arn:aws:sts::1:assumed-role/other/s",
        ));
        for m in 21..33 {
            bench.feed(access(at(m, 0), "ASIAOTHER", "10.0.1.6", "a"));
        }
        assert_eq!(
            bench
                .feed(access(at(33, 0), "ASIAOTHER", "10.0.2.6", "a"))
                .len(),
            1
        );
    }

    #[test]
    fn an_inherited_baseline_arms_a_new_key_at_its_first_use() {
        let bench = Bench::new(DetectorKind::NewNetwork, "");
        bench.feed(issue_to(0, "AKIAOLD", "bob"));
        for m in 0..12 {
            bench.feed(access(at(m, 0), "AKIAOLD", "10.0.1.5", "a"));
        }
        bench.feed(issue_to(20, "AKIANEW", "bob"));
        assert_eq!(
            bench
                .feed(access(at(21, 0), "AKIANEW", "203.0.113.5", "a"))
                .len(),
            1,
            "bob's rotated key used first from a network bob never used"
        );
    }

    #[test]
    fn quiet_while_learning() {
        let bench = Bench::new(DetectorKind::NewNetwork, "");
        bench.feed(access(at(0, 0), "k", "10.0.1.5", "a"));
        assert!(bench
            .feed(access(at(1, 0), "k", "10.0.9.5", "a"))
            .is_empty());
        assert!(bench
            .feed(access(at(2, 0), "k", "10.0.8.5", "a"))
            .is_empty());
    }
}
