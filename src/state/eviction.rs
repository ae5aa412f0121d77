//! Eviction: the bound on how many credentials the store tracks.
//!
//! Past `max_credentials`, the longest-idle credentials (by event time of their last
//! activity) are dropped until 95% of the bound is left, so a pass runs once per 5% of new
//! credentials rather than on every one. Leaked and revoked credentials go last: their record
//! is what turns a later use into a critical alert. Ties break by credential id, and event
//! time drives everything, so which credentials go is deterministic: a replay evicts the same
//! ones. An evicted credential that comes back starts over (unknown, learning).

use std::collections::HashSet;

use super::StateStore;

/// What one eviction pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evicted {
    pub credentials: usize,
    /// Of those, leaked or revoked ones (only when nothing else was left to evict).
    pub precious: usize,
}

impl StateStore {
    /// Evicts past `max` credentials or `max_bytes` of records ([`StateStore::approx_bytes`]).
    /// The byte bound is taken as a count, as many as fit at the records' present average
    /// size; the longest idle, which go first, may be smaller than the average (a flood's
    /// never-used keys), so the pass repeats at the new average until the records fit.
    /// Returns what went, and whether the bytes bounded the first pass tighter than `max`.
    pub fn evict_to_fit(&self, max: usize, max_bytes: usize) -> (Evicted, bool) {
        let mut evicted = Evicted::default();
        let mut by_bytes = false;
        for pass in 0..8 {
            let (tracked, bytes) = (self.len(), self.approx_bytes());
            let mut allowed = max;
            if bytes > max_bytes {
                let fit = (tracked as u128 * max_bytes as u128 / bytes as u128) as usize;
                if fit < allowed {
                    allowed = fit;
                    by_bytes |= pass == 0;
                }
            }
            let gone = self.evict_over(allowed);
            evicted.credentials += gone.credentials;
            evicted.precious += gone.precious;
            if gone.credentials == 0 || self.approx_bytes() <= max_bytes {
                break;
            }
        }
        (evicted, by_bytes)
    }

    /// Evicts the longest-idle credentials when more than `max` are tracked, down to 95% of
    /// `max`.
    pub fn evict_over(&self, max: usize) -> Evicted {
        let tracked = self.credentials.len();
        if tracked <= max {
            return Evicted::default();
        }
        let keep = max - max / 20;
        let excess = tracked - keep;
        // Rank (precious, last activity) ascending: the first `excess` go.
        let mut ranks: Vec<(bool, i64)> = Vec::with_capacity(tracked);
        self.credentials.for_each(|record| ranks.push(rank(record)));
        let (_, cutoff, _) = ranks.select_nth_unstable(excess - 1);
        let cutoff = *cutoff;
        drop(ranks);
        let mut below = Vec::new();
        let mut at_cutoff = Vec::new();
        self.credentials.for_each(|record| {
            let rank = rank(record);
            if rank < cutoff {
                below.push(Box::<str>::from(record.id()));
            } else if rank == cutoff {
                at_cutoff.push(Box::<str>::from(record.id()));
            }
        });
        at_cutoff.sort_unstable();
        at_cutoff.truncate(excess.saturating_sub(below.len()));
        below.append(&mut at_cutoff);
        let mut evicted = Evicted::default();
        for key in &below {
            if let Some(state) = self.credentials.remove(key) {
                self.count_bytes(&state, false);
                evicted.credentials += 1;
                evicted.precious += usize::from(state.is_precious());
            }
        }
        let gone: HashSet<&str> = below.iter().map(|key| &**key).collect();
        self.secret_hashes
            .retain(|_, credential| !gone.contains(&**credential));
        evicted
    }
}

fn rank(state: &super::CredentialState) -> (bool, i64) {
    (
        state.is_precious(),
        state.last_activity().map_or(i64::MIN, |at| at.micros()),
    )
}

#[cfg(test)]
mod tests {
    use crate::state::{CredentialState, Leak, StateStore};
    use crate::time::Timestamp;

    fn store(credentials: usize) -> StateStore {
        let store = StateStore::new();
        for i in 0..credentials {
            store.with_credential(
                &format!("k{i:03}"),
                |_| (),
                |state: &mut CredentialState| {
                    state.last_seen = Some(Timestamp::from_secs(i as i64 % 50));
                    if i % 10 == 0 {
                        state.set_leak(Some(Leak {
                            at: Timestamp::from_secs(0),
                            source: None,
                            url: None,
                        }));
                    }
                },
            );
        }
        store
    }

    #[test]
    fn the_longest_idle_go_first_down_to_95_percent_and_leaked_ones_last() {
        let store = store(300);
        let evicted = store.evict_over(200);
        assert_eq!(evicted.credentials, 110, "300 down to 190");
        assert_eq!(evicted.precious, 0);
        assert_eq!(store.len(), 190);
        let mut kept_activity = Vec::new();
        store.for_each(|_, state| {
            if !state.is_precious() {
                kept_activity.push(state.last_seen.unwrap().micros());
            }
        });
        let mut gone_activity = Vec::new();
        let full = self::store(300);
        full.for_each(|key, state| {
            if store.get(key).is_none() {
                gone_activity.push(state.last_seen.unwrap().micros());
            }
        });
        let newest_gone = gone_activity.iter().max().unwrap();
        let oldest_kept = kept_activity.iter().min().unwrap();
        assert!(newest_gone <= oldest_kept, "{newest_gone} > {oldest_kept}");
        let leaked = (0..300)
            .step_by(10)
            .filter(|i| store.get(&format!("k{i:03}")).is_some());
        assert_eq!(leaked.count(), 30, "every leaked credential is kept");
    }

    #[test]
    fn the_same_state_evicts_the_same_credentials() {
        let (a, b) = (store(300), store(300));
        a.evict_over(120);
        b.evict_over(120);
        assert_eq!(a.snapshot(), b.snapshot());
    }

    #[test]
    fn the_running_byte_count_follows_updates_evictions_and_restores() {
        let store = store(300);
        // Lists grow after the first update.
        for i in 0..300 {
            store.with_credential(
                &format!("k{i:03}"),
                |_| (),
                |state: &mut CredentialState| {
                    let networks: Vec<_> = (0..(i % 4))
                        .map(|n| {
                            let network = crate::zones::Network::V4(n as u32);
                            crate::state::Seen::new(network, 1, Timestamp::from_secs(0))
                        })
                        .collect();
                    state.set_networks(&networks);
                },
            );
        }
        let counted = store.approx_bytes();
        assert!(counted > 300 * std::mem::size_of::<CredentialState>());
        assert_eq!(counted, store.recount_bytes());
        store.evict_over(120);
        assert_eq!(store.approx_bytes(), store.recount_bytes());
        assert!(store.approx_bytes() < counted);
        let restored = StateStore::new();
        restored.restore(store.snapshot()).expect("restore");
        assert_eq!(restored.approx_bytes(), store.approx_bytes());
    }

    #[test]
    fn past_the_byte_bound_passes_repeat_until_the_records_fit() {
        // The longest idle are the smallest: the recently seen half carries four networks.
        let store = StateStore::new();
        for i in 0..400i64 {
            store.with_credential(
                &format!("k{i:03}"),
                |_| (),
                |state: &mut CredentialState| {
                    state.last_seen = Some(Timestamp::from_secs(i));
                    if i >= 200 {
                        let networks: Vec<_> = (0..4)
                            .map(|n| {
                                let network = crate::zones::Network::V4(n << 8);
                                crate::state::Seen::new(network, 1, Timestamp::from_secs(i))
                            })
                            .collect();
                        state.set_networks(&networks);
                    }
                },
            );
        }
        let max_bytes = store.approx_bytes() / 2;
        let (evicted, by_bytes) = store.evict_to_fit(1_000, max_bytes);
        assert!(by_bytes, "the bytes bound it, not the count");
        assert!(
            store.approx_bytes() <= max_bytes,
            "{}",
            store.approx_bytes()
        );
        assert_eq!(evicted.credentials, 400 - store.len());
        assert_eq!(store.approx_bytes(), store.recount_bytes());
    }

    #[test]
    fn under_the_bound_nothing_goes() {
        let store = store(100);
        assert_eq!(store.evict_over(100).credentials, 0);
        assert_eq!(store.len(), 100);
    }
}
