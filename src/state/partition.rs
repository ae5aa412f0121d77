//! State by input partition: the store split into shares, one per input partition, and a
//! share merged into a store that may already hold others.
//!
//! `run` checkpoints each input partition on its own, so that a rebalance moves a partition's
//! credentials to the instance that takes the partition over. A credential belongs to the
//! partition of its latest event (its record's `home`); with input topics keyed by credential
//! id, that is the one partition its events arrive in.
//!
//! A share is a [`StoreSnapshot`] of the records homed in one partition, carrying only the
//! names those records use, numbered in name order (so equal content gives an equal share,
//! whatever order a store interned its names in). Absorbing a share interns its names into
//! the receiving store and rewrites its records' symbols, so shares written by different
//! instances merge. What belongs to no single partition (owner-wide leak reports; secret
//! hashes and lineages whose credential is no longer tracked) is copied into every share and
//! merged without repeats.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{CredentialState, Interner, Leak, RestoreError, StateStore, StoreSnapshot, Symbol};

/// An input partition, as a number given by whoever feeds the engine (`run` numbers the
/// partitions it is assigned). Replays leave every record at 0.
/// 16 bits, so that it packs beside a record's other small fields; `run` refuses a 65,537th
/// partition.
pub type Home = u16;

/// Which interner a symbol belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Endpoints,
    Principals,
    UserAgents,
}

/// What absorbing a share did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Absorbed {
    pub credentials: usize,
    /// Credentials the store already held: the record with the later activity was kept.
    pub conflicts: usize,
}

/// The names one share uses, renumbered.
#[derive(Default)]
struct Renumbering {
    used: [BTreeSet<Symbol>; 3],
    new: [HashMap<Symbol, Symbol>; 3],
    names: [Vec<String>; 3],
}

impl Names {
    /// Its position in per-interner arrays: endpoints, principals, user agents.
    pub fn index(self) -> usize {
        match self {
            Names::Endpoints => 0,
            Names::Principals => 1,
            Names::UserAgents => 2,
        }
    }
}

impl Renumbering {
    fn note(&mut self, names: Names, symbol: Symbol) {
        self.used[names.index()].insert(symbol);
    }

    /// Numbers the noted symbols in the order of their names.
    fn number(&mut self, store: &StateStore) {
        let interners: [&Interner; 3] = [&store.endpoints, &store.principals, &store.user_agents];
        for (index, interner) in interners.into_iter().enumerate() {
            let mut named: Vec<(String, Symbol)> = self.used[index]
                .iter()
                .map(|symbol| (interner.name(*symbol).to_string(), *symbol))
                .collect();
            named.sort_unstable();
            for (position, (name, symbol)) in named.into_iter().enumerate() {
                self.new[index].insert(symbol, Symbol::from_index(position));
                self.names[index].push(name);
            }
        }
    }

    fn renamed(&self, names: Names, symbol: Symbol) -> Option<Symbol> {
        self.new[names.index()].get(&symbol).copied()
    }
}

impl StateStore {
    /// The partition a tracked credential belongs to.
    pub fn home_of(&self, credential: &str) -> Option<Home> {
        self.credentials.get(credential, |state| state.home())
    }

    /// One share per partition in `homes`, each sorted like a [`StoreSnapshot`]. Records homed
    /// in other partitions are left out.
    pub fn shares(&self, homes: &[Home]) -> BTreeMap<Home, StoreSnapshot> {
        let wanted: HashSet<Home> = homes.iter().copied().collect();
        let mut records: BTreeMap<Home, Vec<(String, CredentialState)>> =
            homes.iter().map(|home| (*home, Vec::new())).collect();
        self.credentials.for_each(|record| {
            if wanted.contains(&record.home()) {
                if let Some(list) = records.get_mut(&record.home()) {
                    list.push((record.id().to_string(), record.clone()));
                }
            }
        });
        // Owned by one partition when their credential is tracked, else copied into all.
        let route = |credential: &str| self.home_of(credential);
        let mut secret_hashes: BTreeMap<Option<Home>, Vec<(String, String)>> = BTreeMap::new();
        for entry in self.secret_hashes.iter() {
            secret_hashes
                .entry(route(entry.value()))
                .or_default()
                .push((entry.key().to_string(), entry.value().to_string()));
        }
        let mut lineages: BTreeMap<Option<Home>, Vec<(Symbol, String)>> = BTreeMap::new();
        for entry in self.lineages.iter() {
            lineages
                .entry(route(entry.value()))
                .or_default()
                .push((*entry.key(), entry.value().to_string()));
        }
        let owner_leaks: Vec<(Symbol, Leak)> = self
            .owner_leaks
            .iter()
            .map(|entry| (*entry.key(), entry.value().clone()))
            .collect();

        let mut shares = BTreeMap::new();
        for (home, mut credentials) in records {
            let mut hashes: Vec<(String, String)> = [Some(home), None]
                .iter()
                .filter_map(|key| secret_hashes.get(key))
                .flatten()
                .cloned()
                .collect();
            hashes.sort_unstable();
            let mut lines: Vec<(Symbol, String)> = [Some(home), None]
                .iter()
                .filter_map(|key| lineages.get(key))
                .flatten()
                .cloned()
                .collect();
            let mut leaks = owner_leaks.clone();

            let mut numbering = Renumbering::default();
            for (_, state) in &mut credentials {
                state.rename(&mut |names, symbol| {
                    numbering.note(names, symbol);
                    Some(symbol)
                });
            }
            for (lineage, _) in &lines {
                numbering.note(Names::Principals, *lineage);
            }
            for (owner, _) in &leaks {
                numbering.note(Names::Principals, *owner);
            }
            numbering.number(self);
            for (_, state) in &mut credentials {
                state.rename(&mut |names, symbol| numbering.renamed(names, symbol));
                state.set_home(0);
            }
            for (lineage, _) in &mut lines {
                *lineage = numbering
                    .renamed(Names::Principals, *lineage)
                    .unwrap_or(*lineage);
            }
            for (owner, _) in &mut leaks {
                *owner = numbering
                    .renamed(Names::Principals, *owner)
                    .unwrap_or(*owner);
            }
            credentials.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            lines.sort_unstable_by_key(|(lineage, _)| *lineage);
            leaks.sort_unstable_by_key(|(owner, _)| *owner);
            let [endpoints, principals, user_agents] = numbering.names;
            shares.insert(
                home,
                StoreSnapshot {
                    endpoints,
                    principals,
                    user_agents,
                    credentials,
                    owner_leaks: leaks,
                    lineages: lines,
                    secret_hashes: hashes,
                },
            );
        }
        shares
    }

    /// Merges a share (from this instance or another) into the store, its records homed at
    /// `home`. A credential the store already tracks keeps whichever record saw activity
    /// later; owner-wide leaks keep the earliest report.
    pub fn absorb(&self, share: StoreSnapshot, home: Home) -> Result<Absorbed, RestoreError> {
        let intern = |interner: &Interner, names: &[String]| -> Vec<Symbol> {
            names.iter().map(|name| interner.intern(name)).collect()
        };
        let symbols = [
            intern(&self.endpoints, &share.endpoints),
            intern(&self.principals, &share.principals),
            intern(&self.user_agents, &share.user_agents),
        ];
        let renamed = |names: Names, symbol: Symbol| -> Option<Symbol> {
            symbols[names.index()].get(symbol.index()).copied()
        };
        let unknown = |what: &str| RestoreError::UnknownName {
            what: what.to_owned(),
        };
        // Every symbol is checked before any record is merged: a bad share merges nothing
        // (its names may be interned; names alone change no detection).
        let mut credentials = Vec::with_capacity(share.credentials.len());
        for (credential, mut state) in share.credentials {
            if !state.rename(&mut |names, symbol| renamed(names, symbol)) {
                return Err(unknown(&format!("credential {credential}")));
            }
            state.set_home(home);
            credentials.push((credential, state));
        }
        let owner_leaks = share
            .owner_leaks
            .into_iter()
            .map(|(owner, leak)| Some((renamed(Names::Principals, owner)?, leak)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unknown("an owner-wide leak"))?;
        let lineages = share
            .lineages
            .into_iter()
            .map(|(lineage, credential)| Some((renamed(Names::Principals, lineage)?, credential)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unknown("a lineage"))?;

        let mut absorbed = Absorbed::default();
        for (credential, state) in credentials {
            absorbed.credentials += 1;
            let held = self
                .credentials
                .get(&credential, |held| held.last_activity());
            if let Some(held) = held {
                absorbed.conflicts += 1;
                if state.last_activity() <= held {
                    continue;
                }
            }
            self.put(&credential, state);
        }
        for (owner, leak) in owner_leaks {
            self.add_owner_leak(owner, leak);
        }
        for (lineage, credential) in lineages {
            self.lineages
                .entry(lineage)
                .or_insert_with(|| credential.into());
        }
        for (hash, credential) in share.secret_hashes {
            self.secret_hashes
                .entry(hash.into())
                .or_insert_with(|| credential.into());
        }
        Ok(absorbed)
    }

    /// Drops every record homed at `home` (a partition this instance no longer owns), with
    /// the secret hashes and lineages that pointed at them. Returns the credentials that went.
    pub fn forget_home(&self, home: Home) -> HashSet<Box<str>> {
        let gone: HashSet<Box<str>> = self
            .credentials
            .remove_where(|record| record.home() == home)
            .into_iter()
            .map(|state| {
                self.count_bytes(&state, false);
                Box::from(state.id())
            })
            .collect();
        self.secret_hashes
            .retain(|_, credential| !gone.contains(credential));
        self.lineages
            .retain(|_, credential| !gone.contains(credential));
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Fields, Seen};
    use crate::time::Timestamp;

    /// Inserts a record as the engine would, keeping the byte count.
    fn put(store: &StateStore, credential: &str, state: CredentialState) {
        store.put(credential, state);
    }

    fn seen(key: Symbol, micros: i64) -> Seen<Symbol> {
        Seen::new(key, 1, Timestamp::from_micros(micros))
    }

    /// A store whose interners were filled in another order than `other` would fill them.
    fn store(order: &[&str]) -> StateStore {
        let store = StateStore::new();
        for name in order {
            store.endpoints.intern(name);
            store.principals.intern(name);
        }
        let record = |owner: &str, endpoint: &str, home: Home, at: i64| {
            let mut state = CredentialState::with_fields(Fields {
                owner: Some(store.principals.intern(owner)),
                last_seen: Some(Timestamp::from_micros(at)),
                accesses: 1,
                ..Fields::default()
            });
            state.set_home(home);
            state.set_endpoints_and_user_agents(
                &[seen(store.endpoints.intern(endpoint), at)],
                &[seen(store.user_agents.intern("aws-cli"), at)],
            );
            state
        };
        put(&store, "AKIAONE", record("alice", "s3:GetObject", 1, 10));
        put(&store, "AKIATWO", record("bob", "ec2:RunInstances", 2, 20));
        put(&store, "AKIATHREE", record("carol", "s3:GetObject", 2, 30));
        store
            .secret_hashes
            .insert("sha256:aa".into(), "AKIATWO".into());
        store
            .secret_hashes
            .insert("sha256:gone".into(), "AKIAEVICTED".into());
        store.add_owner_leak(
            store.principals.intern("mallory"),
            Leak {
                at: Timestamp::from_micros(5),
                source: Some("scanner".into()),
                url: None,
            },
        );
        store
    }

    fn names(store: &StateStore, credential: &str) -> (String, String, String) {
        let state = store.get(credential).unwrap();
        (
            store.principals.name(state.owner.unwrap()).to_string(),
            store
                .endpoints
                .name(state.endpoints().next().unwrap().key)
                .to_string(),
            store
                .user_agents
                .name(state.user_agents().next().unwrap().key)
                .to_string(),
        )
    }

    #[test]
    fn shares_split_by_home_and_merge_into_another_store_by_name() {
        let store = store(&["zed", "bob", "s3:GetObject"]);
        let shares = store.shares(&[1, 2]);
        assert_eq!(shares[&1].credentials.len(), 1);
        assert_eq!(shares[&2].credentials.len(), 2);
        assert_eq!(
            shares[&1].principals,
            vec!["alice", "mallory"],
            "only the names the share uses, in name order"
        );
        assert_eq!(shares[&2].secret_hashes.len(), 2, "its own and the orphan");
        assert_eq!(
            shares[&1].secret_hashes,
            vec![("sha256:gone".to_owned(), "AKIAEVICTED".to_owned())]
        );
        assert_eq!(
            shares[&1].owner_leaks.len(),
            1,
            "owner-wide leaks go into every share"
        );

        // Another store with names of its own, interned in another order.
        let other = StateStore::new();
        for name in ["carol", "ec2:RunInstances", "unrelated"] {
            other.principals.intern(name);
            other.endpoints.intern(name);
        }
        let absorbed = other.absorb(shares[&2].clone(), 7).unwrap();
        assert_eq!(
            absorbed,
            Absorbed {
                credentials: 2,
                conflicts: 0
            }
        );
        other.absorb(shares[&1].clone(), 8).unwrap();
        for credential in ["AKIAONE", "AKIATWO", "AKIATHREE"] {
            assert_eq!(
                names(&other, credential),
                names(&store, credential),
                "{credential}"
            );
        }
        assert_eq!(other.home_of("AKIATWO"), Some(7));
        assert_eq!(other.home_of("AKIAONE"), Some(8));
        assert_eq!(
            other.credential_of_secret("sha256:aa").as_deref(),
            Some("AKIATWO")
        );
        assert_eq!(other.owner_leaks.len(), 1, "copies merge without repeats");
        assert_eq!(other.approx_bytes(), other.recount_bytes());
    }

    #[test]
    fn equal_content_gives_equal_shares_whatever_the_interning_order() {
        let first = store(&["zed", "bob", "s3:GetObject"]).shares(&[1, 2]);
        let second = store(&["s3:GetObject", "carol", "alice"]).shares(&[1, 2]);
        assert_eq!(first, second);
        assert!(
            store(&[]).shares(&[9])[&9].credentials.is_empty(),
            "a home with nothing"
        );
    }

    #[test]
    fn a_credential_held_twice_keeps_the_record_with_the_later_activity() {
        let store = store(&[]);
        let share = store.shares(&[2]).remove(&2).unwrap();
        let other = StateStore::new();
        let mut newer = CredentialState::with_fields(Fields {
            accesses: 99,
            last_seen: Some(Timestamp::from_micros(1_000)),
            ..Fields::default()
        });
        newer.set_home(3);
        put(&other, "AKIATWO", newer);
        let older = CredentialState::with_fields(Fields {
            accesses: 42,
            last_seen: Some(Timestamp::from_micros(1)),
            ..Fields::default()
        });
        put(&other, "AKIATHREE", older);
        let absorbed = other.absorb(share, 2).unwrap();
        assert_eq!(absorbed.conflicts, 2);
        assert_eq!(other.get("AKIATWO").unwrap().accesses, 99, "newer kept");
        assert_eq!(
            other.get("AKIATHREE").unwrap().last_seen,
            Some(Timestamp::from_micros(30))
        );
        assert_eq!(other.approx_bytes(), other.recount_bytes());
    }

    #[test]
    fn forgetting_a_home_drops_its_records_and_what_pointed_at_them() {
        let store = store(&[]);
        store
            .lineages
            .insert(store.principals.intern("bob"), "AKIATWO".into());
        assert_eq!(store.forget_home(2).len(), 2);
        assert_eq!(store.len(), 1);
        assert_eq!(store.credential_of_secret("sha256:aa"), None);
        assert!(store.lineages.is_empty());
        assert_eq!(store.approx_bytes(), store.recount_bytes());
        assert!(store.forget_home(2).is_empty());
    }

    #[test]
    fn a_share_naming_a_symbol_it_does_not_carry_is_refused() {
        let store = store(&[]);
        let mut share = store.shares(&[1]).remove(&1).unwrap();
        share.principals.clear();
        let error = StateStore::new().absorb(share, 1).unwrap_err().to_string();
        assert!(error.contains("credential AKIAONE"), "{error}");
    }
}
