//! State: the per-credential baseline, updated in event time.
//!
//! [`StateStore`] owns every [`CredentialState`] (a sharded map keyed by credential id) and the
//! interners for endpoints and principals. The engine hands it one [`Observation`] at a time:
//! detectors read the state as it was before the event, then [`StateStore::observe`] folds
//! the event in, under the same map entry lock, so the two never interleave per credential.

mod compaction;
mod credential;
mod eviction;
mod interner;
mod partition;
pub mod rate;
mod record;
mod snapshot;
mod table;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dashmap::DashMap;

pub use compaction::{next_compaction, Compacted, MIN_COMPACTION_GROWTH};
pub use credential::{
    AllowedFrom, CredentialState, Fields, Leak, Networks, NovelUse, Seen, SeenList, Sightings,
    MAX_ENTRY_AGE_MINUTES, MAX_NOVEL_USES, MAX_SEEN_COUNT,
};
pub use eviction::Evicted;
pub use interner::{Interner, NameCache, Symbol};
pub use partition::{Absorbed, Home, Names};
pub use snapshot::{RestoreError, StoreSnapshot};

use crate::event::Event;
use crate::zones::{Network, ZoneId, ZoneSet};

/// An event placed in its zone, with its strings resolved to symbols: the input of state and
/// detectors.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub event: &'a Event,
    /// The parsed source address, if it parsed.
    pub ip: Option<IpAddr>,
    pub zone: ZoneId,
    pub network: Option<Network>,
    pub endpoint: Option<Symbol>,
    /// The user agent's product token (version stripped), interned.
    pub user_agent: Option<Symbol>,
    pub principal: Option<Symbol>,
    /// Issue events: the owner, else the principal.
    pub owner: Option<Symbol>,
    /// Issue events: `allowed_zones` resolved against the configured zones.
    pub declared_zones: ZoneSet,
    /// Access events: a leak report that covers this credential under another name: its owner
    /// (for example AWS's quarantine policy attached to the user, which covers all of that
    /// principal's keys), or its secret's hash reported before any log tied it to the credential.
    pub owner_leak: Option<Leak>,
    /// Issue events: the armed baseline of the previous credential of the same lineage, which
    /// the new credential starts from (see [`lineage`]).
    pub inherited: Option<Box<Inherited>>,
}

/// A baseline handed from one credential of a lineage to the next.
#[derive(Debug, Clone)]
pub struct Inherited {
    /// The lineage (interned in `principals`).
    pub lineage: Symbol,
    pub state: CredentialState,
}

/// The lineage of an issued credential: its owner, with the session name of an assumed-role
/// ARN dropped (`arn:aws:sts::1:assumed-role/web/i-1` → `arn:aws:sts::1:assumed-role/web`).
/// Consecutive credentials of one lineage (a user's rotated keys, a role's sessions, an
/// AppRole's tokens) serve the same workload, so the next starts from the last one's baseline.
pub fn lineage(owner: &str) -> &str {
    if owner.starts_with("arn:aws:sts::") && owner.contains(":assumed-role/") {
        if let Some(role_end) = owner
            .rfind('/')
            .filter(|&slash| owner[..slash].contains(":assumed-role/"))
        {
            return &owner[..role_end];
        }
    }
    owner
}

/// The product of a user agent: its first token without the version (`aws-cli/2.15.0 Python/3`
/// is `aws-cli`), so an upgrade is not a new agent.
pub fn product(user_agent: &str) -> &str {
    // The usual all-ASCII head, byte by byte. A vertical tab or a non-ASCII byte where the
    // token ends may be Unicode whitespace: the general path below decides.
    let bytes = user_agent.as_bytes();
    let odd = |b: u8| b == 0x0b || !b.is_ascii();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'/' || b.is_ascii_whitespace() || odd(b))
        .map_or(bytes.len(), |n| start + n);
    if !bytes.get(end).is_some_and(|&b| odd(b)) {
        return trim_token(&user_agent[start..end]);
    }
    product_of_any(user_agent)
}

/// `token.trim_matches(TRIMMED)`, byte by byte: the trimmed characters are ASCII, and an ASCII
/// byte is a whole character in UTF-8, so no character needs decoding.
fn trim_token(token: &str) -> &str {
    let kept = |b: &u8| !TRIMMED.contains(&char::from(*b));
    let bytes = token.as_bytes();
    let start = bytes.iter().position(kept).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(kept).map_or(start, |last| last + 1);
    &token[start..end]
}

/// [`product`] for any text: Unicode whitespace, char by char.
fn product_of_any(user_agent: &str) -> &str {
    let first = user_agent.split_whitespace().next().unwrap_or("");
    first
        .split('/')
        .next()
        .unwrap_or(first)
        .trim_matches(TRIMMED)
}

/// What a product token is trimmed of at either end.
const TRIMMED: [char; 3] = ['[', ']', '"'];

/// The hash of every map on the per-event path: foldhash, seeded at random per process like
/// std's SipHash and several times faster on short keys. Credential ids and names come from
/// logs an attacker may shape; the random seed keeps colliding keys from being computed
/// offline. foldhash calls its resistance "minimal": weaker than SipHash's against an attacker
/// who can time the process for long.
pub type Hashing = foldhash::fast::RandomState;

/// Every credential's state, plus the interned names they refer to.
#[derive(Debug, Default)]
pub struct StateStore {
    /// Each record one allocation holding its id, the map's slot its pointer (see `record.rs`
    /// and `table.rs`).
    credentials: table::Table,
    /// Leak reports that name an owner rather than one credential, by owner. Added to only
    /// through [`StateStore::add_owner_leak`].
    owner_leaks: DashMap<Symbol, Leak, Hashing>,
    /// Whether `owner_leaks` ever held a report: read on every access event, where the map's
    /// own `is_empty` would lock each of its shards in turn (2 atomic operations a shard, 8
    /// shards on 2 cores, more on larger machines).
    any_owner_leak: AtomicBool,
    /// The latest credential issued in each lineage.
    lineages: DashMap<Symbol, Box<str>, Hashing>,
    /// Secret hashes logs carried (`secret_hash`), to the credential they belong to.
    secret_hashes: DashMap<Box<str>, Box<str>, Hashing>,
    /// The sum of the records' [`CredentialState::approx_bytes`], kept as they change (a
    /// wrapping sum of differences).
    bytes: AtomicUsize,
    pub endpoints: Interner,
    pub principals: Interner,
    pub user_agents: Interner,
}

impl StateStore {
    pub fn new() -> Self {
        StateStore::default()
    }

    /// Runs `inspect` on the credential's state before the event, then applies `update`.
    /// Both run under the entry's lock. Returns what `inspect` returned.
    pub fn with_credential<R>(
        &self,
        credential: &str,
        inspect: impl FnOnce(&CredentialState) -> R,
        update: impl FnOnce(&mut CredentialState),
    ) -> R {
        self.credentials.upsert(credential, |entry, new| {
            let before = if new { 0 } else { entry.approx_bytes() };
            let result = inspect(entry);
            update(entry);
            let after = entry.approx_bytes();
            // Most events change no list's length: no atomic write then.
            if after != before {
                self.bytes
                    .fetch_add(after.wrapping_sub(before), Ordering::Relaxed);
            }
            result
        })
    }

    /// Stores a record under `id`, keeping the byte count (a record it replaces is counted
    /// out).
    fn put(&self, id: &str, mut state: CredentialState) {
        state.set_id(id);
        self.count_bytes(&state, true);
        if let Some(replaced) = self.credentials.insert(id, state) {
            self.count_bytes(&replaced, false);
        }
    }

    /// Adds or removes a record's bytes from the running sum.
    fn count_bytes(&self, state: &CredentialState, added: bool) {
        let bytes = state.approx_bytes();
        if added {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// The credential a secret hash (`sha256:…`, `hmac-sha256:…`) was seen with in the logs.
    pub fn credential_of_secret(&self, hash: &str) -> Option<String> {
        self.secret_hashes.get(hash).map(|id| id.to_string())
    }

    /// A copy of one credential's state.
    pub fn get(&self, credential: &str) -> Option<CredentialState> {
        self.credentials.get(credential, CredentialState::clone)
    }

    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    /// Calls `visit` on every credential, in no particular order. Each entry is locked only
    /// while it is visited.
    pub fn for_each(&self, mut visit: impl FnMut(&str, &CredentialState)) {
        self.credentials
            .for_each(|record| visit(record.id(), record));
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }
}

/// [`NameCache`]s in front of a store's three interners, for the thread that runs the engine.
#[derive(Debug)]
pub struct NameCaches {
    endpoints: NameCache,
    principals: NameCache,
    /// Keyed by the whole user agent, holding its product token's symbol.
    user_agents: NameCache,
}

impl NameCaches {
    /// Slots per cache: a demo day of 1,000 credentials names 717 principals, 41 endpoints
    /// and 6 user agents; 4,096 slots of 32 bytes are 128 KiB, which stay in a core's L2 with
    /// the names they point to. With many more names than slots most lookups miss, and a
    /// cache that seldom hits sends its lookups straight to the interner for a while (see
    /// [`NameCache`]).
    pub const SLOTS: usize = 4096;
}

impl Default for NameCaches {
    fn default() -> Self {
        NameCaches {
            endpoints: NameCache::new(Self::SLOTS),
            principals: NameCache::new(Self::SLOTS),
            user_agents: NameCache::new(Self::SLOTS),
        }
    }
}

impl StateStore {
    /// The zones stage: places an event in its zone and resolves its strings to symbols.
    /// (A convenience for tests; the engine keeps its caches from event to event and calls
    /// [`StateStore::locate_with`].)
    pub fn locate<'a>(&self, event: &'a Event, config: &crate::config::Config) -> Observation<'a> {
        self.locate_with(event, config, &mut NameCaches::default())
    }

    /// [`StateStore::locate`], resolving names through `names` first.
    pub fn locate_with<'a>(
        &self,
        event: &'a Event,
        config: &crate::config::Config,
        names: &mut NameCaches,
    ) -> Observation<'a> {
        let ip = event.source_ip.as_deref().and_then(crate::zones::parse_ip);
        let zone = config.zones.classify(ip, event.zone.as_deref());
        let principal = event
            .principal
            .as_deref()
            .map(|p| names.principals.intern(&self.principals, p));
        let mut owner_leak = match (event.kind, principal) {
            (crate::event::Kind::Access, Some(principal))
                if self.any_owner_leak.load(Ordering::Relaxed) =>
            {
                self.owner_leaks.get(&principal).map(|leak| leak.clone())
            }
            _ => None,
        };
        if let Some(hash) = event.secret_hash.as_deref() {
            if event.kind != crate::event::Kind::Leak && hash != event.credential {
                let bound = self
                    .secret_hashes
                    .get(hash)
                    .is_some_and(|credential| **credential == *event.credential);
                if !bound {
                    self.secret_hashes
                        .insert(hash.into(), event.credential.as_str().into());
                }
                // A leak reported by the secret before any log tied it to this credential.
                if owner_leak.is_none() && event.kind == crate::event::Kind::Access {
                    owner_leak = self
                        .credentials
                        .get(hash, |state| state.leak().cloned())
                        .flatten();
                }
            }
        }
        if event.kind == crate::event::Kind::Leak {
            if let Some(owner) = event
                .owner
                .as_deref()
                .map(|o| names.principals.intern(&self.principals, o))
            {
                self.add_owner_leak(
                    owner,
                    Leak {
                        at: event.ts,
                        source: event.leak_source.clone(),
                        url: event.leak_url.clone(),
                    },
                );
            }
        }
        let inherited = match (event.kind, event.owner.as_deref()) {
            (crate::event::Kind::Issue, Some(owner)) if config.learning.inherit => {
                self.inherit(event, self.principals.intern(lineage(owner)), config)
            }
            _ => None,
        };
        let (owner, declared_zones) = if event.kind == crate::event::Kind::Issue {
            let owner = event
                .owner
                .as_deref()
                .map(|o| names.principals.intern(&self.principals, o))
                .or(principal);
            let zones = event
                .allowed_zones
                .iter()
                .filter_map(|name| config.zones.id(name))
                .collect();
            (owner, zones)
        } else {
            (None, ZoneSet::EMPTY)
        };
        Observation {
            event,
            ip,
            zone,
            network: ip.map(Network::of),
            endpoint: event
                .endpoint
                .as_deref()
                .map(|e| names.endpoints.intern(&self.endpoints, e)),
            // Cached by the whole agent, so a hit skips finding its product token.
            user_agent: event.user_agent.as_deref().and_then(|agent| {
                names
                    .user_agents
                    .intern_derived(&self.user_agents, agent, |agent| {
                        Some(product(agent)).filter(|p| !p.is_empty())
                    })
            }),
            principal,
            owner,
            declared_zones,
            owner_leak,
            inherited,
        }
    }

    /// Records a leak reported by `owner`, keeping the earliest report per owner.
    fn add_owner_leak(&self, owner: Symbol, report: Leak) {
        self.any_owner_leak.store(true, Ordering::Relaxed);
        self.owner_leaks
            .entry(owner)
            .and_modify(|held| {
                if report.at < held.at {
                    *held = report.clone();
                }
            })
            .or_insert(report);
    }

    /// The baseline an issued credential inherits from the lineage's previous credential, if
    /// that one is armed at the issuance; records the new credential as the lineage's latest.
    /// Runs before the new credential's entry is locked (no two entries are held at once).
    fn inherit(
        &self,
        event: &Event,
        lineage: Symbol,
        config: &crate::config::Config,
    ) -> Option<Box<Inherited>> {
        let previous = self
            .lineages
            .insert(lineage, event.credential.as_str().into())?;
        if *previous == *event.credential {
            return None;
        }
        let state = self
            .credentials
            .get(&previous, |state| {
                let armed = !state.is_learning(event.ts, config) && state.accesses > 0;
                armed.then(|| state.clone())
            })
            .flatten()?;
        Some(Box::new(Inherited { lineage, state }))
    }
}

impl StateStore {
    /// A credential's state as JSON, names resolved: what `GET /v1/credentials/{id}` shows.
    pub fn view(
        &self,
        credential: &str,
        config: &crate::config::Config,
    ) -> Option<serde_json::Value> {
        let state = self.get(credential)?;
        let zones = |set: ZoneSet| -> Vec<String> {
            config
                .zones
                .names_of(set)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let networks: Vec<serde_json::Value> = state
            .networks()
            .map(|seen| serde_json::json!({"network": seen.key.to_string(), "count": seen.count, "last_seen": seen.last_seen()}))
            .collect();
        let endpoints: Vec<serde_json::Value> = state
            .endpoints()
            .map(|seen| serde_json::json!({"endpoint": &*self.endpoints.name(seen.key), "count": seen.count, "last_seen": seen.last_seen()}))
            .collect();
        let user_agents: Vec<serde_json::Value> = state
            .user_agents()
            .map(|seen| serde_json::json!({"user_agent": &*self.user_agents.name(seen.key), "count": seen.count, "last_seen": seen.last_seen()}))
            .collect();
        let learning = state
            .last_seen
            .is_none_or(|last| state.is_learning(last, config));
        Some(serde_json::json!({
            "credential": credential,
            "owner": state.owner.map(|o| self.principals.name(o).to_string()),
            "accesses": state.accesses,
            "first_seen": state.first_seen,
            "last_seen": state.last_seen,
            "issued_at": state.issued_at,
            "expires_at": state.expires_at(),
            "revoked_at": state.revoked_at(),
            "leak": state.leak().map(|leak| serde_json::json!({"at": leak.at, "source": leak.source, "url": leak.url})),
            "allowed_zones": zones(state.allowed),
            "allowed_from": state.allowed_from().as_str(),
            "seen_zones": zones(state.seen_zones),
            "learning": learning,
            "inherited_from": state.inherited_from().map(|l| self.principals.name(l).to_string()),
            "recent_novel_uses": state.novel_uses().iter().map(|u| serde_json::json!({
                "time": u.at,
                "network": u.network.map(|n| n.to_string()),
                "zone": config.zones.name(u.zone),
                "new_zone": u.new_zone,
            })).collect::<Vec<_>>(),
            "networks": networks,
            "endpoints": endpoints,
            "user_agents": user_agents,
            "rate": {
                "mean_per_active_minute": state.rate.mean,
                "std_dev": state.rate.variance.max(0.0).sqrt(),
                "active_minutes": state.rate.minutes,
            },
        }))
    }

    /// Estimated bytes of the credential records (keys, records and their lists), what
    /// `[state] max_state_mib` bounds; kept as records change, so reading it costs nothing.
    /// Not counted: the map's spare capacity, the allocator's rounding, and the interned
    /// names, which the records share (resident memory is about a quarter more; BENCHMARKS.md,
    /// section 4).
    pub fn approx_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// [`StateStore::approx_bytes`] summed afresh over every record (for tests).
    pub fn recount_bytes(&self) -> usize {
        let mut bytes = 0;
        self.credentials
            .for_each(|record| bytes += record.approx_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{lineage, product, product_of_any, StateStore};
    use crate::config::Config;
    use crate::event::{Event, Kind};
    use crate::time::Timestamp;
    use proptest::prelude::*;

    #[test]
    fn a_leak_reported_by_owner_reaches_the_owners_uses_after_a_restore_and_an_absorb() {
        let config = Config::parse(
            "test",
            "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let at = Timestamp::from_secs(1_772_323_200);
        let mut leak = Event::new(at, Kind::Leak, "ghp_leaked");
        leak.owner = Some("mallory".into());
        let mut access = Event::new(at, Kind::Access, "AKIAOTHER");
        access.principal = Some("mallory".into());
        let reported = |store: &StateStore| store.locate(&access, &config).owner_leak.map(|l| l.at);

        let store = StateStore::new();
        assert_eq!(reported(&store), None, "nothing reported yet");
        store.locate(&leak, &config);
        assert_eq!(reported(&store), Some(at));

        let restored = StateStore::new();
        restored.restore(store.snapshot()).unwrap();
        assert_eq!(reported(&restored), Some(at), "from a checkpoint");

        let absorbed = StateStore::new();
        let share = store.shares(&[0]).remove(&0).unwrap();
        absorbed.absorb(share, 0).unwrap();
        assert_eq!(reported(&absorbed), Some(at), "from a partition's share");
    }

    proptest! {
        #[test]
        fn product_agrees_with_the_general_path(
            user_agent in r#"[ \t\x0b\u{a0}\u{2003}\u{85}a-z/\[\]"é.0-9]{0,16}"#,
        ) {
            // The byte fast path agrees with the general path it skips.
            prop_assert_eq!(product(&user_agent), product_of_any(&user_agent));
        }
    }

    #[test]
    fn product_is_the_first_token_without_its_version() {
        assert_eq!(product("aws-cli/2.15.0 Python/3.11.6"), "aws-cli");
        assert_eq!(product("  \"Boto3/1.34\" x"), "Boto3");
        assert_eq!(product("\u{a0}curl/8 x"), "curl");
        assert_eq!(product(""), "");
    }

    #[test]
    fn a_roles_sessions_share_a_lineage_and_other_owners_are_their_own() {
        assert_eq!(
            lineage("arn:aws:sts::123:assumed-role/web/i-0abc"),
            "arn:aws:sts::123:assumed-role/web"
        );
        assert_eq!(
            lineage("arn:aws:sts::123:assumed-role/path/web/i-0abc"),
            "arn:aws:sts::123:assumed-role/path/web"
        );
        assert_eq!(
            lineage("arn:aws:iam::123:user/bob"),
            "arn:aws:iam::123:user/bob"
        );
        assert_eq!(lineage("approle-billing"), "approle-billing");
    }
}
