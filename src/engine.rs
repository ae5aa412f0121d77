//! Engine: the detection core, wiring zones → state → detect → alerts for one event at a time.
//!
//! Deterministic by construction: time comes from events, rules run in id order, suppression
//! windows close in event time, and nothing reads a clock or a random source. Feeding the same
//! events yields the same alerts. Sources (files, stdin, later Kafka) push decoded events in;
//! sinks take the alerts out.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, OpenWindow, Suppressor, SuppressorSnapshot};
use crate::checkpoint::CheckpointError;
use crate::config::Config;
use crate::detect::{access_place, AnyDetector, Context, Detector, Finding, Findings};
use crate::event::{Event, Kind};
use crate::rules::{ExceptionSet, Rule, RuleSet};
use crate::state::{Absorbed, Home, NameCaches, Observation, StateStore, StoreSnapshot};
use crate::time::{Period, Timestamp};
use crate::zones::{Network, ZoneId};

/// Counters for one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    /// Alerts emitted (new findings, not roll-ups).
    pub alerts: u64,
    /// Findings folded into an earlier alert by suppression.
    pub suppressed: u64,
    /// Findings an exception covered: no alert.
    pub excepted: u64,
}

/// What one exception did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExceptionCounts {
    /// Findings it turned into no alert.
    pub suppressed: u64,
    /// The event time at which it was seen to have expired (it no longer applies).
    pub expired_at: Option<Timestamp>,
}

/// What the engine has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub events: u64,
    pub by_kind: [u64; 4],
    /// Events by input format (index of `Format::ALL`) and kind.
    pub by_format: [[u64; 4]; 7],
    /// Access events older than their credential's current rate minute.
    pub late_events: u64,
    /// Events older than the watermark (newest event time minus the allowed lateness):
    /// applied to state all the same, but suppression windows may already have closed.
    pub out_of_order: u64,
    /// Names in `allowed_zones` of issue events that match no configured zone.
    pub unknown_zone_names: u64,
    /// Leak reports that named a secret's hash and were matched to a credential id.
    pub leaks_matched_by_hash: u64,
    /// Credentials evicted past `[state] max_credentials` (longest idle first), and of those
    /// leaked or revoked ones.
    pub evicted: u64,
    pub evicted_precious: u64,
    /// Suppression windows closed early past `[state] max_suppression_windows`.
    pub windows_closed_early: u64,
    /// Interned names dropped by compaction (see [`crate::state::next_compaction`]): what
    /// this process did, not carried by checkpoints (compaction changes no output).
    #[serde(skip)]
    pub names_dropped: u64,
    pub rules: BTreeMap<String, RuleCounts>,
    /// Per exception id, in id order.
    pub exceptions: BTreeMap<String, ExceptionCounts>,
}

/// Everything the engine's output depends on besides its configuration and rules: what a
/// checkpoint keeps so that a restart continues exactly where the engine was.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// The configured zones, in id order: records hold zone ids, which only mean the same
    /// under the same zones.
    pub zones: Vec<String>,
    pub store: StoreSnapshot,
    pub suppressor: SuppressorSnapshot,
    pub stats: EngineStats,
    pub newest: Option<Timestamp>,
}

/// One input partition's share of the engine's state (see [`crate::state::Home`]): what a
/// per-partition checkpoint keeps, so that whichever instance takes the partition over
/// continues with its credentials' baselines and open suppression windows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineShare {
    /// The configured zones, in id order (records hold zone ids).
    pub zones: Vec<String>,
    pub store: StoreSnapshot,
    /// Open suppression windows of the share's credentials (and of credentials no longer
    /// tracked, which every share carries).
    pub windows: Vec<OpenWindow>,
    /// The newest event time the writing engine had seen, over all its partitions: the
    /// event-time clock an absorbing engine must not fall behind.
    pub newest: Option<Timestamp>,
}

/// An enabled rule as the per-event loop needs it, kept apart from its [`Rule`]: a `Rule` is
/// hundreds of bytes, so the loop read every rule's flags and detector from a cache line of its
/// own.
struct Running {
    /// The rule's place in the rule set.
    index: usize,
    detector: Arc<AnyDetector>,
    /// Whether its scope must be checked.
    scoped: bool,
}

/// The detection core.
pub struct Engine {
    config: Arc<Config>,
    rules: RuleSet,
    /// The enabled rules, in the rule set's (id) order.
    running: Vec<Running>,
    store: Arc<StateStore>,
    suppressor: Suppressor,
    stats: EngineStats,
    /// The event's findings, and the index of the rule behind each.
    fired: Vec<Finding>,
    fired_by: Vec<usize>,
    created: Vec<Alert>,
    /// The latest access's network as text, for suppression's place (kept, not reallocated).
    network: String,
    allowed_lateness: Period,
    newest: Option<Timestamp>,
    /// Where the zones stage placed the latest event.
    placement: (ZoneId, Option<Network>),
    /// The earliest expiry of an exception not yet reported as expired.
    next_expiry: Option<Timestamp>,
    /// Events between checks of `[state] max_credentials` and `max_state_mib`.
    eviction_check_every: u64,
    /// The input partition the events come from now: the home of the records they touch.
    home: Home,
    /// Names the interners may hold before they are compacted next.
    compact_names_at: usize,
    /// The interners' recent names, kept by this engine's thread.
    names: NameCaches,
}

impl Engine {
    pub fn new(config: impl Into<Arc<Config>>, rules: RuleSet) -> Engine {
        let config: Arc<Config> = config.into();
        let suppressor = Suppressor::new().with_limit(config.bounds.max_suppression_windows);
        // The count bound is checked every 5% of it (an event adds at most one record, and a
        // pass evicts down to 95%); the byte bound on every event, which is one atomic load.
        let bounds = &config.bounds;
        let eviction_check_every =
            (bounds.max_credentials as u64 / 20).clamp(1, EVICTION_CHECK_EVENTS);
        let stats = EngineStats {
            rules: rules
                .rules()
                .iter()
                .map(|r| (r.id.clone(), RuleCounts::default()))
                .collect(),
            exceptions: rules
                .exceptions()
                .all()
                .iter()
                .map(|e| (e.id.clone(), ExceptionCounts::default()))
                .collect(),
            ..EngineStats::default()
        };
        let next_expiry = rules.exceptions().all().iter().map(|e| e.expires).min();
        let running = rules
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.enabled)
            .map(|(index, rule)| Running {
                index,
                detector: Arc::clone(&rule.detector),
                scoped: rule.scope.is_scoped(),
            })
            .collect();
        Engine {
            config,
            rules,
            running,
            store: Arc::new(StateStore::new()),
            suppressor,
            stats,
            fired: Vec::new(),
            fired_by: Vec::new(),
            created: Vec::new(),
            network: String::new(),
            allowed_lateness: Period::ZERO,
            newest: None,
            placement: (ZoneId::UNKNOWN, None),
            next_expiry,
            eviction_check_every,
            home: 0,
            compact_names_at: crate::state::next_compaction(0, 0),
            names: NameCaches::default(),
        }
    }

    /// How far event time may run behind the newest event before suppression windows close
    /// (for inputs merged from several partitions; a single ordered stream needs none).
    pub fn with_allowed_lateness(mut self, lateness: Period) -> Engine {
        self.allowed_lateness = lateness;
        self
    }

    /// Runs one event through every stage; alerts (new ones and closed roll-ups) are appended
    /// to `out` in a deterministic order.
    pub fn process(&mut self, event: &Event, out: &mut Vec<Alert>) {
        // A leak reported by its secret's hash reaches the credential the logs tied it to.
        let resolved;
        let matched = (event.kind == Kind::Leak
            && crate::decode::is_secret_hash(&event.credential))
        .then(|| self.store.credential_of_secret(&event.credential))
        .flatten();
        let event = match matched {
            Some(credential) => {
                self.stats.leaks_matched_by_hash += 1;
                resolved = Event {
                    credential,
                    ..event.clone()
                };
                &resolved
            }
            None => event,
        };
        self.stats.events += 1;
        self.stats.by_kind[event.kind.index()] += 1;
        self.stats.by_format[event.format.index()][event.kind.index()] += 1;
        let newest = self.newest.map_or(event.ts, |newest| newest.max(event.ts));
        self.newest = Some(newest);
        let watermark = Timestamp::from_micros(
            newest
                .micros()
                .saturating_sub(self.allowed_lateness.micros()),
        );
        if event.ts < watermark {
            self.stats.out_of_order += 1;
        }
        self.suppressor.advance(watermark, out);
        if self.next_expiry.is_some_and(|expiry| newest >= expiry) {
            self.expire_exceptions(newest);
        }
        if self.stats.events.is_multiple_of(self.eviction_check_every)
            || self.store.approx_bytes() > self.config.bounds.max_state_bytes
        {
            self.evict(event, out);
            if self.store.names_len() > self.compact_names_at {
                self.compact_names();
            }
        }

        let config = &*self.config;
        let observation = self.store.locate_with(event, config, &mut self.names);
        self.placement = (observation.zone, observation.network);
        if event.kind == Kind::Issue
            && observation.declared_zones.len() < distinct(&event.allowed_zones)
        {
            self.stats.unknown_zone_names += 1;
        }
        let context = Context {
            config,
            endpoints: &self.store.endpoints,
            principals: &self.store.principals,
            user_agents: &self.store.user_agents,
        };
        let rules = self.rules.rules();
        let running = &self.running;
        let exceptions = self.rules.exceptions();
        let home = self.home;
        let fired = &mut self.fired;
        let fired_by = &mut self.fired_by;
        let suppressor = &mut self.suppressor;
        let stats = &mut self.stats;
        let network = &mut self.network;
        let mut late = false;
        fired.clear();
        fired_by.clear();
        let owner = self.store.with_credential(
            &event.credential,
            |before| {
                // A finding that would only be counted is counted here and never built, while
                // no finding of this event waits to be offered (`Findings` asks only then: a
                // waiting alert could close a window first); below it would be counted the same.
                // One gate for the event, told which rule asks.
                let asking = Cell::new(0);
                let mut counted = || {
                    let zone = access_place(&observation, &context, network);
                    counted_silently(
                        &rules[asking.get()],
                        &observation,
                        Some((zone, network.as_str())),
                        exceptions,
                        suppressor,
                        stats,
                    )
                };
                let mut findings = Findings::new(fired, &mut counted);
                for rule in running {
                    let index = rule.index;
                    if rule.scoped && !rules[index].scope.matches(&observation, config) {
                        continue;
                    }
                    asking.set(index);
                    rule.detector
                        .evaluate(&observation, before, &context, &mut findings);
                    // Most rules find nothing: the list of whose findings they are then stays.
                    let built = findings.built();
                    if built > fired_by.len() {
                        fired_by.resize(built, index);
                    }
                }
                before.owner.or(observation.owner).or(observation.principal)
            },
            |state| {
                late = !state.apply(&observation, config);
                state.set_home(home);
            },
        );
        if late && event.kind == Kind::Access {
            self.stats.late_events += 1;
        }
        if self.fired.is_empty() {
            return;
        }
        let owner = owner.map(|symbol| self.store.principals.name(symbol).to_string());
        for (index, finding) in self.fired_by.drain(..).zip(self.fired.drain(..)) {
            let rule = &rules[index];
            if counted_silently(
                rule,
                &observation,
                crate::alerts::place_of(&finding.observed),
                exceptions,
                &mut self.suppressor,
                &mut self.stats,
            ) {
                continue;
            }
            let alert = Alert::new(rule, event, owner.clone(), finding);
            self.created.clear();
            self.suppressor
                .offer(alert, event.ts, rule.suppress, &mut self.created);
            let counts = self.stats.rules.entry(rule.id.clone()).or_default();
            let new = self
                .created
                .iter()
                .filter(|a| a.rule == rule.id && a.count == 1)
                .count();
            counts.alerts += new as u64;
            if new == 0 {
                counts.suppressed += 1;
            }
            out.append(&mut self.created);
        }
        self.stats.windows_closed_early += self.suppressor.take_closed_early();
    }

    /// The engine's state as data (see [`EngineSnapshot`]).
    pub fn snapshot(&self) -> Result<EngineSnapshot, CheckpointError> {
        Ok(EngineSnapshot {
            zones: self.config.zones.names().to_vec(),
            store: self.store.snapshot(),
            suppressor: self.suppressor.snapshot().map_err(CheckpointError::Alert)?,
            stats: self.stats.clone(),
            newest: self.newest,
        })
    }

    /// Continues from `snapshot`. Only a new engine (nothing processed) can be restored, and
    /// only under the zones the snapshot was taken with. Counters of rules and exceptions
    /// that no longer exist are dropped; new ones start at zero.
    pub fn restore(&mut self, snapshot: EngineSnapshot) -> Result<(), CheckpointError> {
        if self.stats.events > 0 {
            return Err(CheckpointError::EngineInUse);
        }
        let zones = self.config.zones.names();
        if snapshot.zones != zones {
            return Err(CheckpointError::ZonesChanged {
                then: snapshot.zones,
                now: zones.to_vec(),
            });
        }
        self.store.restore(snapshot.store)?;
        self.suppressor = self
            .suppressor
            .restore(snapshot.suppressor)
            .map_err(CheckpointError::Alert)?;
        let mut stats = snapshot.stats;
        for (id, counts) in self.stats.rules.iter_mut() {
            *counts = stats.rules.remove(id).unwrap_or_default();
        }
        for (id, counts) in self.stats.exceptions.iter_mut() {
            *counts = stats.exceptions.remove(id).unwrap_or_default();
        }
        stats.rules = std::mem::take(&mut self.stats.rules);
        stats.exceptions = std::mem::take(&mut self.stats.exceptions);
        self.stats = stats;
        self.newest = snapshot.newest;
        self.compact_names_at =
            crate::state::next_compaction(self.store.names_len(), self.store.len());
        self.next_expiry = self
            .rules
            .exceptions()
            .all()
            .iter()
            .filter(|e| {
                self.stats
                    .exceptions
                    .get(&e.id)
                    .is_some_and(|counts| counts.expired_at.is_none())
            })
            .map(|e| e.expires)
            .min();
        Ok(())
    }

    /// Drops the interned names nothing uses any more, and sets when to look again.
    fn compact_names(&mut self) {
        let compacted = self.store.compact_names();
        let dropped = compacted.before - compacted.after;
        self.stats.names_dropped += dropped as u64;
        self.compact_names_at = crate::state::next_compaction(compacted.after, self.store.len());
        tracing::info!(
            before = compacted.before,
            kept = compacted.after,
            next = self.compact_names_at,
            "Interned names compacted."
        );
    }

    /// Sets the input partition the next events come from (their records' home).
    pub fn set_home(&mut self, home: Home) {
        self.home = home;
    }

    /// One share per partition in `homes`: the records homed there, the open suppression
    /// windows of their credentials, and what belongs to no partition.
    pub fn shares(&self, homes: &[Home]) -> Result<BTreeMap<Home, EngineShare>, CheckpointError> {
        let store = self.store.shares(homes);
        // Windows of credentials no longer tracked belong to no partition: every share
        // carries them.
        let mut windows = self
            .suppressor
            .windows_by(|credential| self.store.home_of(credential))
            .map_err(CheckpointError::Alert)?;
        let orphans = windows.remove(&None).unwrap_or_default();
        let zones = self.config.zones.names().to_vec();
        Ok(store
            .into_iter()
            .map(|(home, store)| {
                let share = EngineShare {
                    zones: zones.clone(),
                    store,
                    windows: windows
                        .remove(&Some(home))
                        .unwrap_or_default()
                        .into_iter()
                        .chain(orphans.iter().cloned())
                        .collect(),
                    newest: self.newest,
                };
                (home, share)
            })
            .collect())
    }

    /// Merges a partition's share into the engine, its records homed at `home`: baselines
    /// and open windows join what the engine holds, and event time moves up to the share's.
    /// Nothing is merged when the share does not fit (other zones, a name it lacks).
    pub fn absorb(&mut self, share: EngineShare, home: Home) -> Result<Absorbed, CheckpointError> {
        let zones = self.config.zones.names();
        if share.zones != zones {
            return Err(CheckpointError::ZonesChanged {
                then: share.zones,
                now: zones.to_vec(),
            });
        }
        let absorbed = self.store.absorb(share.store, home)?;
        self.suppressor
            .absorb(share.windows)
            .map_err(CheckpointError::Alert)?;
        self.newest = self.newest.max(share.newest);
        self.compact_names_at = self.compact_names_at.max(crate::state::next_compaction(
            self.store.names_len(),
            self.store.len(),
        ));
        Ok(absorbed)
    }

    /// Drops the state of partition `home`, moved to another instance: its records and their
    /// open windows (the new owner rolls those up). Returns how many credentials went.
    pub fn forget(&mut self, home: Home) -> usize {
        let gone = self.store.forget_home(home);
        self.suppressor
            .forget(|credential| gone.contains(credential));
        gone.len()
    }

    /// Evicts the longest-idle credentials past `[state] max_credentials` or
    /// `max_state_mib`; the first time, raises an alert, since from then on a returning
    /// credential is judged as new.
    fn evict(&mut self, event: &Event, out: &mut Vec<Alert>) {
        let bounds = &self.config.bounds;
        let tracked = self.store.len();
        let bytes = self.store.approx_bytes();
        let (evicted, by_bytes) = self
            .store
            .evict_to_fit(bounds.max_credentials, bounds.max_state_bytes);
        if evicted.credentials == 0 {
            return;
        }
        tracing::warn!(
            tracked,
            left = self.store.len(),
            state_bytes = bytes,
            evicted = evicted.credentials,
            precious = evicted.precious,
            "State full; evicted the longest-idle credentials."
        );
        if self.stats.evicted == 0 {
            let bound = if by_bytes {
                format!(
                    "[state] max_state_mib = {} (about {} MiB of records)",
                    bounds.max_state_bytes >> 20,
                    bytes >> 20
                )
            } else {
                format!("[state] max_credentials = {}", bounds.max_credentials)
            };
            let finding = Finding {
                summary: format!(
                    "tracking {tracked} credentials, more than {bound} allows: evicted the {} longest idle; a returning evicted credential is judged as new (raise the bound, or look for a flood of new keys)",
                    evicted.credentials
                ),
                expected: serde_json::json!({
                    "max_credentials": bounds.max_credentials,
                    "max_state_bytes": bounds.max_state_bytes,
                }),
                observed: serde_json::json!({
                    "tracked": tracked,
                    "state_bytes": bytes,
                    "evicted": evicted.credentials,
                    "evicted_leaked_or_revoked": evicted.precious,
                }),
                analysis: None,
            };
            out.push(Alert::about_credwatch(
                "credwatch-state-eviction",
                "credwatch started evicting credential state",
                crate::rules::Severity::High,
                event,
                finding,
            ));
        }
        self.stats.evicted += evicted.credentials as u64;
        self.stats.evicted_precious += evicted.precious as u64;
    }

    /// Marks the exceptions that expired by event time `now`; they already no longer apply
    /// (see [`crate::rules::Exception::covers`]), this reports it once each.
    fn expire_exceptions(&mut self, now: Timestamp) {
        let mut next = None;
        for exception in self.rules.exceptions().all() {
            let Some(counts) = self.stats.exceptions.get_mut(&exception.id) else {
                continue;
            };
            if counts.expired_at.is_some() {
                continue;
            }
            if exception.is_expired(now) {
                counts.expired_at = Some(now);
                tracing::warn!(
                    exception = %exception.id,
                    owner = %exception.owner,
                    expires = %exception.expires,
                    suppressed = counts.suppressed,
                    "exception expired; its findings alert again (renew or delete {})",
                    exception.file
                );
            } else {
                next =
                    Some(next.map_or(exception.expires, |n: Timestamp| n.min(exception.expires)));
            }
        }
        self.next_expiry = next;
    }

    /// The zone and network the zones stage placed the latest processed event in (what the
    /// archive records, so it never places an event differently from detection).
    pub fn placement(&self) -> (ZoneId, Option<Network>) {
        self.placement
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

    /// The state store, for readers on other threads (the HTTP API).
    pub fn shared_state(&self) -> Arc<StateStore> {
        Arc::clone(&self.store)
    }

    /// The configuration, for readers on other threads.
    pub fn shared_config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

/// Counts a finding of `rule` at `place` (its evidence's zone and network) that raises no
/// alert, and says so: one an exception covers, or a repeat inside its rule's open suppression
/// window on the credential, from a place the window knows. False, changing nothing, when the
/// finding needs its alert.
fn counted_silently(
    rule: &Rule,
    observation: &Observation<'_>,
    place: Option<(&str, &str)>,
    exceptions: &ExceptionSet,
    suppressor: &mut Suppressor,
    stats: &mut EngineStats,
) -> bool {
    if let Some(covering) = exceptions.covering(&rule.id, observation) {
        let exception = &exceptions.all()[covering];
        if let Some(counts) = stats.exceptions.get_mut(&exception.id) {
            counts.suppressed += 1;
        }
        if let Some(counts) = stats.rules.get_mut(&rule.id) {
            counts.excepted += 1;
        }
        return true;
    }
    let event = observation.event;
    if suppressor.fold(
        &rule.id,
        &event.credential,
        event.ts,
        event.ts.millis(),
        place,
        rule.suppress,
    ) {
        match stats.rules.get_mut(&rule.id) {
            Some(counts) => counts.suppressed += 1,
            None => stats.rules.entry(rule.id.clone()).or_default().suppressed += 1,
        }
        return true;
    }
    false
}

/// Events between checks of the credential bound, at most: a check costs a walk over the
/// store's shards, and the bound may be overshot by this many new credentials (or by 5% of
/// the bound, when that is fewer: checks are then that much more frequent).
const EVICTION_CHECK_EVENTS: u64 = 4096;

fn distinct(names: &[String]) -> usize {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, NativeDecoder};

    const CONFIG: &str = "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n";

    /// An engine under the config `text`, with the built-in rules.
    fn builtin_engine(text: &str) -> Engine {
        let config = Config::parse("test", text).unwrap();
        let rules = RuleSet::builtin(&config).unwrap();
        Engine::new(config, rules)
    }

    fn run(lines: &[&str]) -> (Vec<Alert>, EngineStats) {
        let mut engine = builtin_engine(CONFIG);
        let mut alerts = Vec::new();
        let mut events = Vec::new();
        for line in lines {
            NativeDecoder::new()
                .decode(line.as_bytes(), &mut events)
                .unwrap();
        }
        for event in &events {
            engine.process(event, &mut alerts);
        }
        engine.finish(&mut alerts);
        (alerts, engine.stats().clone())
    }

    #[test]
    fn disabled_rules_stay_silent_and_scoped_rules_judge_only_their_scope() {
        let config = Config::parse("test", CONFIG).unwrap();
        let rule = |id: &str, extra: &str| crate::rules::RuleSource {
            name: format!("{id}.toml"),
            text: format!(
                "id = \"{id}\"\ntitle = \"t\"\ndescription = \"d\"\n\
                 detector = \"unknown_credential\"\nseverity = \"low\"\n{extra}"
            ),
            dir: None,
        };
        let rules = RuleSet::from_sources(
            vec![
                rule("ghost-all", ""),
                rule("ghost-off", "enabled = false\n"),
                rule("ghost-scoped", "[scope]\ncredentials = [\"AKIAGHOST*\"]\n"),
            ],
            &config,
        )
        .unwrap();
        let mut engine = Engine::new(config, rules);
        let mut alerts = Vec::new();
        let mut events = Vec::new();
        for line in [
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"AKIAGHOST1"}"#,
            r#"{"ts":"2026-03-01T00:02:00Z","kind":"access","credential":"AKIAOTHER1"}"#,
        ] {
            NativeDecoder::new()
                .decode(line.as_bytes(), &mut events)
                .unwrap();
        }
        for event in &events {
            engine.process(event, &mut alerts);
        }
        let fired: Vec<(&str, &str)> = alerts
            .iter()
            .map(|a| (a.rule.as_str(), a.resources[0].uid.as_str()))
            .collect();
        assert_eq!(
            fired,
            [
                ("ghost-all", "AKIAGHOST1"),
                ("ghost-scoped", "AKIAGHOST1"),
                ("ghost-all", "AKIAOTHER1"),
            ]
        );
        assert_eq!(engine.stats().rules["ghost-off"], RuleCounts::default());
    }

    #[test]
    fn one_event_can_raise_alerts_from_several_rules_in_rule_order() {
        let (alerts, stats) = run(&[
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"k","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"leak","credential":"k"}"#,
            r#"{"ts":"2026-03-01T00:02:00Z","kind":"access","credential":"k","source_ip":"203.0.113.1"}"#,
        ]);
        let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(rules, vec!["use-after-leak", "zone-violation"]);
        assert_eq!(alerts[0].severity_id, 5);
        assert_eq!(alerts[0].class_uid, 2004);
        assert_eq!(alerts[1].resources[0].uid, "k");
        assert_eq!(stats.by_kind, [1, 1, 0, 1]);
        assert_eq!(stats.rules["zone-violation"].alerts, 1);
    }

    #[test]
    fn repeats_in_a_window_are_counted_and_a_repeat_from_a_new_network_escalates() {
        let (alerts, stats) = run(&[
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"k","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"k","source_ip":"10.0.0.1"}"#,
            r#"{"ts":"2026-03-01T00:02:00Z","kind":"revoke","credential":"k"}"#,
            r#"{"ts":"2026-03-01T00:03:00Z","kind":"access","credential":"k","source_ip":"10.0.0.1"}"#,
            r#"{"ts":"2026-03-01T00:04:00Z","kind":"access","credential":"k","source_ip":"10.0.0.1"}"#,
            r#"{"ts":"2026-03-01T00:05:00Z","kind":"access","credential":"k","source_ip":"10.0.0.2"}"#,
            r#"{"ts":"2026-03-01T00:06:00Z","kind":"access","credential":"k","source_ip":"10.0.9.1"}"#,
            r#"{"ts":"2026-03-01T00:07:00Z","kind":"access","credential":"k","source_ip":"10.0.9.1"}"#,
            r#"{"ts":"2026-03-01T00:08:00Z","kind":"access","credential":"k","source_ip":"10.0.0.3"}"#,
        ]);
        let revoked: Vec<(String, u32)> = alerts
            .iter()
            .filter(|a| a.rule == "use-after-revoke")
            .map(|a| (a.evidence.observed["network"].to_string(), a.count))
            .collect();
        // The first use after the revocation, the escalation from 10.0.9.0/24, and at the end
        // the window's roll-up: six findings, of which four were only counted.
        assert_eq!(
            revoked,
            [
                ("\"10.0.0.0/24\"".to_owned(), 1),
                ("\"10.0.9.0/24\"".to_owned(), 1),
                ("\"10.0.0.0/24\"".to_owned(), 5),
            ]
        );
        assert_eq!(stats.rules["use-after-revoke"].alerts, 2);
        assert_eq!(stats.rules["use-after-revoke"].suppressed, 4);
    }

    #[test]
    fn counts_unknown_zone_names_and_late_events() {
        let (_, stats) = run(&[
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"k","allowed_zones":["prod","nowhere"]}"#,
            r#"{"ts":"2026-03-01T00:05:00Z","kind":"access","credential":"k","source_ip":"10.0.0.1"}"#,
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"k","source_ip":"10.0.0.1"}"#,
        ]);
        assert_eq!(stats.unknown_zone_names, 1);
        assert_eq!(stats.late_events, 1);
    }

    #[test]
    fn an_exception_turns_findings_into_counts_until_it_expires() {
        let config = Config::parse("test", CONFIG).unwrap();
        let exceptions = crate::rules::ExceptionSet::parse(
            &[(
                "bot.toml".to_owned(),
                "[[exceptions]]\nid = \"bot\"\nowner = \"platform\"\nreason = \"deploys from outside\"\nexpires = \"2026-03-01T00:10:00Z\"\nrules = [\"zone-violation\"]\ncredentials = [\"k\"]\n".to_owned(),
            )],
            &config,
            &RuleSet::builtin(&config).unwrap().ids(),
        )
        .unwrap();
        let rules = RuleSet::builtin(&config)
            .unwrap()
            .with_exceptions(exceptions);
        let mut engine = Engine::new(config, rules);
        let mut alerts = Vec::new();
        let mut events = Vec::new();
        for line in [
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"k","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:02:00Z","kind":"access","credential":"k","source_ip":"203.0.113.1"}"#,
            r#"{"ts":"2026-03-01T00:03:00Z","kind":"access","credential":"k","source_ip":"203.0.113.1"}"#,
            r#"{"ts":"2026-03-01T00:04:00Z","kind":"issue","credential":"other","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:05:00Z","kind":"access","credential":"other","source_ip":"203.0.113.9"}"#,
        ] {
            NativeDecoder::new()
                .decode(line.as_bytes(), &mut events)
                .unwrap();
        }
        for event in &events {
            engine.process(event, &mut alerts);
        }
        let credentials: Vec<&str> = alerts.iter().map(|a| a.credential.as_str()).collect();
        assert_eq!(
            credentials,
            vec!["other"],
            "only the excepted credential is quiet"
        );
        alerts.clear();
        assert_eq!(engine.stats().exceptions["bot"].suppressed, 2);
        assert_eq!(engine.stats().rules["zone-violation"].excepted, 2);
        assert_eq!(engine.stats().exceptions["bot"].expired_at, None);

        events.clear();
        NativeDecoder::new()
            .decode(
                br#"{"ts":"2026-03-01T00:20:00Z","kind":"access","credential":"k","source_ip":"203.0.113.1"}"#,
                &mut events,
            )
            .unwrap();
        engine.process(&events[0], &mut alerts);
        let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(rules, vec!["zone-violation"]);
        let counts = &engine.stats().exceptions["bot"];
        assert_eq!(counts.suppressed, 2);
        assert_eq!(counts.expired_at, events.first().map(|e| e.ts));
    }

    #[test]
    fn a_flood_of_distinct_names_is_compacted_and_memory_stays_bounded() {
        let mut engine = builtin_engine(CONFIG);
        let mut alerts = Vec::new();
        let start = Timestamp::from_secs(1_772_323_200);
        let mut issue = Event::new(start, Kind::Issue, "AKIAFLOODED".to_owned());
        issue.allowed_zones = vec!["prod".to_owned()];
        engine.process(&issue, &mut alerts);
        let ceiling = crate::state::MIN_COMPACTION_GROWTH + 2 * EVICTION_CHECK_EVENTS as usize + 64;
        let mut most = 0;
        for i in 0..300_000u32 {
            // A stolen key calling random paths with a random agent each time.
            let ts = Timestamp::from_micros(start.micros() + i64::from(i) * 1_000);
            let mut event = Event::new(ts, Kind::Access, "AKIAFLOODED".to_owned());
            event.source_ip = Some("10.0.1.5".to_owned());
            event.endpoint = Some(format!("GET /flood/{i}"));
            event.user_agent = Some(format!("agent{i}/1.0"));
            event.principal = Some(format!("caller-{i}"));
            alerts.clear();
            engine.process(&event, &mut alerts);
            most = most.max(engine.state().names_len());
        }
        assert!(most <= ceiling, "{most} names held at most, over {ceiling}");
        assert!(
            engine.stats().names_dropped > 800_000,
            "{}",
            engine.stats().names_dropped
        );
        let state = engine.state().get("AKIAFLOODED").unwrap();
        assert_eq!(state.accesses, 300_000);
        for seen in state.endpoints() {
            assert!(engine
                .state()
                .endpoints
                .name(seen.key)
                .starts_with("GET /flood/"));
        }
        for seen in state.user_agents() {
            assert!(engine
                .state()
                .user_agents
                .name(seen.key)
                .starts_with("agent"));
        }
        let owner = engine.state().principals.name(state.owner.unwrap());
        assert!(owner.starts_with("caller-"), "{owner}");
    }

    #[test]
    fn the_same_input_gives_the_same_alert_ids() {
        let lines = [
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"k","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:02:00Z","kind":"access","credential":"k","source_ip":"203.0.113.1"}"#,
        ];
        let (first, _) = run(&lines);
        let (second, _) = run(&lines);
        assert_eq!(first, second);
        assert!(!first.is_empty());
    }

    #[test]
    fn a_restored_engine_checks_its_bounds_on_the_same_events_as_one_that_never_stopped() {
        // 100 credentials at most: the count bound is checked every 5th event, and a check
        // past it evicts down to 95. Each event brings a new credential.
        let config = format!("{CONFIG}[state]\nmax_credentials = 100\n");
        let engine = || builtin_engine(&config);
        let start = Timestamp::from_secs(1_772_323_200);
        let event = |i: i64| {
            let mut event = Event::new(
                Timestamp::from_micros(start.micros() + i * 1_000_000),
                Kind::Access,
                format!("AKIA{i:016}"),
            );
            event.source_ip = Some("10.0.1.5".to_owned());
            event
        };
        let mut alerts = Vec::new();
        let mut whole = engine();
        for i in 0..248 {
            whole.process(&event(i), &mut alerts);
        }
        // Stopped after 123 events (not a multiple of 5) or 125, restored, and fed the rest.
        for stop in [123, 125] {
            let mut first = engine();
            for i in 0..stop {
                first.process(&event(i), &mut alerts);
            }
            let mut resumed = engine();
            resumed.restore(first.snapshot().unwrap()).unwrap();
            for i in stop..248 {
                resumed.process(&event(i), &mut alerts);
            }
            assert_eq!(resumed.stats().events, 248);
            assert_eq!(
                resumed.stats().evicted,
                whole.stats().evicted,
                "stopped at {stop}"
            );
            // The last check was before the 245th event's credential came in: 95 then, and
            // four since. Checks counted from the restore, not from the first event, would
            // have come before the 248th (stopped at 123), leaving 96.
            assert_eq!(whole.state().len(), 99);
            assert_eq!(resumed.state().len(), 99, "stopped at {stop}");
        }
    }
}
