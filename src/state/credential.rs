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
use crate::state::{Home, Names, Observation, Symbol};
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

/// What credwatch knows about one credential.
///
/// Laid out for size (a store holds millions): see [`CredentialFormRef`] for how it is written.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(try_from = "CredentialForm")]
pub struct CredentialState {
    /// Access events seen (saturating).
    pub accesses: u32,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Boxed: few credentials ever have one, and the record stays small.
    pub leak: Option<Box<Leak>>,
    /// The owner from issuance, else the principal last seen using it.
    pub owner: Option<Symbol>,
    pub allowed: ZoneSet,
    pub allowed_from: AllowedFrom,
    pub seen_zones: ZoneSet,
    /// Zone of the latest access, for `concurrent_zones`, when `last_zone_at` is set (apart
    /// from its time, so that its byte packs beside the other small fields).
    pub(super) last_zone: ZoneId,
    pub(super) last_zone_at: Option<Timestamp>,
    /// The lists are boxed slices, exactly as long as they are (16 bytes each, no spare
    /// capacity): they grow only when something new is seen, which after the learning period
    /// is rare, and then by one allocation.
    pub networks: Box<[Seen<Network>]>,
    /// The endpoints, then the user agents by product (`aws-cli`, not `aws-cli/2.15.0`), in one
    /// allocation: the first `endpoint_count` are endpoints ([`CredentialState::endpoints`],
    /// [`CredentialState::user_agents`]).
    pub(super) symbols: Box<[Seen<Symbol>]>,
    pub(super) endpoint_count: u8,
    pub rate: RateBaseline,
    /// The lineage whose baseline this credential started from at issuance; such a credential
    /// is armed from its first use.
    pub inherited_from: Option<Symbol>,
    /// Recent uses from new networks or zones after the baseline was armed, oldest first (at
    /// most [`MAX_NOVEL_USES`]); boxed because most credentials never have one.
    pub novel_uses: Option<Box<Vec<NovelUse>>>,
    /// The input partition whose event touched the record last, numbered by whoever feeds
    /// the engine ([`Home`]): the per-partition checkpoint the record is written into. Not
    /// serialized: a partition's checkpoint file implies it.
    #[serde(skip)]
    pub home: Home,
}

impl CredentialState {
    /// The record's estimated size in bytes under `key`: the map entry's key and record and
    /// what they own. By lengths, not capacities, so the same state always counts the same
    /// (a restored checkpoint's vectors have no spare capacity), and eviction by
    /// `[state] max_state_mib` decides the same way after a restart.
    pub fn approx_bytes(&self, key: &str) -> usize {
        use std::mem::size_of;
        let leak = self.leak.as_deref().map_or(0, |leak| {
            size_of::<Leak>()
                + leak.source.as_ref().map_or(0, String::len)
                + leak.url.as_ref().map_or(0, String::len)
        });
        // An id longer than the key holds inline has a heap copy.
        let key_bytes = if key.len() > size_of::<compact_str::CompactString>() {
            key.len()
        } else {
            0
        };
        size_of::<compact_str::CompactString>()
            + key_bytes
            + size_of::<Box<CredentialState>>()
            + size_of::<CredentialState>()
            + self.networks.len() * size_of::<Seen<Network>>()
            + self.symbols.len() * size_of::<Seen<Symbol>>()
            + leak
            + self.novel_uses.as_deref().map_or(0, |uses| {
                size_of::<Vec<NovelUse>>() + uses.len() * size_of::<NovelUse>()
            })
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

    /// The endpoints called, interned.
    pub fn endpoints(&self) -> &[Seen<Symbol>] {
        &self.symbols[..usize::from(self.endpoint_count)]
    }

    /// The user agents seen, by product, interned.
    pub fn user_agents(&self) -> &[Seen<Symbol>] {
        &self.symbols[usize::from(self.endpoint_count)..]
    }

    /// Replaces the endpoints and user agents (at most 255 endpoints are kept, which
    /// `[bounds] max_endpoints` cannot exceed).
    pub fn set_endpoints_and_user_agents(
        &mut self,
        endpoints: &[Seen<Symbol>],
        user_agents: &[Seen<Symbol>],
    ) {
        let endpoints = &endpoints[..endpoints.len().min(usize::from(u8::MAX))];
        self.symbols = endpoints.iter().chain(user_agents).copied().collect();
        self.endpoint_count = endpoints.len() as u8;
    }

    /// Zone of the latest access and its time.
    pub fn last_zone(&self) -> Option<(ZoneId, Timestamp)> {
        self.last_zone_at.map(|at| (self.last_zone, at))
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
        let endpoints = usize::from(self.endpoint_count);
        for (i, seen) in self.symbols.iter_mut().enumerate() {
            let names = if i < endpoints {
                Names::Endpoints
            } else {
                Names::UserAgents
            };
            apply(names, &mut seen.key);
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
            self.revoked_at,
            self.leak.as_ref().map(|leak| leak.at),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Leaked or revoked: a fact that makes any later use alarming, so such records are
    /// evicted only after every other.
    pub fn is_precious(&self) -> bool {
        self.leak.is_some() || self.revoked_at.is_some()
    }

    /// Never seen in any event before.
    pub fn is_new(&self) -> bool {
        self.accesses == 0
            && self.issued_at.is_none()
            && self.revoked_at.is_none()
            && self.leak.is_none()
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
                    self.allowed_from = AllowedFrom::Issuance;
                } else if let Some(zones) = event
                    .principal
                    .as_deref()
                    .and_then(|p| config.issuer_zones(p))
                {
                    self.allowed = zones;
                    self.allowed_from = AllowedFrom::Issuer;
                }
                true
            }
            Kind::Revoke => {
                self.revoked_at = Some(self.revoked_at.map_or(ts, |at| at.min(ts)));
                true
            }
            Kind::Leak => {
                if self.leak.as_ref().is_none_or(|leak| ts < leak.at) {
                    self.leak = Some(Box::new(Leak {
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
        self.networks = parent.networks.clone();
        self.symbols = parent.symbols.clone();
        self.endpoint_count = parent.endpoint_count;
        self.seen_zones = parent.seen_zones;
        self.rate = parent.rate;
        if self.allowed_from == AllowedFrom::Nothing && parent.allowed_from == AllowedFrom::Learned
        {
            self.allowed = parent.allowed;
            self.allowed_from = AllowedFrom::Learned;
        }
        self.inherited_from = Some(inherited.lineage);
    }

    /// Keeps the newest [`MAX_NOVEL_USES`] uses from new places.
    fn record_novel_use(&mut self, novel: NovelUse) {
        let uses = self.novel_uses.get_or_insert_with(Default::default);
        if uses.len() == MAX_NOVEL_USES {
            uses.remove(0);
        }
        uses.push(novel);
    }

    fn apply_access(&mut self, observation: &Observation<'_>, config: &Config) -> bool {
        let ts = observation.event.ts;
        let zone = observation.zone;
        let learning = self.is_learning(ts, config);

        if self.allowed_from == AllowedFrom::Nothing {
            if let Some(zones) = observation
                .event
                .principal
                .as_deref()
                .and_then(|p| config.issuer_zones(p))
            {
                self.allowed = zones;
                self.allowed_from = AllowedFrom::Issuer;
            }
        }
        if learning
            && zone != ZoneId::UNKNOWN
            && matches!(
                self.allowed_from,
                AllowedFrom::Nothing | AllowedFrom::Learned
            )
        {
            self.allowed.insert(zone);
            self.allowed_from = AllowedFrom::Learned;
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
                self.last_zone = zone;
                self.last_zone_at = Some(ts);
            }
        }
        // The network's previous last use, from the same pass that records this one.
        let new_network = observation.network.is_some_and(|network| {
            let all = 0..self.networks.len();
            remember(
                &mut self.networks,
                all,
                network,
                ts,
                config.bounds.max_networks,
            )
            .0
            .is_none_or(|last| ts.since(last) > config.bounds.forget_after)
        });
        if !learning && (new_network || new_zone) {
            self.record_novel_use(NovelUse {
                at: ts,
                network: observation.network,
                zone,
                new_zone,
            });
        }
        let endpoints = usize::from(self.endpoint_count);
        if let Some(endpoint) = observation.endpoint {
            // Never more than 255 (`max_endpoints` is a byte).
            let max = config.bounds.max_endpoints.min(usize::from(u8::MAX));
            let (_, added) = remember(&mut self.symbols, 0..endpoints, endpoint, ts, max);
            self.endpoint_count += u8::from(added);
        }
        if let Some(agent) = observation.user_agent {
            let max = config.bounds.max_user_agents;
            let agents = usize::from(self.endpoint_count)..self.symbols.len();
            remember(&mut self.symbols, agents, agent, ts, max);
        }
        self.rate.record(ts.minute(), config.bounds.rate_alpha)
    }
}

/// Counts `key` in the bounded list `all[range]`, replacing its least recently seen entry
/// when full, else inserting it at the range's end. Returns the key's last use before this
/// one (`None` when it was not in the list) and whether the list grew.
fn remember<T: Copy + PartialEq>(
    all: &mut Box<[Seen<T>]>,
    range: std::ops::Range<usize>,
    key: T,
    ts: Timestamp,
    max: usize,
) -> (Option<Timestamp>, bool) {
    let end = range.end;
    let list = &mut all[range];
    if let Some(seen) = list.iter_mut().find(|seen| seen.key == key) {
        let previous = seen.last_seen();
        seen.see(ts);
        return (Some(previous), false);
    }
    let entry = Seen::new(key, 1, ts);
    if list.len() < max {
        let mut grown = Vec::with_capacity(all.len() + 1);
        grown.extend_from_slice(&all[..end]);
        grown.push(entry);
        grown.extend_from_slice(&all[end..]);
        *all = grown.into_boxed_slice();
        return (None, true);
    }
    if let Some(oldest) = list.iter_mut().min_by_key(|seen| (seen.second, seen.count)) {
        *oldest = entry;
    }
    (None, false)
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
    leak: &'a Option<Box<Leak>>,
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
    leak: Option<Box<Leak>>,
    owner: Option<Symbol>,
    allowed: ZoneSet,
    allowed_from: AllowedFrom,
    seen_zones: ZoneSet,
    last_zone: Option<(ZoneId, Timestamp)>,
    networks: Box<[Seen<Network>]>,
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
            revoked_at: self.revoked_at,
            leak: &self.leak,
            owner: self.owner,
            allowed: self.allowed,
            allowed_from: self.allowed_from,
            seen_zones: self.seen_zones,
            last_zone: self.last_zone(),
            networks: &self.networks,
            endpoints: self.endpoints(),
            user_agents: self.user_agents(),
            rate: self.rate,
            inherited_from: self.inherited_from,
            novel_uses: self.novel_uses.as_deref().map(Vec::as_slice),
        }
        .serialize(serializer)
    }
}

impl TryFrom<CredentialForm> for CredentialState {
    type Error = String;

    fn try_from(form: CredentialForm) -> Result<Self, String> {
        if form.endpoints.len() > usize::from(u8::MAX) {
            return Err(format!(
                "{} endpoints in one credential's record; at most 255 are kept",
                form.endpoints.len()
            ));
        }
        let mut state = CredentialState {
            accesses: form.accesses,
            first_seen: form.first_seen,
            last_seen: form.last_seen,
            issued_at: form.issued_at,
            expires_at: form.expires_at,
            revoked_at: form.revoked_at,
            leak: form.leak,
            owner: form.owner,
            allowed: form.allowed,
            allowed_from: form.allowed_from,
            seen_zones: form.seen_zones,
            last_zone: form.last_zone.map_or(ZoneId::UNKNOWN, |(zone, _)| zone),
            last_zone_at: form.last_zone.map(|(_, at)| at),
            networks: form.networks,
            rate: form.rate,
            inherited_from: form.inherited_from,
            novel_uses: form.novel_uses.map(Box::new),
            ..CredentialState::default()
        };
        state.set_endpoints_and_user_agents(&form.endpoints, &form.user_agents);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_fits_its_allocator_chunk() {
        // glibc hands out chunks of 16n bytes with 8 of them its own: 152 bytes are a 160-byte
        // chunk, 153 would take 176 (BENCHMARKS.md, section 4).
        assert!(std::mem::size_of::<CredentialState>() <= 152);
    }

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
            allowed_from: state.allowed_from,
            seen_zones: state.seen_zones,
            last_zone: state.last_zone(),
            networks: state.networks.to_vec(),
            endpoints: state.endpoints().to_vec(),
            user_agents: state.user_agents().to_vec(),
            rate: state.rate,
            inherited_from: None,
            novel_uses: state.novel_uses.as_deref().map(Vec::as_slice),
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
        let mut list: Box<[Seen<u32>]> = Box::default();
        for (i, key) in [1, 2, 3].into_iter().enumerate() {
            let all = 0..list.len();
            remember(&mut list, all, key, Timestamp::from_secs(i as i64), 2);
        }
        let keys: Vec<_> = list.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![3, 2]);
        remember(&mut list, 0..2, 2, Timestamp::from_secs(10), 2);
        assert_eq!(list.iter().find(|s| s.key == 2).unwrap().count, 2);
        assert_eq!(list.len(), 2);
    }
}
