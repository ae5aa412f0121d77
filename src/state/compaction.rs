//! Name compaction: interned names that nothing in the store uses any more are dropped.
//!
//! Interners only grow: every endpoint, principal and user agent an event names is interned,
//! whether or not a record keeps it (a record keeps at most `max_endpoints` endpoints and
//! `max_user_agents` agents, and evicted or forgotten credentials keep none). A flood of
//! distinct names (an attacker calling random paths, or sending a random user agent with each
//! call of a stolen key) would grow them without bound. Compaction rebuilds the interners
//! with the names still used by records, owner-wide leaks and lineages, and rewrites every
//! symbol. The engine runs it when the interners hold more names than [`next_compaction`]
//! allows after the previous one, so its cost, a pass over the records, is paid once per that
//! many new names: at most a quarter of the records, and at least as many as were kept.
//!
//! Symbols never appear in output (names do), so compaction changes no alert. A reader on
//! another thread (the operations API) resolving a name while a compaction runs may see `?`.

use std::collections::HashSet;

use super::{Names, StateStore, Symbol};

/// Growth allowed whatever the store's size: small stores never compact.
pub const MIN_COMPACTION_GROWTH: usize = 65_536;

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    /// Names interned before, and kept.
    pub before: usize,
    pub after: usize,
}

/// How many names the interners may hold before the next compaction, after one that kept
/// `kept` names for `records` records.
pub fn next_compaction(kept: usize, records: usize) -> usize {
    kept + kept.max(records / 4).max(MIN_COMPACTION_GROWTH)
}

impl StateStore {
    /// Names interned, over the three interners.
    pub fn names_len(&self) -> usize {
        self.endpoints.len() + self.principals.len() + self.user_agents.len()
    }

    /// Drops every interned name nothing in the store uses, renumbering the rest.
    pub fn compact_names(&self) -> Compacted {
        let before = self.names_len();
        let mut used: [HashSet<Symbol>; 3] = Default::default();
        self.credentials.for_each(|record| {
            record.symbols(|names, symbol| {
                used[names.index()].insert(symbol);
            });
        });
        for entry in self.owner_leaks.iter() {
            used[1].insert(*entry.key());
        }
        for entry in self.lineages.iter() {
            used[1].insert(*entry.key());
        }
        let renamed = [
            self.endpoints.retain(|symbol| used[0].contains(&symbol)),
            self.principals.retain(|symbol| used[1].contains(&symbol)),
            self.user_agents.retain(|symbol| used[2].contains(&symbol)),
        ];
        let new = |names: Names, symbol: Symbol| {
            renamed[names.index()]
                .get(symbol.index())
                .copied()
                .flatten()
        };
        self.credentials.for_each_mut(|record| {
            // Every symbol a record holds was noted as used above, so each has a new one.
            record.rename(&mut |names, symbol| new(names, symbol));
        });
        rekey(&self.owner_leaks, |owner| new(Names::Principals, owner));
        rekey(&self.lineages, |lineage| new(Names::Principals, lineage));
        Compacted {
            before,
            after: self.names_len(),
        }
    }
}

/// Moves every entry of a map keyed by symbol to its new symbol (entries without one go).
fn rekey<V: Clone>(
    map: &dashmap::DashMap<Symbol, V, super::Hashing>,
    new: impl Fn(Symbol) -> Option<Symbol>,
) {
    let entries: Vec<(Symbol, V)> = map
        .iter()
        .map(|entry| (*entry.key(), entry.value().clone()))
        .collect();
    map.clear();
    for (key, value) in entries {
        if let Some(key) = new(key) {
            map.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CredentialState, Fields, Leak, Seen};
    use crate::time::Timestamp;

    #[test]
    fn compaction_keeps_the_names_in_use_under_new_symbols_and_drops_the_rest() {
        let store = StateStore::new();
        for i in 0..1_000 {
            store.endpoints.intern(&format!("GET /random/{i}"));
            store.user_agents.intern(&format!("agent-{i}"));
            store.principals.intern(&format!("someone-{i}"));
        }
        let at = Timestamp::from_micros(1);
        let mut record = CredentialState::with_fields(Fields {
            owner: Some(store.principals.intern("alice")),
            ..Fields::default()
        });
        record.set_inherited_from(Some(store.principals.intern("team")));
        record.set_endpoints_and_user_agents(
            &[Seen::new(store.endpoints.intern("s3:GetObject"), 3, at)],
            &[Seen::new(store.user_agents.intern("aws-cli"), 3, at)],
        );
        store.credentials.insert("AKIAKEPT", record);
        store.add_owner_leak(
            store.principals.intern("mallory"),
            Leak {
                at,
                source: None,
                url: None,
            },
        );
        store
            .lineages
            .insert(store.principals.intern("team"), "AKIAKEPT".into());
        let bytes = store.approx_bytes();

        let compacted = store.compact_names();
        assert_eq!(compacted.before, 3_005);
        assert_eq!(
            compacted.after, 5,
            "s3:GetObject, aws-cli, alice, team, mallory"
        );
        let state = store.get("AKIAKEPT").unwrap();
        assert_eq!(&*store.principals.name(state.owner.unwrap()), "alice");
        assert_eq!(
            &*store.principals.name(state.inherited_from().unwrap()),
            "team"
        );
        assert_eq!(
            &*store.endpoints.name(state.endpoints().next().unwrap().key),
            "s3:GetObject"
        );
        assert_eq!(
            &*store
                .user_agents
                .name(state.user_agents().next().unwrap().key),
            "aws-cli"
        );
        let mallory = store.principals.intern("mallory");
        assert!(store.owner_leaks.contains_key(&mallory));
        assert_eq!(
            store.principals.len(),
            3,
            "mallory was kept, not interned again"
        );
        let team = store.principals.intern("team");
        assert_eq!(
            store.lineages.get(&team).map(|c| c.to_string()).as_deref(),
            Some("AKIAKEPT")
        );
        assert_eq!(store.approx_bytes(), bytes);
        assert_eq!(
            store.compact_names(),
            Compacted {
                before: 5,
                after: 5
            }
        );
    }

    #[test]
    fn the_next_compaction_waits_for_as_many_new_names_as_were_kept_or_a_quarter_of_the_records() {
        assert_eq!(next_compaction(10, 100), 10 + MIN_COMPACTION_GROWTH);
        assert_eq!(next_compaction(1_000_000, 100), 2_000_000);
        assert_eq!(next_compaction(100_000, 10_000_000), 2_600_000);
    }
}
