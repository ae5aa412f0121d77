//! One credential's record: lifecycle times, zones, recent networks and endpoints, call rate.
//!
//! Bounded by construction: at most `max_networks` networks and `max_endpoints` endpoints are
//! kept, the least recently seen replaced first, and strings are interned symbols. Detectors
//! read the record as it was *before* the event; [`CredentialState::apply`] then folds the
//! event in, in event time.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::event::Kind;
use crate::state::rate::RateBaseline;
pub use crate::state::record::CredentialState;
use crate::state::{Names, Observation, Symbol};
use crate::time::Timestamp;
use crate::zones::{Network, ZoneId, ZoneSet};

/// Where a credential's allowed zones come from, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AllowedFrom {
    /// Nothing known yet.
    #[default]
    Nothing,
    /// The issuance event listed them.
    Issuance,
    /// An `[[issuers]]` rule in config matched the issuing (or using) principal.
    Issuer,
    /// Learned from the zones seen during the learning period.
    Learned,
}

impl AllowedFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowedFrom::Nothing => "none",
            AllowedFrom::Issuance => "issuance",
            AllowedFrom::Issuer => "issuer rule",
            AllowedFrom::Learned => "learned",
        }
    }

    /// Declared by someone (issuance or config), as opposed to learned or unknown.
    pub fn is_declared(self) -> bool {
        matches!(self, AllowedFrom::Issuance | AllowedFrom::Issuer)
    }
}

/// Something seen repeatedly: how often and when last, to the second.
///
/// The time is whole seconds since the epoch in 32 bits (1970 to 2106; times outside are
/// taken as the nearest end), so that an endpoint's entry is 12 bytes rather than 16: a
/// record keeps a dozen of these, and the times only decide what a baseline forgets (after
/// days) and which entry a full list replaces. Serialized with the full timestamp, as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<T> {
    pub key: T,
    pub count: u32,
    second: u32,
}

impl<T> Seen<T> {
    pub fn new(key: T, count: u32, last_seen: Timestamp) -> Seen<T> {
        Seen {
            key,
            count,
            second: second_of(last_seen),
        }
    }

    /// When it was seen last, to the second (floor).
    pub fn last_seen(&self) -> Timestamp {
        Timestamp::from_secs(i64::from(self.second))
    }

    /// One more sighting at `ts`.
    fn see(&mut self, ts: Timestamp) {
        self.count = self.count.saturating_add(1);
        self.second = self.second.max(second_of(ts));
    }
}

/// `ts` in whole seconds since the epoch, within `u32`.
fn second_of(ts: Timestamp) -> u32 {
    ts.micros()
        .div_euclid(1_000_000)
        .clamp(0, i64::from(u32::MAX)) as u32
}

/// How a [`Seen`] is written: with its time as a [`Timestamp`].
#[derive(Serialize, Deserialize)]
struct SeenForm<T> {
    key: T,
    count: u32,
    last_seen: Timestamp,
}

impl<T: Serialize + Copy> Serialize for Seen<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SeenForm {
            key: self.key,
            count: self.count,
            last_seen: self.last_seen(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seen<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = SeenForm::deserialize(deserializer)?;
        Ok(Seen::new(form.key, form.count, form.last_seen))
    }
}

/// A use from a network or zone the credential's armed baseline did not know: kept for a
/// while so that a leak report can look back at what happened in the hours before it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NovelUse {
    pub at: Timestamp,
    pub network: Option<Network>,
    pub zone: ZoneId,
    /// The zone itself was new, not only the network.
    pub new_zone: bool,
}

/// Novel uses kept per credential (the newest).
pub const MAX_NOVEL_USES: usize = 8;

/// The leak report a credential got (the earliest one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    pub at: Timestamp,
    pub source: Option<String>,
    pub url: Option<String>,
}

/// A credential's fixed-size facts: the part of its record ([`CredentialState`], which
/// dereferences to them) laid out like a plain struct's fields. 96 bytes: what is rarely set
/// (a leak report, a revocation, novel uses) sits behind one pointer, and the byte-sized
/// fields are kept beside the record's list lengths (see `record.rs`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Fields {
    /// Access events seen (saturating).
    pub accesses: u32,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    /// The owner from issuance, else the principal last seen using it.
    pub owner: Option<Symbol>,
    pub allowed: ZoneSet,
    pub seen_zones: ZoneSet,
    /// Time of the latest access, for `concurrent_zones` (its zone is a byte of the record's
    /// tail: [`CredentialState::last_zone`]).
    pub(super) last_zone_at: Option<Timestamp>,
    pub rate: RateBaseline,
    /// The lineage whose baseline this credential started from at issuance; such a credential
    /// is armed from its first use.
    pub inherited_from: Option<Symbol>,
    pub(super) rare: Option<Box<Rare>>,
}

/// What few credentials have, boxed so that the others pay 8 bytes for it.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Rare {
    leak: Option<Leak>,
    revoked_at: Option<Timestamp>,
    /// Recent uses from new networks or zones after the baseline was armed, oldest first (at
    /// most [`MAX_NOVEL_USES`]).
    novel_uses: Vec<NovelUse>,
}

impl Fields {
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The leak report the credential got (the earliest one).
    pub fn leak(&self) -> Option<&Leak> {
        self.rare.as_ref().and_then(|rare| rare.leak.as_ref())
    }

    pub fn set_leak(&mut self, leak: Option<Leak>) {
        self.change_rare(leak.is_some(), |rare| rare.leak = leak);
    }

    /// When it was revoked (the earliest revocation).
    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.rare.as_ref().and_then(|rare| rare.revoked_at)
    }

    pub fn set_revoked_at(&mut self, at: Option<Timestamp>) {
        self.change_rare(at.is_some(), |rare| rare.revoked_at = at);
    }

    /// Recent uses from new networks or zones after the baseline was armed, oldest first (at
    /// most [`MAX_NOVEL_USES`]).
    pub fn novel_uses(&self) -> &[NovelUse] {
        self.rare.as_ref().map_or(&[], |rare| &rare.novel_uses)
    }

    pub fn set_novel_uses(&mut self, uses: Vec<NovelUse>) {
        self.change_rare(!uses.is_empty(), |rare| rare.novel_uses = uses);
    }

    /// Applies `change` to the rare part: allocated only when `setting` something, dropped
    /// when the change leaves it empty.
    fn change_rare(&mut self, setting: bool, change: impl FnOnce(&mut Rare)) {
        if !setting && self.rare.is_none() {
            return;
        }
        change(self.rare_mut());
        if self.rare.as_deref() == Some(&Rare::default()) {
            self.rare = None;
        }
    }

    /// Bytes the rare part holds.
    fn rare_bytes(&self) -> usize {
        self.rare.as_deref().map_or(0, |rare| {
            std::mem::size_of::<Rare>()
                + rare.leak.as_ref().map_or(0, |leak| {
                    leak.source.as_ref().map_or(0, String::len)
                        + leak.url.as_ref().map_or(0, String::len)
                })
                + rare.novel_uses.len() * std::mem::size_of::<NovelUse>()
        })
    }
}

impl CredentialState {
    /// The record's estimated size in bytes: the map's slot, the record's block and what its
    /// rare part owns. By lengths, not capacities, so the same state always counts the same,
    /// and eviction by `[state] max_state_mib` decides the same way after a restart.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<CredentialState>() + self.block_size() + self.rare_bytes()
    }

    /// Calls `visit` on every interned symbol the record holds.
    pub fn symbols(&self, mut visit: impl FnMut(Names, Symbol)) {
        if let Some(owner) = self.owner {
            visit(Names::Principals, owner);
        }
        if let Some(lineage) = self.inherited_from {
            visit(Names::Principals, lineage);
        }
        for seen in self.endpoints() {
            visit(Names::Endpoints, seen.key);
        }
        for seen in self.user_agents() {
            visit(Names::UserAgents, seen.key);
        }
    }

    /// Replaces the endpoints and user agents (at most 255 of each are kept, which
    /// `[bounds]` cannot exceed).
    pub fn set_endpoints_and_user_agents(
        &mut self,
        endpoints: &[Seen<Symbol>],
        user_agents: &[Seen<Symbol>],
    ) {
        let networks = self.networks().to_vec();
        self.set_lists(&networks, endpoints, user_agents);
    }

    /// Replaces the networks (at most 255 are kept).
    pub fn set_networks(&mut self, networks: &[Seen<Network>]) {
        let endpoints = self.endpoints().to_vec();
        let user_agents = self.user_agents().to_vec();
        self.set_lists(networks, &endpoints, &user_agents);
    }

    /// Zone of the latest access and its time.
    pub fn last_zone(&self) -> Option<(ZoneId, Timestamp)> {
        self.last_zone_at.map(|at| (self.last_zone_byte(), at))
    }

    /// Rewrites every interned symbol the record holds through `rename` (its names moving to
    /// other interners). Returns false, leaving the record partly rewritten, when `rename`
    /// knows a symbol not.
    pub fn rename(&mut self, rename: &mut impl FnMut(Names, Symbol) -> Option<Symbol>) -> bool {
        let mut known = true;
        let mut apply = |names: Names, symbol: &mut Symbol| match rename(names, *symbol) {
            Some(renamed) => *symbol = renamed,
            None => known = false,
        };
        if let Some(owner) = &mut self.owner {
            apply(Names::Principals, owner);
        }
        if let Some(lineage) = &mut self.inherited_from {
            apply(Names::Principals, lineage);
        }
        for seen in self.endpoints_mut() {
            apply(Names::Endpoints, &mut seen.key);
        }
        for seen in self.user_agents_mut() {
            apply(Names::UserAgents, &mut seen.key);
        }
        known
    }

    /// Still in its learning period at `now`: too few events, or too young.
    pub fn is_learning(&self, now: Timestamp, config: &Config) -> bool {
        let learning = &config.learning;
        if self.inherited_from.is_some() {
            return false;
        }
        match self.first_seen {
            None => true,
            Some(first) => {
                self.accesses < learning.min_events || now.since(first) < learning.min_age
            }
        }
    }

    /// The latest event time anything happened to the credential (use, issuance, revocation,
    /// leak report): what eviction calls idle.
    pub fn last_activity(&self) -> Option<Timestamp> {
        [
            self.last_seen,
            self.issued_at,
            self.revoked_at(),
            self.leak().map(|leak| leak.at),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Leaked or revoked: a fact that makes any later use alarming, so such records are
    /// evicted only after every other.
    pub fn is_precious(&self) -> bool {
        self.leak().is_some() || self.revoked_at().is_some()
    }

    /// Never seen in any event before.
    pub fn is_new(&self) -> bool {
        self.accesses == 0
            && self.issued_at.is_none()
            && self.revoked_at().is_none()
            && self.leak().is_none()
    }

    /// Folds one event in. Returns false when the event was late for the rate baseline.
    pub fn apply(&mut self, observation: &Observation<'_>, config: &Config) -> bool {
        let event = observation.event;
        let ts = event.ts;
        match event.kind {
            Kind::Issue => {
                self.issued_at = Some(self.issued_at.map_or(ts, |at| at.max(ts)));
                if event.expires_at.is_some() {
                    self.expires_at = event.expires_at;
                }
                if let Some(owner) = observation.owner {
                    self.owner = Some(owner);
                }
                if let Some(inherited) = &observation.inherited {
                    if self.accesses == 0 {
                        self.inherit(inherited);
                    }
                }
                if !observation.declared_zones.is_empty() {
                    self.allowed = observation.declared_zones;
                    self.set_allowed_from(AllowedFrom::Issuance);
                } else if let Some(zones) = event
                    .principal
                    .as_deref()
                    .and_then(|p| config.issuer_zones(p))
                {
                    self.allowed = zones;
                    self.set_allowed_from(AllowedFrom::Issuer);
                }
                true
            }
            Kind::Revoke => {
                let at = self.revoked_at().map_or(ts, |at| at.min(ts));
                self.set_revoked_at(Some(at));
                true
            }
            Kind::Leak => {
                if self.leak().is_none_or(|leak| ts < leak.at) {
                    self.set_leak(Some(Leak {
                        at: ts,
                        source: event.leak_source.clone(),
                        url: event.leak_url.clone(),
                    }));
                }
                true
            }
            Kind::Access => self.apply_access(observation, config),
        }
    }

    /// Starts from a previous credential's baseline: where it was used from, what it called,
    /// with what agents and how fast. Zones learned (not declared) come along too.
    fn inherit(&mut self, inherited: &crate::state::Inherited) {
        let parent = &inherited.state;
        self.set_lists(parent.networks(), parent.endpoints(), parent.user_agents());
        self.seen_zones = parent.seen_zones;
        self.rate = parent.rate;
        if self.allowed_from() == AllowedFrom::Nothing
            && parent.allowed_from() == AllowedFrom::Learned
        {
            self.allowed = parent.allowed;
            self.set_allowed_from(AllowedFrom::Learned);
        }
        self.inherited_from = Some(inherited.lineage);
    }

    /// Keeps the newest [`MAX_NOVEL_USES`] uses from new places.
    fn record_novel_use(&mut self, novel: NovelUse) {
        let uses = &mut self.rare_mut().novel_uses;
        if uses.len() == MAX_NOVEL_USES {
            uses.remove(0);
        }
        uses.push(novel);
    }

    fn apply_access(&mut self, observation: &Observation<'_>, config: &Config) -> bool {
        let ts = observation.event.ts;
        let zone = observation.zone;
        let learning = self.is_learning(ts, config);

        if self.allowed_from() == AllowedFrom::Nothing {
            if let Some(zones) = observation
                .event
                .principal
                .as_deref()
                .and_then(|p| config.issuer_zones(p))
            {
                self.allowed = zones;
                self.set_allowed_from(AllowedFrom::Issuer);
            }
        }
        if learning
            && zone != ZoneId::UNKNOWN
            && matches!(
                self.allowed_from(),
                AllowedFrom::Nothing | AllowedFrom::Learned
            )
        {
            self.allowed.insert(zone);
            self.set_allowed_from(AllowedFrom::Learned);
        }
        if self.owner.is_none() {
            self.owner = observation.principal;
        }

        let new_zone = zone != ZoneId::UNKNOWN && !self.seen_zones.contains(zone);
        self.accesses = self.accesses.saturating_add(1);
        self.first_seen = Some(self.first_seen.map_or(ts, |first| first.min(ts)));
        self.last_seen = Some(self.last_seen.map_or(ts, |last| last.max(ts)));
        if zone != ZoneId::UNKNOWN {
            self.seen_zones.insert(zone);
            if self.last_zone_at.is_none_or(|at| ts >= at) {
                self.set_last_zone_byte(zone);
                self.last_zone_at = Some(ts);
            }
        }
        // The network's previous last use, from the same pass that records this one.
        let new_network = observation.network.is_some_and(|network| {
            let max = config.bounds.max_networks;
            match remember(self.networks_mut(), network, ts, max) {
                Remembered::Known(last) => ts.since(last) > config.bounds.forget_after,
                Remembered::Replaced => true,
                Remembered::Missing(entry) => {
                    self.push_network(entry);
                    true
                }
            }
        });
        if !learning && (new_network || new_zone) {
            self.record_novel_use(NovelUse {
                at: ts,
                network: observation.network,
                zone,
                new_zone,
            });
        }
        if let Some(endpoint) = observation.endpoint {
            let max = config.bounds.max_endpoints;
            if let Remembered::Missing(entry) = remember(self.endpoints_mut(), endpoint, ts, max) {
                self.push_endpoint(entry);
            }
        }
        if let Some(agent) = observation.user_agent {
            let max = config.bounds.max_user_agents;
            if let Remembered::Missing(entry) = remember(self.user_agents_mut(), agent, ts, max) {
                self.push_user_agent(entry);
            }
        }
        self.rate.record(ts.minute(), config.bounds.rate_alpha)
    }
}

/// What [`remember`] found.
#[derive(Debug, PartialEq)]
enum Remembered<T> {
    /// The key was in the list, last seen then.
    Known(Timestamp),
    /// The list was full: the key took its least recently seen entry's place.
    Replaced,
    /// The list has room: this entry is to be appended.
    Missing(Seen<T>),
}

/// Counts `key` in the bounded list (at most `max` long), replacing its least recently seen
/// entry when full.
fn remember<T: Copy + PartialEq>(
    list: &mut [Seen<T>],
    key: T,
    ts: Timestamp,
    max: usize,
) -> Remembered<T> {
    if let Some(seen) = list.iter_mut().find(|seen| seen.key == key) {
        let previous = seen.last_seen();
        seen.see(ts);
        return Remembered::Known(previous);
    }
    let entry = Seen::new(key, 1, ts);
    if list.len() < max.min(usize::from(u8::MAX)) {
        return Remembered::Missing(entry);
    }
    if let Some(oldest) = list.iter_mut().min_by_key(|seen| (seen.second, seen.count)) {
        *oldest = entry;
    }
    Remembered::Replaced
}

/// How a [`CredentialState`] is written (checkpoints, shares): the layout it had before it was
/// packed, field for field, so that older checkpoints restore. Written from borrowed fields.
#[derive(Serialize)]
struct CredentialFormRef<'a> {
    accesses: u32,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    issued_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    leak: Option<&'a Leak>,
    owner: Option<Symbol>,
    allowed: ZoneSet,
    allowed_from: AllowedFrom,
    seen_zones: ZoneSet,
    last_zone: Option<(ZoneId, Timestamp)>,
    networks: &'a [Seen<Network>],
    endpoints: &'a [Seen<Symbol>],
    user_agents: &'a [Seen<Symbol>],
    rate: RateBaseline,
    inherited_from: Option<Symbol>,
    novel_uses: Option<&'a [NovelUse]>,
}

/// [`CredentialFormRef`], read back.
#[derive(Deserialize)]
struct CredentialForm {
    accesses: u32,
    first_seen: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    issued_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
    leak: Option<Leak>,
    owner: Option<Symbol>,
    allowed: ZoneSet,
    allowed_from: AllowedFrom,
    seen_zones: ZoneSet,
    last_zone: Option<(ZoneId, Timestamp)>,
    networks: Vec<Seen<Network>>,
    endpoints: Vec<Seen<Symbol>>,
    user_agents: Vec<Seen<Symbol>>,
    rate: RateBaseline,
    inherited_from: Option<Symbol>,
    novel_uses: Option<Vec<NovelUse>>,
}

impl Serialize for CredentialState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CredentialFormRef {
            accesses: self.accesses,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at(),
            leak: self.leak(),
            owner: self.owner,
            allowed: self.allowed,
            allowed_from: self.allowed_from(),
            seen_zones: self.seen_zones,
            last_zone: self.last_zone(),
            networks: self.networks(),
            endpoints: self.endpoints(),
            user_agents: self.user_agents(),
            rate: self.rate,
            inherited_from: self.inherited_from,
            novel_uses: Some(self.novel_uses()).filter(|uses| !uses.is_empty()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CredentialState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = CredentialForm::deserialize(deserializer)?;
        CredentialState::try_from(form).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<CredentialForm> for CredentialState {
    type Error = String;

    fn try_from(form: CredentialForm) -> Result<Self, String> {
        for (what, len) in [
            ("networks", form.networks.len()),
            ("endpoints", form.endpoints.len()),
            ("user agents", form.user_agents.len()),
        ] {
            if len > usize::from(u8::MAX) {
                return Err(format!(
                    "{len} {what} in one credential's record; at most 255 are kept"
                ));
            }
        }
        let mut fields = Fields {
            accesses: form.accesses,
            first_seen: form.first_seen,
            last_seen: form.last_seen,
            issued_at: form.issued_at,
            expires_at: form.expires_at,
            owner: form.owner,
            allowed: form.allowed,
            seen_zones: form.seen_zones,
            last_zone_at: form.last_zone.map(|(_, at)| at),
            rate: form.rate,
            inherited_from: form.inherited_from,
            rare: None,
        };
        fields.set_leak(form.leak);
        fields.set_revoked_at(form.revoked_at);
        fields.set_novel_uses(form.novel_uses.unwrap_or_default());
        let mut state = CredentialState::with_fields(fields);
        state.set_allowed_from(form.allowed_from);
        state.set_last_zone_byte(form.last_zone.map_or(ZoneId::UNKNOWN, |(zone, _)| zone));
        state.set_lists(&form.networks, &form.endpoints, &form.user_agents);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_keeps_its_time_to_the_second_and_is_written_as_before() {
        /// The layout `Seen` had when its time was a whole `Timestamp`.
        #[derive(Serialize)]
        struct Before {
            key: Network,
            count: u32,
            last_seen: Timestamp,
        }
        assert_eq!(std::mem::size_of::<Seen<Network>>(), 16);
        assert_eq!(std::mem::size_of::<Seen<Symbol>>(), 12);
        let network = Network::of("203.0.113.9".parse().unwrap());
        let at = Timestamp::from_micros(1_772_323_200_999_999);
        let seen = Seen::new(network, 3, at);
        assert_eq!(seen.last_seen(), Timestamp::from_secs(1_772_323_200));
        let whole = Timestamp::from_secs(1_772_323_200);
        let before = Before {
            key: network,
            count: 3,
            last_seen: whole,
        };
        let bytes = postcard::to_stdvec(&seen).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<Seen<Network>>(&bytes).unwrap(), seen);
        // Times outside 1970..2106 are held as the nearest end.
        assert_eq!(
            Seen::new(network, 1, Timestamp::from_secs(-5)).last_seen(),
            Timestamp::from_secs(0)
        );
        let late = Seen::new(network, 1, Timestamp::from_secs(1 << 40)).last_seen();
        assert_eq!(late, Timestamp::from_secs(i64::from(u32::MAX)));
    }

    #[test]
    fn endpoints_and_user_agents_share_one_list_and_are_written_as_two() {
        let config = Config::parse(
            "test",
            "[state]\nmax_endpoints = 2\nmax_user_agents = 2\n\n[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let store = crate::state::StateStore::new();
        let mut state = CredentialState::default();
        let uses = [
            ("ua-a", "s3:GetObject"),
            ("ua-b", "s3:PutObject"),
            ("ua-a", "s3:GetObject"),
            ("ua-c", "kms:Decrypt"),
            ("ua-b", "s3:ListBucket"),
        ];
        for (i, (agent, endpoint)) in uses.into_iter().enumerate() {
            let ts = Timestamp::from_secs(1_772_323_200 + 60 * i as i64);
            let mut event = crate::event::Event::new(ts, Kind::Access, "AKIA".to_owned());
            event.source_ip = Some("10.0.0.1".to_owned());
            event.endpoint = Some(endpoint.to_owned());
            event.user_agent = Some(format!("{agent}/1.0"));
            state.apply(&store.locate(&event, &config), &config);
        }
        let names = |list: &[Seen<Symbol>], interner: &crate::state::Interner| {
            let mut names: Vec<String> = list
                .iter()
                .map(|s| interner.name(s.key).to_string())
                .collect();
            names.sort();
            names
        };
        // Each list bounded on its own, the least recently seen replaced.
        assert_eq!(
            names(state.endpoints(), &store.endpoints),
            ["kms:Decrypt", "s3:ListBucket"]
        );
        assert_eq!(
            names(state.user_agents(), &store.user_agents),
            ["ua-b", "ua-c"]
        );
        assert_eq!(
            state.last_zone().map(|(_, at)| at.micros() / 1_000_000),
            Some(1_772_323_440)
        );

        /// The layout the record had before it was packed (the fields up to the lists).
        #[derive(Serialize)]
        struct Head<'a> {
            accesses: u32,
            first_seen: Option<Timestamp>,
            last_seen: Option<Timestamp>,
            issued_at: Option<Timestamp>,
            expires_at: Option<Timestamp>,
            revoked_at: Option<Timestamp>,
            leak: Option<Box<Leak>>,
            owner: Option<Symbol>,
            allowed: ZoneSet,
            allowed_from: AllowedFrom,
            seen_zones: ZoneSet,
            last_zone: Option<(ZoneId, Timestamp)>,
            networks: Vec<Seen<Network>>,
            endpoints: Vec<Seen<Symbol>>,
            user_agents: Vec<Seen<Symbol>>,
            rate: RateBaseline,
            inherited_from: Option<Symbol>,
            novel_uses: Option<&'a [NovelUse]>,
        }
        let before = Head {
            accesses: state.accesses,
            first_seen: state.first_seen,
            last_seen: state.last_seen,
            issued_at: None,
            expires_at: None,
            revoked_at: None,
            leak: None,
            owner: state.owner,
            allowed: state.allowed,
            allowed_from: state.allowed_from(),
            seen_zones: state.seen_zones,
            last_zone: state.last_zone(),
            networks: state.networks().to_vec(),
            endpoints: state.endpoints().to_vec(),
            user_agents: state.user_agents().to_vec(),
            rate: state.rate,
            inherited_from: None,
            novel_uses: Some(state.novel_uses()).filter(|uses| !uses.is_empty()),
        };
        let bytes = postcard::to_stdvec(&state).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&before).unwrap());
        assert_eq!(
            postcard::from_bytes::<CredentialState>(&bytes).unwrap(),
            state
        );
    }

    #[test]
    fn bounded_lists_forget_the_least_recently_seen() {
        let mut list: Vec<Seen<u32>> = Vec::new();
        for (i, key) in [1, 2, 3].into_iter().enumerate() {
            if let Remembered::Missing(entry) =
                remember(&mut list, key, Timestamp::from_secs(i as i64), 2)
            {
                list.push(entry);
            }
        }
        let keys: Vec<_> = list.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![3, 2]);
        assert_eq!(
            remember(&mut list, 2, Timestamp::from_secs(10), 2),
            Remembered::Known(Timestamp::from_secs(1))
        );
        assert_eq!(list.iter().find(|s| s.key == 2).unwrap().count, 2);
        assert_eq!(
            remember(&mut list, 4, Timestamp::from_secs(11), 2),
            Remembered::Replaced
        );
        assert_eq!(list.iter().map(|s| s.key).collect::<Vec<_>>(), vec![4, 2]);
    }

    #[test]
    fn rare_facts_take_no_room_until_set() {
        let mut fields = Fields::default();
        fields.set_leak(None);
        fields.set_novel_uses(Vec::new());
        assert!(fields.rare.is_none());
        fields.set_revoked_at(Some(Timestamp::from_secs(5)));
        assert_eq!(fields.revoked_at(), Some(Timestamp::from_secs(5)));
        assert!(fields.leak().is_none());
        fields.set_revoked_at(None);
        assert!(fields.rare.is_none(), "an emptied rare part goes");
    }
}
