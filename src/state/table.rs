//! The credentials' map: records keyed by the id they hold, in shards under a lock each.
//!
//! A slot is the record's pointer and nothing else (8 bytes and hashbrown's control byte), the
//! id being inside the record ([`CredentialState::id`]): a hash table's spare capacity, up to
//! half its slots right after it doubles, then costs 9 bytes a slot. Lookups compare the id in
//! the record, which the caller reads next anyway.
//!
//! Access is by closure, under the shard's lock, so that no reference outlives it. As with any
//! map locked by shard, a closure must not reach into the same map (it may deadlock).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::hash_table::{Entry, HashTable};
use parking_lot::RwLock;

use super::{CredentialState, Hashing};

/// Shards: enough that two engines and the API's readers seldom meet on one lock.
const SHARDS: usize = 16;

type Shard = HashTable<CredentialState>;

/// Every credential's record, by id.
pub(super) struct Table {
    shards: Box<[RwLock<Shard>]>,
    hashing: Hashing,
    len: AtomicUsize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hashing: Hashing::default(),
            len: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("len", &self.len()).finish()
    }
}

impl Table {
    fn hash(&self, id: &str) -> u64 {
        self.hashing.hash_one(id)
    }

    /// The slot of `id` in its shard, found or free (the shard grows, rehashing records by
    /// the ids they hold, when it is full).
    fn entry<'a>(
        hashing: &Hashing,
        shard: &'a mut Shard,
        hash: u64,
        id: &str,
    ) -> Entry<'a, CredentialState> {
        shard.entry(
            hash,
            |record| record.has_id(id),
            |record| hashing.hash_one(record.id()),
        )
    }

    /// The shard of a hash: bits that hashbrown uses neither for the slot (the low ones) nor
    /// for its control byte (the top seven).
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `read` on the record of `id`, if there is one.
    pub fn get<R>(&self, id: &str, read: impl FnOnce(&CredentialState) -> R) -> Option<R> {
        let hash = self.hash(id);
        let shard = self.shard(hash).read();
        shard.find(hash, |record| record.has_id(id)).map(read)
    }

    /// Runs `change` on the record of `id`, made empty first if there was none; `change` is
    /// told whether it was.
    pub fn upsert<R>(&self, id: &str, change: impl FnOnce(&mut CredentialState, bool) -> R) -> R {
        let hash = self.hash(id);
        let mut shard = self.shard(hash).write();
        let (record, new) = match Self::entry(&self.hashing, &mut shard, hash, id) {
            Entry::Occupied(entry) => (entry.into_mut(), false),
            Entry::Vacant(entry) => {
                let mut record = CredentialState::default();
                record.set_id(id);
                self.len.fetch_add(1, Ordering::Relaxed);
                (entry.insert(record).into_mut(), true)
            }
        };
        let result = change(record, new);
        record.set_id(id);
        result
    }

    /// Stores `record` under `id` (which it takes as its own), returning the record it
    /// replaced.
    pub fn insert(&self, id: &str, mut record: CredentialState) -> Option<CredentialState> {
        record.set_id(id);
        let hash = self.hash(id);
        let mut shard = self.shard(hash).write();
        match Self::entry(&self.hashing, &mut shard, hash, id) {
            Entry::Occupied(mut entry) => Some(std::mem::replace(entry.get_mut(), record)),
            Entry::Vacant(entry) => {
                entry.insert(record);
                self.len.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Takes the record of `id` out.
    pub fn remove(&self, id: &str) -> Option<CredentialState> {
        let hash = self.hash(id);
        let mut shard = self.shard(hash).write();
        let entry = shard.find_entry(hash, |record| record.has_id(id)).ok()?;
        let (record, _) = entry.remove();
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(record)
    }

    /// Calls `visit` on every record, shard by shard, in no particular order; each shard is
    /// locked while it is visited.
    pub fn for_each(&self, mut visit: impl FnMut(&CredentialState)) {
        for shard in self.shards.iter() {
            shard.read().iter().for_each(&mut visit);
        }
    }

    /// [`Table::for_each`], with each record open to change (its id excepted).
    pub fn for_each_mut(&self, mut change: impl FnMut(&mut CredentialState)) {
        for shard in self.shards.iter() {
            for record in shard.write().iter_mut() {
                let id: Box<str> = record.id().into();
                change(record);
                record.set_id(&id);
            }
        }
    }

    /// Takes out every record `remove` says yes to.
    pub fn remove_where(
        &self,
        mut remove: impl FnMut(&CredentialState) -> bool,
    ) -> Vec<CredentialState> {
        let mut gone = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            let before = shard.len();
            gone.extend(shard.extract_if(|record| remove(record)));
            self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_by_the_id_they_hold() {
        let table = Table::default();
        for i in 0..2_000 {
            let id = format!("AKIA{i:016}");
            table.upsert(&id, |record, new| {
                assert!(new);
                record.accesses = i;
            });
        }
        assert_eq!(table.len(), 2_000);
        assert_eq!(table.get("AKIA0000000000000007", |r| r.accesses), Some(7));
        assert_eq!(table.get("AKIA-missing", |r| r.accesses), None);
        table.upsert("AKIA0000000000000007", |record, new| {
            assert!(!new);
            record.accesses += 1;
        });
        // A closure that swaps the whole record keeps it under its id.
        table.upsert("AKIA0000000000000008", |record, _| {
            *record = CredentialState::default();
            record.accesses = 80;
        });
        assert_eq!(table.get("AKIA0000000000000008", |r| r.accesses), Some(80));
        assert!(table
            .insert("AKIA0000000000000009", CredentialState::default())
            .is_some());
        assert_eq!(
            table.get("AKIA0000000000000009", |r| r.id().len()),
            Some(20)
        );
        assert_eq!(
            table.remove("AKIA0000000000000007").map(|r| r.accesses),
            Some(8)
        );
        assert_eq!(table.len(), 1_999);
        let gone = table.remove_where(|record| record.accesses < 100);
        assert_eq!(gone.len(), 99, "0..100 but 7, removed before");
        assert_eq!(table.len(), 1_999 - 99);
        let mut seen = 0;
        table.for_each(|record| {
            assert!(record.accesses >= 100);
            seen += 1;
        });
        assert_eq!(seen, table.len());
        table.for_each_mut(|record| record.accesses = 0);
        assert_eq!(table.get("AKIA0000000000001999", |r| r.accesses), Some(0));
    }
}
