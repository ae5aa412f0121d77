//! One credential's record: lifecycle times, zones, recent networks and endpoints, call rate.
//!
//! Bounded by construction: at most `max_networks` networks and `max_endpoints` endpoints are
//! kept, the least recently seen replaced first, and strings are interned symbols. Detectors
//! read the record as it was *before* the event; [`CredentialState::apply`] then folds the
//! event in, in event time.

use std::cmp::Reverse;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::event::Kind;
use crate::state::rate::RateBaseline;
pub use crate::state::record::CredentialState;
use crate::state::{Names, Observation, Symbol};
use crate::time::Timestamp;
use crate::zones::{Network, Prefix48, ZoneId, ZoneSet};

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

/// Something seen repeatedly, as a record reads it out: how often and when last, to the
/// minute.
///
/// A record packs each of these into an [`Entry`]: the count in 16 bits (saturating at
/// 65,535) and the time as minutes before the record's list minute in 16 bits, so that an
/// endpoint's entry is 8 bytes. The times only decide what a baseline forgets (after days)
/// and which entry a full list replaces, and the counts are evidence. Serialized with the
/// count and a whole timestamp, as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<T> {
    pub key: T,
    pub count: u32,
    minute: i64,
    /// Read from an entry as old as an entry gets ([`MAX_ENTRY_AGE_MINUTES`]): last seen then
    /// or before.
    aged_out: bool,
}

/// The most a [`Seen`] counts.
pub const MAX_SEEN_COUNT: u32 = u16::MAX as u32;

/// The oldest an entry's time can be, in minutes before its record's list minute (45 days
/// and a half). `[state] forget_after` is at most 45 days, so an entry this old is forgotten
/// whatever its exact age.
pub const MAX_ENTRY_AGE_MINUTES: i64 = u16::MAX as i64;

impl<T> Seen<T> {
    /// A sighting: `count` (at most [`MAX_SEEN_COUNT`]) times, last at `last_seen` (to the
    /// minute, floor).
    pub fn new(key: T, count: u32, last_seen: Timestamp) -> Seen<T> {
        Seen {
            key,
            count: count.min(MAX_SEEN_COUNT),
            minute: last_seen.minute(),
            aged_out: false,
        }
    }

    /// When it was seen last, to the minute (floor).
    pub fn last_seen(&self) -> Timestamp {
        Timestamp::from_minutes(self.minute)
    }

    /// Older than an entry can tell: [`last_seen`](Self::last_seen) is then the latest it
    /// can have been.
    pub fn aged_out(&self) -> bool {
        self.aged_out
    }

    /// Still remembered at `now`: seen within `forget_after`. An aged-out sighting never is
    /// (`forget_after` is shorter than an entry's reach), even for an event older than the
    /// record's latest use.
    pub fn is_fresh(&self, now: Timestamp, forget_after: crate::time::Period) -> bool {
        !self.aged_out && now.since(self.last_seen()) <= forget_after
    }

    /// The same sighting under another key.
    fn keyed<U>(&self, key: U) -> Seen<U> {
        Seen {
            key,
            count: self.count,
            minute: self.minute,
            aged_out: self.aged_out,
        }
    }
}

/// A [`Seen`] as a record packs it: its key, its count and its age in minutes before the
/// record's list minute ([`CredentialState::list_minute`]), each saturating at 65,535. 8 bytes
/// for a symbol or an IPv4 network, 10 for an IPv6 /48.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry<K> {
    pub(super) key: K,
    count: u16,
    age: u16,
}

/// Minutes from `minute` to `list_minute`, within an entry's age.
fn age_of(minute: i64, list_minute: i64) -> u16 {
    list_minute
        .saturating_sub(minute)
        .clamp(0, MAX_ENTRY_AGE_MINUTES) as u16
}

impl<K: Copy> Entry<K> {
    fn pack<T>(seen: &Seen<T>, key: K, list_minute: i64) -> Entry<K> {
        Entry {
            key,
            count: seen.count.min(MAX_SEEN_COUNT) as u16,
            age: age_of(seen.minute, list_minute),
        }
    }

    fn read<T>(&self, key: T, list_minute: i64) -> Seen<T> {
        Seen {
            key,
            count: u32::from(self.count),
            minute: list_minute - i64::from(self.age),
            aged_out: i64::from(self.age) == MAX_ENTRY_AGE_MINUTES,
        }
    }

    /// One more sighting, `age` minutes before the list minute.
    fn see(&mut self, age: u16) {
        self.count = self.count.saturating_add(1);
        self.age = self.age.min(age);
    }

    /// The entry a full list gives up first sorts first: the least recently seen, then the
    /// least often.
    fn staleness(&self) -> (Reverse<u16>, u16) {
        (Reverse(self.age), self.count)
    }

    /// The list minute moved `by` minutes later (earlier when negative).
    fn age_by(&mut self, by: i64) {
        let by = by.clamp(-MAX_ENTRY_AGE_MINUTES, MAX_ENTRY_AGE_MINUTES);
        self.age = (i64::from(self.age) + by).clamp(0, MAX_ENTRY_AGE_MINUTES) as u16;
    }
}

/// A record's endpoints or user agents, read out.
#[derive(Clone)]
pub struct Sightings<'a, K> {
    entries: std::slice::Iter<'a, Entry<K>>,
    list_minute: i64,
}

impl<K: Copy> Iterator for Sightings<'_, K> {
    type Item = Seen<K>;

    fn next(&mut self) -> Option<Seen<K>> {
        let entry = self.entries.next()?;
        Some(entry.read(entry.key, self.list_minute))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<K: Copy> ExactSizeIterator for Sightings<'_, K> {}

/// A list of sightings that can be searched by key without reading the other entries' times
/// and counts: what the novelty detectors ask of every access.
pub trait SeenList<T>: ExactSizeIterator<Item = Seen<T>> + Clone {
    /// Calls `visit` with each sighting of `key` in list order (a record keeps at most one
    /// per key), until it breaks.
    fn each_of(&self, key: T, visit: impl FnMut(Seen<T>) -> ControlFlow<()>) -> ControlFlow<()>;
}

impl<K: Copy + PartialEq> SeenList<K> for Sightings<'_, K> {
    #[inline]
    fn each_of(
        &self,
        key: K,
        mut visit: impl FnMut(Seen<K>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for entry in self.entries.as_slice() {
            if entry.key == key {
                visit(entry.read(key, self.list_minute))?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// A record's networks, read out: the IPv4 ones, then the IPv6 ones.
#[derive(Clone)]
pub struct Networks<'a> {
    v4: Sightings<'a, u32>,
    v6: Sightings<'a, Prefix48>,
}

impl Iterator for Networks<'_> {
    type Item = Seen<Network>;

    fn next(&mut self) -> Option<Seen<Network>> {
        if let Some(seen) = self.v4.next() {
            return Some(seen.keyed(Network::V4(seen.key)));
        }
        self.v6.next().map(|seen| seen.keyed(Network::V6(seen.key)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.v4.len() + self.v6.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for Networks<'_> {}

impl SeenList<Network> for Networks<'_> {
    /// Only the list of the key's family is searched.
    #[inline]
    fn each_of(
        &self,
        key: Network,
        mut visit: impl FnMut(Seen<Network>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        match key {
            Network::V4(prefix) => self.v4.each_of(prefix, |seen| visit(seen.keyed(key))),
            Network::V6(prefix) => self.v6.each_of(prefix, |seen| visit(seen.keyed(key))),
        }
    }
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
/// dereferences to them) laid out like a plain struct's fields. 80 bytes: what not every
/// credential has (an expiry, an inherited baseline's lineage, and behind one pointer a leak
/// report, a revocation and novel uses) are optional parts of the record's block, held only
/// where set (see `record.rs`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Fields {
    /// Access events seen (saturating).
    pub accesses: u32,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    /// The owner from issuance, else the principal last seen using it.
    pub owner: Option<Symbol>,
    pub allowed: ZoneSet,
    pub seen_zones: ZoneSet,
    /// Time of the latest access, for `concurrent_zones` ([`CredentialState::last_zone`]).
    pub(super) last_zone_at: Option<Timestamp>,
    /// The call rate. Its minute is also the one the record's list entries count their ages
    /// back from ([`CredentialState::list_minute`]): only `apply` moves it, ageing them.
    pub rate: RateBaseline,
    /// Where the allowed zones come from ([`CredentialState::allowed_from`]).
    pub(super) allowed_from: AllowedFrom,
    /// The zone of the latest access, when `last_zone_at` is set.
    pub(super) last_zone: ZoneId,
}

/// What few credentials have, boxed so that the others pay nothing for it (the record holds
/// the pointer only when set).
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Rare {
    leak: Option<Leak>,
    revoked_at: Option<Timestamp>,
    /// Recent uses from new networks or zones after the baseline was armed, oldest first (at
    /// most [`MAX_NOVEL_USES`]).
    novel_uses: Vec<NovelUse>,
}

impl CredentialState {
    /// The leak report the credential got (the earliest one).
    pub fn leak(&self) -> Option<&Leak> {
        self.rare().and_then(|rare| rare.leak.as_ref())
    }

    pub fn set_leak(&mut self, leak: Option<Leak>) {
        if leak.is_some() || self.leak().is_some() {
            self.change_rare(|rare| rare.leak = leak);
        }
    }

    /// When it was revoked (the earliest revocation).
    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.rare().and_then(|rare| rare.revoked_at)
    }

    pub fn set_revoked_at(&mut self, at: Option<Timestamp>) {
        if at.is_some() || self.revoked_at().is_some() {
            self.change_rare(|rare| rare.revoked_at = at);
        }
    }

    /// Recent uses from new networks or zones after the baseline was armed, oldest first (at
    /// most [`MAX_NOVEL_USES`]).
    pub fn novel_uses(&self) -> &[NovelUse] {
        self.rare().map_or(&[], |rare| &rare.novel_uses)
    }

    pub fn set_novel_uses(&mut self, uses: Vec<NovelUse>) {
        if !uses.is_empty() || !self.novel_uses().is_empty() {
            self.change_rare(|rare| rare.novel_uses = uses);
        }
    }

    /// Bytes the rare part holds.
    fn rare_bytes(&self) -> usize {
        self.rare().map_or(0, |rare| {
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
        if let Some(lineage) = self.inherited_from() {
            visit(Names::Principals, lineage);
        }
        for seen in self.endpoints() {
            visit(Names::Endpoints, seen.key);
        }
        for seen in self.user_agents() {
            visit(Names::UserAgents, seen.key);
        }
    }

    /// The minute the lists' ages count back from: the rate baseline's current minute, the
    /// latest minute with a recorded access (see [`Entry`]).
    pub(super) fn list_minute(&self) -> i64 {
        i64::from(self.rate.minute)
    }

    /// The networks used from: IPv4, then IPv6, each least recently added first.
    pub fn networks(&self) -> Networks<'_> {
        Networks {
            v4: self.sightings(self.v4_entries()),
            v6: self.sightings(self.v6_entries()),
        }
    }

    /// The endpoints called, interned.
    pub fn endpoints(&self) -> Sightings<'_, Symbol> {
        self.sightings(self.endpoint_entries())
    }

    /// The user agents seen, by product, interned.
    pub fn user_agents(&self) -> Sightings<'_, Symbol> {
        self.sightings(self.user_agent_entries())
    }

    fn sightings<'a, K>(&self, entries: &'a [Entry<K>]) -> Sightings<'a, K> {
        Sightings {
            entries: entries.iter(),
            list_minute: self.list_minute(),
        }
    }

    /// Replaces the three lists (each at most 255 entries long: longer lists are cut; counts
    /// and ages saturate as [`Entry`] says). A record with no recorded access yet takes its
    /// list minute from the latest sighting given.
    pub fn set_lists(
        &mut self,
        networks: &[Seen<Network>],
        endpoints: &[Seen<Symbol>],
        user_agents: &[Seen<Symbol>],
    ) {
        if self.rate.count == 0 {
            let latest = networks
                .iter()
                .map(|seen| seen.minute)
                .chain(endpoints.iter().map(|seen| seen.minute))
                .chain(user_agents.iter().map(|seen| seen.minute))
                .max();
            if let Some(latest) = latest {
                self.rate.minute = crate::state::rate::minute_of(latest);
            }
        }
        let minute = self.list_minute();
        let symbols = |list: &[Seen<Symbol>]| -> Vec<Entry<Symbol>> {
            list.iter()
                .map(|seen| Entry::pack(seen, seen.key, minute))
                .collect()
        };
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for seen in networks {
            match seen.key {
                Network::V4(bits) => v4.push(Entry::pack(seen, bits, minute)),
                Network::V6(prefix) => v6.push(Entry::pack(seen, prefix, minute)),
            }
        }
        self.set_entries(&symbols(endpoints), &symbols(user_agents), &v4, &v6);
    }

    /// Replaces the endpoints and user agents (at most 255 of each are kept, which
    /// `[bounds]` cannot exceed).
    pub fn set_endpoints_and_user_agents(
        &mut self,
        endpoints: &[Seen<Symbol>],
        user_agents: &[Seen<Symbol>],
    ) {
        let networks: Vec<_> = self.networks().collect();
        self.set_lists(&networks, endpoints, user_agents);
    }

    /// Replaces the networks (at most 255 are kept).
    pub fn set_networks(&mut self, networks: &[Seen<Network>]) {
        let endpoints: Vec<_> = self.endpoints().collect();
        let user_agents: Vec<_> = self.user_agents().collect();
        self.set_lists(networks, &endpoints, &user_agents);
    }

    /// Every entry's age, after the list minute moved `by` minutes.
    fn age_entries_by(&mut self, by: i64) {
        if by == 0 {
            return;
        }
        self.symbol_entries_mut()
            .iter_mut()
            .for_each(|e| e.age_by(by));
        self.v4_entries_mut().iter_mut().for_each(|e| e.age_by(by));
        self.v6_entries_mut().iter_mut().for_each(|e| e.age_by(by));
    }

    /// Counts `network` in the networks (at most `max` of them, IPv4 and IPv6 together),
    /// replacing the least recently seen when full. Returns the age it had when it was known.
    fn remember_network(&mut self, network: Network, age: u16, max: usize) -> Option<u16> {
        let found = match network {
            Network::V4(bits) => see(self.v4_entries_mut(), bits, age),
            Network::V6(prefix) => see(self.v6_entries_mut(), prefix, age),
        };
        if found.is_some() {
            return found;
        }
        let held = self.v4_entries().len() + self.v6_entries().len();
        if held < max.min(usize::from(u8::MAX)) {
            self.push_network(network, age);
            return None;
        }
        // Full: the least recently seen network gives way, the IPv4 one on a tie; it is
        // replaced in place when the new one is of its family.
        fn stalest<K: Copy>(entries: &[Entry<K>]) -> Option<(usize, (Reverse<u16>, u16))> {
            entries
                .iter()
                .enumerate()
                .map(|(index, entry)| (index, entry.staleness()))
                .min_by_key(|&(_, staleness)| staleness)
        }
        let (in_v4, index) = match (stalest(self.v4_entries()), stalest(self.v6_entries())) {
            (Some((index, a)), Some((_, b))) if a <= b => (true, index),
            (Some((index, _)), None) => (true, index),
            (_, Some((index, _))) => (false, index),
            (None, None) => return None,
        };
        match (network, in_v4) {
            (Network::V4(bits), true) => self.v4_entries_mut()[index] = Entry::new(bits, age),
            (Network::V6(prefix), false) => self.v6_entries_mut()[index] = Entry::new(prefix, age),
            (_, true) => {
                self.remove_v4(index);
                self.push_network(network, age);
            }
            (_, false) => {
                self.remove_v6(index);
                self.push_network(network, age);
            }
        }
        None
    }

    /// Appends `network`, first seen `age` minutes before the list minute, to its family's
    /// list.
    fn push_network(&mut self, network: Network, age: u16) {
        match network {
            Network::V4(bits) => self.push_v4(Entry::new(bits, age)),
            Network::V6(prefix) => self.push_v6(Entry::new(prefix, age)),
        }
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
        if let Some(mut lineage) = self.inherited_from() {
            apply(Names::Principals, &mut lineage);
            self.set_inherited_from(Some(lineage));
        }
        for entry in self.endpoint_entries_mut() {
            apply(Names::Endpoints, &mut entry.key);
        }
        for entry in self.user_agent_entries_mut() {
            apply(Names::UserAgents, &mut entry.key);
        }
        known
    }

    /// Still in its learning period at `now`: too few events, or too young.
    pub fn is_learning(&self, now: Timestamp, config: &Config) -> bool {
        let learning = &config.learning;
        if self.inherited_from().is_some() {
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
                    self.set_expires_at(event.expires_at);
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
        // The rate first: the lists count their ages from its minute.
        self.rate = parent.rate;
        let networks: Vec<_> = parent.networks().collect();
        let endpoints: Vec<_> = parent.endpoints().collect();
        let user_agents: Vec<_> = parent.user_agents().collect();
        self.set_lists(&networks, &endpoints, &user_agents);
        self.seen_zones = parent.seen_zones;
        if self.allowed_from() == AllowedFrom::Nothing
            && parent.allowed_from() == AllowedFrom::Learned
        {
            self.allowed = parent.allowed;
            self.set_allowed_from(AllowedFrom::Learned);
        }
        self.set_inherited_from(Some(inherited.lineage));
    }

    /// Keeps the newest [`MAX_NOVEL_USES`] uses from new places.
    fn record_novel_use(&mut self, novel: NovelUse) {
        self.change_rare(|rare| {
            if rare.novel_uses.len() == MAX_NOVEL_USES {
                rare.novel_uses.remove(0);
            }
            rare.novel_uses.push(novel);
        });
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
        // The lists count their entries' ages back from the rate's minute: move it first.
        let list_minute = self.list_minute();
        let on_time = self.rate.record(ts.minute(), config.bounds.rate_alpha);
        self.age_entries_by(self.list_minute() - list_minute);
        let age = age_of(ts.minute(), self.list_minute());
        // The network's previous last use, from the same pass that records this one.
        let new_network = observation.network.is_some_and(|network| {
            match self.remember_network(network, age, config.bounds.max_networks) {
                Some(previous) => {
                    let known = Entry::new((), previous).read((), self.list_minute());
                    !known.is_fresh(ts, config.bounds.forget_after)
                }
                None => true,
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
            if let Remembered::Missing(entry) =
                remember(self.endpoint_entries_mut(), endpoint, age, max)
            {
                self.push_endpoint(entry);
            }
        }
        if let Some(agent) = observation.user_agent {
            let max = config.bounds.max_user_agents;
            if let Remembered::Missing(entry) =
                remember(self.user_agent_entries_mut(), agent, age, max)
            {
                self.push_user_agent(entry);
            }
        }
        on_time
    }
}

/// What [`remember`] found.
#[derive(Debug, PartialEq)]
enum Remembered<K> {
    /// The key was in the list, this many minutes old.
    Known(u16),
    /// The list was full: the key took its least recently seen entry's place.
    Replaced,
    /// The list has room: this entry is to be appended.
    Missing(Entry<K>),
}

impl<K> Entry<K> {
    /// A first sighting, `age` minutes before the list minute.
    pub(super) fn new(key: K, age: u16) -> Entry<K> {
        Entry { key, count: 1, age }
    }
}

/// Counts `key` in `list` if it is there, returning the age it had.
fn see<K: Copy + PartialEq>(list: &mut [Entry<K>], key: K, age: u16) -> Option<u16> {
    let entry = list.iter_mut().find(|entry| entry.key == key)?;
    let previous = entry.age;
    entry.see(age);
    Some(previous)
}

/// Counts `key` in the bounded list (at most `max` long), replacing its least recently seen
/// entry when full.
fn remember<K: Copy + PartialEq>(
    list: &mut [Entry<K>],
    key: K,
    age: u16,
    max: usize,
) -> Remembered<K> {
    if let Some(previous) = see(list, key, age) {
        return Remembered::Known(previous);
    }
    let entry = Entry::new(key, age);
    if list.len() < max.min(usize::from(u8::MAX)) {
        return Remembered::Missing(entry);
    }
    if let Some(stalest) = list.iter_mut().min_by_key(|entry| entry.staleness()) {
        *stalest = entry;
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
    networks: Listed<Networks<'a>>,
    endpoints: Listed<Sightings<'a, Symbol>>,
    user_agents: Listed<Sightings<'a, Symbol>>,
    rate: RateBaseline,
    inherited_from: Option<Symbol>,
    novel_uses: Option<&'a [NovelUse]>,
}

/// A list read out of a record, written as a sequence (as the slice it once was).
struct Listed<I>(I);

impl<I> Serialize for Listed<I>
where
    I: Iterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
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
            expires_at: self.expires_at(),
            revoked_at: self.revoked_at(),
            leak: self.leak(),
            owner: self.owner,
            allowed: self.allowed,
            allowed_from: self.allowed_from(),
            seen_zones: self.seen_zones,
            last_zone: self.last_zone(),
            networks: Listed(self.networks()),
            endpoints: Listed(self.endpoints()),
            user_agents: Listed(self.user_agents()),
            rate: self.rate,
            inherited_from: self.inherited_from(),
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
        let fields = Fields {
            accesses: form.accesses,
            first_seen: form.first_seen,
            last_seen: form.last_seen,
            issued_at: form.issued_at,
            owner: form.owner,
            allowed: form.allowed,
            seen_zones: form.seen_zones,
            last_zone_at: form.last_zone.map(|(_, at)| at),
            rate: form.rate,
            allowed_from: form.allowed_from,
            last_zone: form.last_zone.map_or(ZoneId::UNKNOWN, |(zone, _)| zone),
        };
        let mut state = CredentialState::with_fields(fields);
        state.set_expires_at(form.expires_at);
        state.set_inherited_from(form.inherited_from);
        state.set_leak(form.leak);
        state.set_revoked_at(form.revoked_at);
        state.set_novel_uses(form.novel_uses.unwrap_or_default());
        state.set_lists(&form.networks, &form.endpoints, &form.user_agents);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `each_of` visits what a search of the whole list finds, in order, and stops where
        /// the visitor breaks: for networks of both families (duplicates too, which the
        /// record never makes itself), with a key of either family.
        #[test]
        fn each_of_visits_the_sightings_a_whole_search_finds(
            listed in prop::collection::vec((any::<bool>(), 0u64..4, 1u32..9, 0i64..100), 0..12),
            key in (any::<bool>(), 0u64..4),
            stop_after in 0usize..4,
        ) {
            let network = |(v6, bits): (bool, u64)| if v6 {
                Network::V6(Prefix48::from_bits(bits))
            } else {
                Network::V4(bits as u32)
            };
            let seen: Vec<Seen<Network>> = listed
                .iter()
                .map(|&(v6, bits, count, minute)| {
                    Seen::new(network((v6, bits)), count, Timestamp::from_minutes(minute))
                })
                .collect();
            let mut state = CredentialState::default();
            state.set_lists(&seen, &[], &[]);
            let key = network(key);
            let expected: Vec<Seen<Network>> = state.networks().filter(|s| s.key == key).collect();
            let mut visited = Vec::new();
            let flow = state.networks().each_of(key, |s| {
                visited.push(s);
                if visited.len() > stop_after { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            let stopped = expected.len() > stop_after;
            prop_assert_eq!(&visited[..], &expected[..expected.len().min(stop_after + 1)]);
            prop_assert_eq!(flow.is_break(), stopped);
        }
    }

    #[test]
    fn a_sighting_keeps_its_time_to_the_minute_and_is_written_as_before() {
        /// The layout `Seen` had when its time was a whole `Timestamp`.
        #[derive(Serialize)]
        struct Before {
            key: Network,
            count: u32,
            last_seen: Timestamp,
        }
        assert_eq!(std::mem::size_of::<Entry<Symbol>>(), 8);
        assert_eq!(std::mem::size_of::<Entry<u32>>(), 8);
        assert_eq!(std::mem::size_of::<Entry<Prefix48>>(), 10);
        let network = Network::of("203.0.113.9".parse().unwrap());
        let at = Timestamp::from_micros(1_772_323_259_999_999);
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
        // Counts saturate at 16 bits.
        assert_eq!(Seen::new(network, 1 << 20, at).count, MAX_SEEN_COUNT);
    }

    #[test]
    fn entries_age_from_the_list_minute_and_saturate() {
        use crate::time::Period;
        let list_minute = 29_538_720;
        let seen = Seen::new(7u32, 2, Timestamp::from_minutes(list_minute - 90));
        let entry = Entry::pack(&seen, seen.key, list_minute);
        assert_eq!(entry.age, 90);
        assert_eq!(entry.read(7u32, list_minute), seen);
        // The list minute moves on: the entry keeps its time.
        let mut moved = entry;
        moved.age_by(30);
        assert_eq!(moved.read(7u32, list_minute + 30), seen);
        // Older than 65,535 minutes reads as that old; newer than the list minute as it.
        let old = Seen::new(7u32, 1, Timestamp::from_minutes(list_minute - 100_000));
        let read = Entry::pack(&old, 7u32, list_minute).read(7u32, list_minute);
        assert_eq!(
            read.last_seen(),
            Timestamp::from_minutes(list_minute - 65_535)
        );
        let minute = Period::from_minutes(1);
        assert!(read.aged_out() && !read.is_fresh(read.last_seen(), minute));
        assert!(!seen.aged_out() && seen.is_fresh(seen.last_seen(), minute));
        let new = Seen::new(7u32, 1, Timestamp::from_minutes(list_minute + 5));
        let read = Entry::pack(&new, 7u32, list_minute).read(7u32, list_minute);
        assert_eq!(read.last_seen(), Timestamp::from_minutes(list_minute));
        moved.age_by(1 << 40);
        assert_eq!(moved.age, u16::MAX);
        moved.age_by(-(1 << 40));
        assert_eq!(moved.age, 0);
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
        let names = |list: Sightings<'_, Symbol>, interner: &crate::state::Interner| {
            let mut names: Vec<String> = list.map(|s| interner.name(s.key).to_string()).collect();
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
            networks: state.networks().collect(),
            endpoints: state.endpoints().collect(),
            user_agents: state.user_agents().collect(),
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
        let mut list: Vec<Entry<u32>> = Vec::new();
        for (age, key) in [(12, 1), (11, 2), (10, 3)] {
            if let Remembered::Missing(entry) = remember(&mut list, key, age, 2) {
                list.push(entry);
            }
        }
        let keys: Vec<_> = list.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![3, 2]);
        assert_eq!(remember(&mut list, 2, 5, 2), Remembered::Known(11));
        assert_eq!(list.iter().find(|s| s.key == 2).unwrap().count, 2);
        assert_eq!(remember(&mut list, 4, 4, 2), Remembered::Replaced);
        assert_eq!(list.iter().map(|s| s.key).collect::<Vec<_>>(), vec![4, 2]);
    }

    fn access(ts: Timestamp, ip: &str) -> crate::event::Event {
        let mut event = crate::event::Event::new(ts, Kind::Access, "AKIA".to_owned());
        event.source_ip = Some(ip.to_owned());
        event
    }

    #[test]
    fn networks_of_both_families_share_one_bound_and_keep_their_times() {
        let config = Config::parse("test", "[state]\nmax_networks = 3\n").unwrap();
        let store = crate::state::StateStore::new();
        let mut state = CredentialState::default();
        let start = 29_538_720;
        let uses = [
            (0, "10.0.1.5"),
            (1, "2001:db8:1::5"),
            (2, "10.0.2.5"),
            (3, "10.0.1.6"),
            // Full: the least recently seen (2001:db8:1::/48 at minute 1) gives way.
            (4, "10.0.3.5"),
            // Full again: 10.0.2.0/24 (minute 2) gives way to an IPv6 network.
            (70_000, "2001:db8:2::1"),
        ];
        for (minute, ip) in uses {
            let event = access(Timestamp::from_minutes(start + minute), ip);
            state.apply(&store.locate(&event, &config), &config);
        }
        let networks: Vec<(String, u32, Timestamp)> = state
            .networks()
            .map(|seen| (seen.key.to_string(), seen.count, seen.last_seen()))
            .collect();
        // The list minute is the last use's: minutes 3 and 4 are 69,996 and more minutes
        // older, as old as an entry gets.
        let oldest = Timestamp::from_minutes(start + 70_000 - 65_535);
        assert_eq!(
            networks,
            [
                ("10.0.1.0/24".to_owned(), 2, oldest),
                ("10.0.3.0/24".to_owned(), 1, oldest),
                (
                    "2001:db8:2::/48".to_owned(),
                    1,
                    Timestamp::from_minutes(start + 70_000)
                ),
            ]
        );
        assert_eq!(state.networks().len(), 3);
    }

    #[test]
    fn rare_facts_take_no_room_until_set() {
        let mut state = CredentialState::default();
        let empty = state.block_size();
        state.set_leak(None);
        state.set_novel_uses(Vec::new());
        state.set_expires_at(None);
        assert_eq!(state.block_size(), empty);
        state.set_revoked_at(Some(Timestamp::from_secs(5)));
        assert_eq!(state.revoked_at(), Some(Timestamp::from_secs(5)));
        assert!(state.leak().is_none());
        assert_eq!(state.block_size(), empty + 8, "a pointer to the rare part");
        state.set_expires_at(Some(Timestamp::from_secs(9)));
        state.set_inherited_from(Some(Symbol::from_index(4)));
        assert_eq!(state.block_size(), empty + 8 + 8 + 4);
        let copy = state.clone();
        state.set_revoked_at(None);
        assert_eq!(state.block_size(), empty + 12, "an emptied rare part goes");
        assert_eq!(copy.revoked_at(), Some(Timestamp::from_secs(5)));
        assert_eq!(
            (state.expires_at(), state.inherited_from()),
            (Some(Timestamp::from_secs(9)), Some(Symbol::from_index(4)))
        );
        state.set_expires_at(None);
        state.set_inherited_from(None);
        assert_eq!(state.block_size(), empty);
        assert_ne!(copy, state);
    }
}
