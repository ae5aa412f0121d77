//! State snapshots: every credential's record and the maps and interners they refer to, as
//! plain sorted data for a checkpoint, and back.
//!
//! Records hold interned [`Symbol`]s, so a snapshot carries the interners' names in symbol
//! order; restoring interns them in that order into the empty interners of a new store, which
//! gives every symbol its old id back and leaves the records valid as they are.

use serde::{Deserialize, Serialize};

use super::{CredentialState, Leak, StateStore, Symbol};

/// A [`StateStore`] as data, sorted by key so equal states give equal snapshots.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StoreSnapshot {
    pub endpoints: Vec<String>,
    pub principals: Vec<String>,
    pub user_agents: Vec<String>,
    pub credentials: Vec<(String, CredentialState)>,
    pub owner_leaks: Vec<(Symbol, Leak)>,
    pub lineages: Vec<(Symbol, String)>,
    pub secret_hashes: Vec<(String, String)>,
}

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("state can only be restored into an empty store (it already holds {0} credentials or names)")]
    NotEmpty(usize),
    #[error("a state share names, for {what}, a name it does not carry")]
    UnknownName { what: String },
    #[error("the snapshot's {interner} names repeat {name:?}")]
    DuplicateName {
        interner: &'static str,
        name: String,
    },
}

impl StateStore {
    /// Everything the store holds, sorted.
    pub fn snapshot(&self) -> StoreSnapshot {
        let mut credentials: Vec<(String, CredentialState)> =
            Vec::with_capacity(self.credentials.len());
        self.credentials
            .for_each(|record| credentials.push((record.id().to_string(), record.clone())));
        credentials.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut owner_leaks: Vec<(Symbol, Leak)> = self
            .owner_leaks
            .iter()
            .map(|entry| (*entry.key(), entry.value().clone()))
            .collect();
        owner_leaks.sort_unstable_by_key(|(owner, _)| *owner);
        let mut lineages: Vec<(Symbol, String)> = self
            .lineages
            .iter()
            .map(|entry| (*entry.key(), entry.value().to_string()))
            .collect();
        lineages.sort_unstable_by_key(|(lineage, _)| *lineage);
        let mut secret_hashes: Vec<(String, String)> = self
            .secret_hashes
            .iter()
            .map(|entry| (entry.key().to_string(), entry.value().to_string()))
            .collect();
        secret_hashes.sort_unstable();
        StoreSnapshot {
            endpoints: self.endpoints.names(),
            principals: self.principals.names(),
            user_agents: self.user_agents.names(),
            credentials,
            owner_leaks,
            lineages,
            secret_hashes,
        }
    }

    /// Loads `snapshot` into this store, which must be empty (a new engine's).
    pub fn restore(&self, snapshot: StoreSnapshot) -> Result<(), RestoreError> {
        let held = self.credentials.len()
            + self.endpoints.len()
            + self.principals.len()
            + self.user_agents.len();
        if held > 0 {
            return Err(RestoreError::NotEmpty(held));
        }
        for (interner, names, label) in [
            (&self.endpoints, snapshot.endpoints, "endpoint"),
            (&self.principals, snapshot.principals, "principal"),
            (&self.user_agents, snapshot.user_agents, "user agent"),
        ] {
            for (index, name) in names.into_iter().enumerate() {
                if interner.intern(&name) != Symbol::from_index(index) {
                    return Err(RestoreError::DuplicateName {
                        interner: label,
                        name,
                    });
                }
            }
        }
        for (credential, state) in snapshot.credentials {
            self.put(&credential, state);
        }
        for (owner, leak) in snapshot.owner_leaks {
            self.add_owner_leak(owner, leak);
        }
        for (lineage, credential) in snapshot.lineages {
            self.lineages.insert(lineage, credential.into());
        }
        for (hash, credential) in snapshot.secret_hashes {
            self.secret_hashes.insert(hash.into(), credential.into());
        }
        Ok(())
    }
}
