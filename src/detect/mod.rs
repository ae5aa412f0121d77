//! Detect: detectors judge one event against the credential's state before it.
//!
//! Each detector lives in its own file and implements [`Detector`]: given an [`Observation`]
//! and the [`CredentialState`] before the event, push zero or more [`Finding`]s, each built by
//! a closure that [`Findings`] calls only when the finding may raise an alert. A finding's
//! `observed` evidence names the access's zone and network (`observed_access`) or no place
//! at all: the engine decides whether it would be counted by that place. Detectors are
//! pure: no clock, no I/O, no state of their own; everything they know comes from the event and
//! the baseline, which is what makes replays reproducible. Rules (see `rules`) instantiate a
//! detector with parameters; [`DetectorKind::build`] validates those parameters.

mod canary;
mod concurrent_zones;
mod dormant_reuse;
mod leak_lookback;
mod new_endpoint;
mod new_network;
mod new_user_agent;
mod rate_spike;
mod unknown_credential;
mod use_after_expiry;
mod use_after_leak;
mod use_after_revoke;
mod zone_violation;

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::Config;
use crate::state::{AllowedFrom, CredentialState, Interner, Observation};
use crate::zones::ZoneSet;

/// What a detector found: a one-line summary and the evidence behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// One line for an analyst: what happened and why it is unusual.
    pub summary: String,
    /// What the baseline expected (a JSON object).
    pub expected: Value,
    /// What was observed (a JSON object).
    pub observed: Value,
    /// The anomaly and the baseline it departs from, in OCSF terms (for detectors that judge
    /// against a baseline).
    pub analysis: Option<Analysis>,
}

/// An OCSF Anomaly, or a Baseline (the same shape): which attribute, how it was analysed,
/// the pattern found and the values behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Anomaly {
    pub observation_parameter: Cow<'static, str>,
    pub observation_type: Cow<'static, str>,
    pub observed_pattern: Cow<'static, str>,
    pub observations: Vec<Observed>,
}

/// An OCSF Observation: a value and how often it was seen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Observed {
    pub fn new(value: impl Into<String>, count: Option<u64>) -> Observed {
        Observed {
            value: value.into(),
            count,
        }
    }
}

/// What a baseline detector found: the anomaly and the baseline it was judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub anomaly: Anomaly,
    pub baseline: Anomaly,
}

impl Analysis {
    /// A value never seen in a remembered list: Frequency Analysis, pattern `UNSEEN`.
    pub fn unseen(
        parameter: &'static str,
        value: impl Into<String>,
        known: impl IntoIterator<Item = (String, u32)>,
    ) -> Analysis {
        Analysis {
            anomaly: Anomaly {
                observation_parameter: parameter.into(),
                observation_type: "Frequency Analysis".into(),
                observed_pattern: "UNSEEN".into(),
                observations: vec![Observed::new(value, Some(1))],
            },
            baseline: Anomaly {
                observation_parameter: parameter.into(),
                observation_type: "Frequency Analysis".into(),
                observed_pattern: "FREQUENT".into(),
                observations: known
                    .into_iter()
                    .map(|(value, count)| Observed::new(value, Some(u64::from(count))))
                    .collect(),
            },
        }
    }
}

/// Where a detector puts what it found. A finding is built by a closure, and only when it may
/// raise an alert: the engine first asks whether a finding of the rule would only be counted
/// (an exception covers it, or it repeats inside an open suppression window from a place the
/// window knows), and then counts it without building it. Summaries and evidence are most of a
/// finding's cost, and on a busy day most findings are such repeats.
pub struct Findings<'a> {
    found: &'a mut Vec<Finding>,
    counted: &'a mut dyn FnMut() -> bool,
}

impl<'a> Findings<'a> {
    /// Findings go to `found`, unless `counted` says it has counted one instead of building it.
    /// `counted` is asked only while `found` is empty: one list serves a whole event.
    pub fn new(found: &'a mut Vec<Finding>, counted: &'a mut dyn FnMut() -> bool) -> Self {
        Findings { found, counted }
    }

    /// A finding: built by `build` unless the engine counts it without. Once one is built,
    /// the rest are too: a later one may fold into the window the first one's alert opens,
    /// or lose its own when that alert closes windows past the limit.
    #[inline(always)]
    pub fn push(&mut self, build: impl FnOnce() -> Finding) {
        if !self.found.is_empty() || !(self.counted)() {
            self.build(build);
        }
    }

    /// Builds a finding, out of line: the text and JSON a detector builds are many times the
    /// size of its checks, and inlined they made its every call pay for a frame they need
    /// (callee-saved registers and hundreds of bytes of stack) on events that find nothing.
    #[cold]
    #[inline(never)]
    fn build(&mut self, build: impl FnOnce() -> Finding) {
        self.found.push(build());
    }

    /// How many findings the list holds (from every detector that has written to it).
    pub fn built(&self) -> usize {
        self.found.len()
    }
}

/// Read-only context a detector may consult.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub config: &'a Config,
    pub endpoints: &'a Interner,
    pub principals: &'a Interner,
    pub user_agents: &'a Interner,
}

/// A detector: judges one event against the credential's state before it.
pub trait Detector: Send + Sync + fmt::Debug {
    fn evaluate(
        &self,
        observation: &Observation<'_>,
        before: &CredentialState,
        context: &Context<'_>,
        out: &mut Findings<'_>,
    );
}

macro_rules! detector_kinds {
    ($($variant:ident => $name:literal, $module:ident::$type:ident;)*) => {
        /// Every detector credwatch has.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DetectorKind {
            $($variant,)*
        }

        impl DetectorKind {
            pub const ALL: &'static [DetectorKind] = &[$(DetectorKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(DetectorKind::$variant => $name,)*
                }
            }

            /// Instantiates the detector with `params` from a rule file.
            pub fn build(self, params: toml::Table) -> Result<AnyDetector, String> {
                match self {
                    $(DetectorKind::$variant => Ok(AnyDetector::$variant($module::$type::new(parse_params(params)?)?)),)*
                }
            }
        }

        /// A detector of any kind, as a rule holds it. The engine calls a rule's detector once
        /// per event: through this `match` the call is direct, and the compiler may inline it
        /// into the engine's loop, which a call through `dyn Detector` prevents. Detectors
        /// mark `evaluate` `#[inline(always)]`: what they check on every event is small once
        /// building a finding is out of line ([`Findings::push`], [`novelty`]), and a call
        /// saved and restored registers on every event (docs/performance-log.md, section 1).
        #[derive(Debug)]
        pub enum AnyDetector {
            $($variant($module::$type),)*
        }

        impl Detector for AnyDetector {
            #[inline]
            fn evaluate(
                &self,
                observation: &Observation<'_>,
                before: &CredentialState,
                context: &Context<'_>,
                out: &mut Findings<'_>,
            ) {
                match self {
                    $(AnyDetector::$variant(detector) => detector.evaluate(observation, before, context, out),)*
                }
            }
        }

        impl FromStr for DetectorKind {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(DetectorKind::$variant),)*
                    other => Err(format!(
                        "unknown detector `{other}` (known: {})",
                        [$($name),*].join(", ")
                    )),
                }
            }
        }
    };
}

detector_kinds! {
    ZoneViolation => "zone_violation", zone_violation::ZoneViolation;
    ConcurrentZones => "concurrent_zones", concurrent_zones::ConcurrentZones;
    UseAfterLeak => "use_after_leak", use_after_leak::UseAfterLeak;
    UseAfterRevoke => "use_after_revoke", use_after_revoke::UseAfterRevoke;
    UseAfterExpiry => "use_after_expiry", use_after_expiry::UseAfterExpiry;
    NewNetwork => "new_network", new_network::NewNetwork;
    NewEndpoint => "new_endpoint", new_endpoint::NewEndpoint;
    RateSpike => "rate_spike", rate_spike::RateSpike;
    DormantReuse => "dormant_reuse", dormant_reuse::DormantReuse;
    UnknownCredential => "unknown_credential", unknown_credential::UnknownCredential;
    Canary => "canary", canary::Canary;
    NewUserAgent => "new_user_agent", new_user_agent::NewUserAgent;
    LeakLookback => "leak_lookback", leak_lookback::LeakLookback;
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_params<T: DeserializeOwned>(params: toml::Table) -> Result<T, String> {
    toml::Value::Table(params)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim().to_owned())
}

/// The zones a credential may be used from at this event, and why; `None` when nothing is
/// known yet (no issuance zones, no issuer rule, still learning).
pub(crate) fn allowed_zones(
    observation: &Observation<'_>,
    before: &CredentialState,
    context: &Context<'_>,
    use_learned: bool,
) -> Option<(ZoneSet, AllowedFrom)> {
    match before.allowed_from() {
        AllowedFrom::Issuance | AllowedFrom::Issuer => {
            Some((before.allowed, before.allowed_from()))
        }
        AllowedFrom::Learned => (use_learned
            && !before.is_learning(observation.event.ts, context.config))
        .then_some((before.allowed, AllowedFrom::Learned)),
        AllowedFrom::Nothing => observation
            .event
            .principal
            .as_deref()
            .and_then(|principal| context.config.issuer_zones(principal))
            .map(|zones| (zones, AllowedFrom::Issuer)),
    }
}

/// Why an access is novel: the remembered keys still in memory, and when the key itself was
/// last seen if it was remembered once but has been forgotten (`[state] forget_after`).
pub(crate) struct Novelty<T> {
    pub known: Vec<crate::state::Seen<T>>,
    /// When it was last seen, and whether that is as old as an entry tells (then it was seen
    /// then or before).
    pub forgotten: Option<(crate::time::Timestamp, bool)>,
}

impl<T> Novelty<T> {
    /// The known entries as (name, count), each named once by `name`: what the baseline side
    /// of an `unseen` analysis lists, and whose names the summary and `expected` show.
    pub fn named(&self, name: impl Fn(&T) -> String) -> Vec<(String, u32)> {
        self.known
            .iter()
            .map(|seen| (name(&seen.key), seen.count))
            .collect()
    }

    /// `; last seen <time>, forgotten after <period>` and `; baseline inherited from
    /// <lineage>` for a summary, when they apply.
    pub fn notes(&self, before: &CredentialState, context: &Context<'_>) -> String {
        let mut notes = String::new();
        if let Some((last, aged_out)) = self.forgotten {
            notes.push_str(&format!(
                "; last seen {}{last}, forgotten after {}",
                if aged_out { "before " } else { "" },
                context.config.bounds.forget_after
            ));
        }
        if let Some(lineage) = before.inherited_from() {
            notes.push_str(&format!(
                "; baseline inherited from {}",
                context.principals.name(lineage)
            ));
        }
        notes
    }
}

/// The novelty detectors' rule: an access whose `key` is missing from the remembered `seen`
/// list of a baseline that is armed (something remembered, learning period over). Entries
/// unseen for longer than `[state] forget_after` count as forgotten, so a network that comes
/// back after months is judged new again.
#[inline(always)]
pub(crate) fn novelty<T: PartialEq + Copy>(
    key: &T,
    seen: impl crate::state::SeenList<T>,
    observation: &Observation<'_>,
    before: &CredentialState,
    context: &Context<'_>,
) -> Option<Novelty<T>> {
    let now = observation.event.ts;
    if observation.event.kind != crate::event::Kind::Access
        || seen.len() == 0
        || before.is_learning(now, context.config)
    {
        return None;
    }
    let forget_after = context.config.bounds.forget_after;
    let fresh = |s: &crate::state::Seen<T>| s.is_fresh(now, forget_after);
    let mut forgotten = None;
    let remembered = seen.each_of(*key, |entry| {
        if fresh(&entry) {
            return ControlFlow::Break(());
        }
        forgotten = Some((entry.last_seen(), entry.aged_out()));
        ControlFlow::Continue(())
    });
    if remembered.is_break() {
        return None;
    }
    Some(novel(seen, fresh, forgotten))
}

/// What [`novelty`] reports of a novel key, out of line: it lists the list (an allocation),
/// which most events, finding their key, never do.
#[cold]
#[inline(never)]
fn novel<T: PartialEq + Copy>(
    seen: impl crate::state::SeenList<T>,
    fresh: impl Fn(&crate::state::Seen<T>) -> bool,
    forgotten: Option<(crate::time::Timestamp, bool)>,
) -> Novelty<T> {
    Novelty {
        known: seen.filter(fresh).collect(),
        forgotten,
    }
}

/// The observed side of an access, as evidence.
pub(crate) fn observed_access(observation: &Observation<'_>, context: &Context<'_>) -> Value {
    let event = observation.event;
    json!({
        "source_ip": event.source_ip,
        "zone": context.config.zones.name(observation.zone),
        "network": observation.network.map(|n| n.to_string()),
        "endpoint": event.endpoint,
        "principal": event.principal,
        "user_agent": event.user_agent,
        "outcome": event.outcome,
        "time": event.ts,
    })
}

/// Where an access happened, as suppression tells places apart and as [`observed_access`]
/// writes it: the zone's name, returned, and the network, written over `network` (left empty
/// when there is none; a buffer the caller keeps, so that asking allocates nothing).
pub(crate) fn access_place<'c>(
    observation: &Observation<'_>,
    context: &Context<'c>,
    network: &mut String,
) -> &'c str {
    network.clear();
    if let Some(n) = observation.network {
        n.push_to(network);
    }
    context.config.zones.name(observation.zone)
}

/// The address of an access for a summary: `203.0.113.7`, or `no address`.
pub(crate) fn address<'a>(observation: &Observation<'a>) -> &'a str {
    observation
        .event
        .source_ip
        .as_deref()
        .unwrap_or("no address")
}

pub(crate) fn zone_list(context: &Context<'_>, zones: ZoneSet) -> Vec<String> {
    context
        .config
        .zones
        .names_of(zones)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Minutes with one decimal for summaries, e.g. `17.0`.
pub(crate) fn minutes(period: crate::time::Period) -> String {
    format!("{:.1}", period.as_minutes_f64())
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Feeds events through the zones and state stages and one detector, as the engine does.

    use super::*;
    use crate::event::{Event, Kind};
    use crate::state::StateStore;
    use crate::time::Timestamp;

    pub const CONFIG: &str = r#"
canaries = ["AKIADECOY*"]

[learning]
min_events = 3
min_age = "10m"

[[zones]]
name = "prod"
cidrs = ["10.0.0.0/16"]

[[zones]]
name = "ci"
cidrs = ["10.2.0.0/16"]

[[zones]]
name = "corp"
cidrs = ["192.168.0.0/16"]

[[issuers]]
principal = "runner-*"
zones = ["ci"]
"#;

    pub struct Bench {
        pub config: Config,
        pub store: StateStore,
        detector: AnyDetector,
    }

    impl Bench {
        pub fn new(kind: DetectorKind, params: &str) -> Bench {
            Bench {
                config: Config::parse("test", CONFIG).unwrap(),
                store: StateStore::new(),
                detector: kind.build(toml::from_str(params).unwrap()).unwrap(),
            }
        }

        /// Runs the detector on `event` and then applies it to state; returns the findings.
        pub fn feed(&self, event: Event) -> Vec<Finding> {
            let observation = self.store.locate(&event, &self.config);
            let context = Context {
                config: &self.config,
                endpoints: &self.store.endpoints,
                principals: &self.store.principals,
                user_agents: &self.store.user_agents,
            };
            let mut findings = Vec::new();
            let mut build_all = || false;
            self.store.with_credential(
                &event.credential,
                |before| {
                    let mut out = Findings::new(&mut findings, &mut build_all);
                    self.detector
                        .evaluate(&observation, before, &context, &mut out)
                },
                |state| {
                    state.apply(&observation, &self.config);
                },
            );
            findings
        }
    }

    /// Minute `m` after 2026-03-01T00:00:00Z, plus `s` seconds.
    pub fn at(m: i64, s: i64) -> Timestamp {
        Timestamp::from_secs(1_772_323_200 + m * 60 + s)
    }

    pub fn access(ts: Timestamp, credential: &str, ip: &str, endpoint: &str) -> Event {
        let mut event = Event::new(ts, Kind::Access, credential);
        event.source_ip = Some(ip.to_owned());
        event.endpoint = Some(endpoint.to_owned());
        event
    }

    pub fn issue(ts: Timestamp, credential: &str, zones: &[&str]) -> Event {
        let mut event = Event::new(ts, Kind::Issue, credential);
        event.allowed_zones = zones.iter().map(|z| z.to_string()).collect();
        event
    }

    pub fn lifecycle(ts: Timestamp, kind: Kind, credential: &str) -> Event {
        Event::new(ts, kind, credential)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{access, at, CONFIG};
    use super::*;
    use crate::state::StateStore;

    /// The engine counts a finding without building it by the place of its access
    /// ([`access_place`]); suppression tells places apart by what the evidence names.
    #[test]
    fn an_access_place_is_the_place_its_evidence_names() {
        let config = Config::parse("test", CONFIG).unwrap();
        let store = StateStore::new();
        let context = Context {
            config: &config,
            endpoints: &store.endpoints,
            principals: &store.principals,
            user_agents: &store.user_agents,
        };
        for ip in [
            Some("10.0.1.5"),
            Some("2001:db8::7"),
            Some("198.51.100.4"),
            None,
        ] {
            let mut event = access(at(0, 0), "k", "10.0.1.5", "s3:GetObject");
            event.source_ip = ip.map(str::to_owned);
            let observation = store.locate(&event, &config);
            let observed = observed_access(&observation, &context);
            let evidence = crate::alerts::place_of(&observed);
            let mut network = "left over".to_owned();
            let zone = access_place(&observation, &context, &mut network);
            assert_eq!(evidence, Some((zone, network.as_str())), "{ip:?}");
        }
    }
}
