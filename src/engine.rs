//! Engine: the detection core, wiring zones → state → detect → alerts for one event at a time.
//!
//! Deterministic by construction: time comes from events, rules run in id order, suppression
//! windows close in event time, and nothing reads a clock or a random source. Feeding the same
//! events yields the same alerts. Sources (files, stdin, later Kafka) push decoded events in;
//! sinks take the alerts out.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::alerts::{Alert, Suppressor};
use crate::config::Config;
use crate::detect::{Context, Finding};
use crate::event::{Event, Kind};
use crate::rules::RuleSet;
use crate::state::StateStore;

/// Counters for one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Alerts emitted (new findings, not roll-ups).
    pub alerts: u64,
    /// Findings folded into an earlier alert by suppression.
    pub suppressed: u64,
}

/// What the engine has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub by_kind: [u64; 4],
    /// Access events older than their credential's current rate minute.
    pub late_events: u64,
    /// Names in `allowed_zones` of issue events that match no configured zone.
    pub unknown_zone_names: u64,
    pub rules: BTreeMap<String, RuleCounts>,
}

/// The detection core.
pub struct Engine {
    config: Arc<Config>,
    rules: RuleSet,
    store: StateStore,
    suppressor: Suppressor,
    stats: EngineStats,
    scratch: Vec<Finding>,
    fired: Vec<(usize, Finding)>,
    created: Vec<Alert>,
}

impl Engine {
    pub fn new(config: impl Into<Arc<Config>>, rules: RuleSet) -> Engine {
        let stats = EngineStats {
            rules: rules.rules().iter().map(|r| (r.id.clone(), RuleCounts::default())).collect(),
            ..EngineStats::default()
        };
        Engine {
            config: config.into(),
            rules,
            store: StateStore::new(),
            suppressor: Suppressor::new(),
            stats,
            scratch: Vec::new(),
            fired: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Runs one event through every stage; alerts (new ones and closed roll-ups) are appended
    /// to `out` in a deterministic order.
    pub fn process(&mut self, event: &Event, out: &mut Vec<Alert>) {
        self.stats.events += 1;
        self.stats.by_kind[event.kind.index()] += 1;
        self.suppressor.advance(event.ts, out);

        let config = &*self.config;
        let observation = self.store.locate(event, config);
        if event.kind == Kind::Issue && observation.declared_zones.len() < distinct(&event.allowed_zones) {
            self.stats.unknown_zone_names += 1;
        }
        let context = Context {
            config,
            endpoints: &self.store.endpoints,
            principals: &self.store.principals,
        };
        let rules = self.rules.rules();
        let scratch = &mut self.scratch;
        let fired = &mut self.fired;
        let mut late = false;
        fired.clear();
        let owner = self.store.with_credential(
            &event.credential,
            |before| {
                for (index, rule) in rules.iter().enumerate() {
                    if !rule.enabled || !rule.scope.matches(&observation, config) {
                        continue;
                    }
                    scratch.clear();
                    rule.detector.evaluate(&observation, before, &context, scratch);
                    fired.extend(scratch.drain(..).map(|finding| (index, finding)));
                }
                before.owner.or(observation.owner).or(observation.principal)
            },
            |state| late = !state.apply(&observation, config),
        );
        if late && event.kind == Kind::Access {
            self.stats.late_events += 1;
        }
        if self.fired.is_empty() {
            return;
        }
        let owner = owner.map(|symbol| self.store.principals.name(symbol).to_string());
        for (index, finding) in self.fired.drain(..) {
            let rule = &rules[index];
            let alert = Alert::new(rule, event, owner.clone(), finding);
            self.created.clear();
            self.suppressor.offer(alert, event.ts, rule.suppress, &mut self.created);
            let counts = self.stats.rules.entry(rule.id.clone()).or_default();
            let new = self.created.iter().filter(|a| a.rule == rule.id && a.count == 1).count();
            counts.alerts += new as u64;
            if new == 0 {
                counts.suppressed += 1;
            }
            out.append(&mut self.created);
        }
    }

    /// End of input: closes every suppression window.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.suppressor.finish(out);
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn state(&self) -> &StateStore {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

fn distinct(names: &[String]) -> usize {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted.len()
}
