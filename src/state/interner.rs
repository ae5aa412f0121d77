//! Interned strings: endpoints and principals stored once, referred to by a 4-byte [`Symbol`].
//!
//! Per-credential state keeps symbols instead of strings so a credential with eight endpoints
//! costs 8 × 4 bytes of ids, not eight heap strings. Ids depend on first-seen order, which is
//! the input order and so deterministic; they never appear in output (names do).

use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

/// An interned string's id: its position in the interner's names, held plus one so that an
/// `Option<Symbol>` is 4 bytes (a record holds two). Serialized as the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(NonZeroU32);

impl Symbol {
    /// The symbol the `index`-th name interned gets.
    ///
    /// # Panics
    /// At `u32::MAX` names or more, which no interner reaches (each name is a string in memory).
    pub fn from_index(index: usize) -> Symbol {
        Symbol::checked(index).expect("fewer than u32::MAX interned names")
    }

    fn checked(index: usize) -> Option<Symbol> {
        u32::try_from(index)
            .ok()
            .and_then(|index| index.checked_add(1))
            .and_then(NonZeroU32::new)
            .map(Symbol)
    }

    /// Its position in its interner's names.
    pub fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0.get() - 1)
    }
}

impl<'de> serde::Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        Symbol::checked(index as usize)
            .ok_or_else(|| serde::de::Error::custom("symbol index out of range"))
    }
}

/// A concurrent string interner.
#[derive(Debug)]
pub struct Interner {
    ids: DashMap<Arc<str>, Symbol, super::Hashing>,
    names: RwLock<Vec<Arc<str>>>,
    /// Changes whenever a name may get another symbol ([`Interner::retain`]); unique across
    /// interners, so a [`NameCache`] filled from one is never taken for another's.
    generation: AtomicU64,
}

/// Where generations come from: each interner, and each of its renumberings, takes the next.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            ids: DashMap::default(),
            names: RwLock::default(),
            generation: AtomicU64::new(next_generation()),
        }
    }
}

impl Interner {
    /// Which symbols its names have: the same until the generation changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn intern(&self, name: &str) -> Symbol {
        if let Some(symbol) = self.ids.get(name) {
            return *symbol;
        }
        let mut names = self
            .names
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another thread may have interned it while we waited for the lock.
        if let Some(symbol) = self.ids.get(name) {
            return *symbol;
        }
        let symbol = Symbol::from_index(names.len());
        let shared: Arc<str> = Arc::from(name);
        names.push(Arc::clone(&shared));
        self.ids.insert(shared, symbol);
        symbol
    }

    pub fn name(&self, symbol: Symbol) -> Arc<str> {
        let names = self
            .names
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        names
            .get(symbol.index())
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }

    /// Every name, in symbol order: interning them in this order into an empty interner gives
    /// each its symbol back (how a checkpoint restores them).
    pub fn names(&self) -> Vec<String> {
        let names = self
            .names
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        names.iter().map(|name| name.to_string()).collect()
    }

    /// Keeps only the names whose symbol `keep` accepts, renumbered in their old order, and
    /// returns each old symbol's new one (`None` for a name dropped). Whoever holds symbols
    /// must rewrite them all through the result.
    pub fn retain(&self, keep: impl Fn(Symbol) -> bool) -> Vec<Option<Symbol>> {
        let mut names = self
            .names
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut renamed = Vec::with_capacity(names.len());
        let mut kept: Vec<Arc<str>> = Vec::new();
        for (index, name) in names.drain(..).enumerate() {
            if keep(Symbol::from_index(index)) {
                renamed.push(Some(Symbol::from_index(kept.len())));
                kept.push(name);
            } else {
                renamed.push(None);
            }
        }
        self.ids.clear();
        for (index, name) in kept.iter().enumerate() {
            self.ids.insert(Arc::clone(name), Symbol::from_index(index));
        }
        kept.shrink_to_fit();
        *names = kept;
        self.generation.store(next_generation(), Ordering::Release);
        renamed
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A small cache in front of an [`Interner`], for the one thread that runs the engine: most
/// names repeat from event to event (endpoints, user agents, a credential's principal), and a
/// hit costs a hash and a comparison, where the interner's shared map takes a lock and
/// releases it, two atomic operations, on every lookup (the cache took the pipeline from
/// 2.06 to 2.21 M events/s: docs/performance-log.md, section 1).
///
/// Direct-mapped: a key has one slot, by its hash, and a miss replaces what the slot held. The
/// key is the name itself, or the text the name is derived from ([`NameCache::intern_derived`]:
/// a whole user agent, for its product token). Keys longer than [`NameCache::MAX_NAME`] are
/// not kept. The cache empties itself when the
/// interner's [`Interner::generation`] changes, so a renumbering never leaves it stale.
///
/// A miss costs more than the interner alone (the hash, the comparison and a copy of the
/// name: 123 against 105 ns a lookup, cycling a million principals, in `cargo bench --bench
/// engine -- names`). So a window of [`NameCache::WINDOW`] lookups with fewer than one hit in
/// 16 sends the next fifteen windows' lookups straight to the interner, and then the cache
/// tries again.
#[derive(Debug)]
pub struct NameCache {
    generation: u64,
    slots: Box<[Slot]>,
    hasher: foldhash::fast::FixedState,
    /// Lookups and hits so far in the current window.
    looked: u32,
    hits: u32,
    /// Lookups left to send straight to the interner.
    bypass: u32,
}

#[derive(Debug, Default)]
struct Slot {
    symbol: Option<Symbol>,
    key: String,
}

impl NameCache {
    /// The longest key kept, in bytes: the cache holds at most this much per slot.
    pub const MAX_NAME: usize = 96;

    /// Lookups over which the hit rate is judged.
    pub const WINDOW: u32 = 1 << 16;

    /// A cache of `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> NameCache {
        NameCache {
            generation: 0,
            slots: (0..slots.max(1).next_power_of_two())
                .map(|_| Slot::default())
                .collect(),
            hasher: foldhash::fast::FixedState::default(),
            looked: 0,
            hits: 0,
            bypass: 0,
        }
    }

    /// Whether lookups go straight to the interner for now (too few hit).
    pub fn bypassing(&self) -> bool {
        self.bypass > 0
    }

    /// `interner.intern(name)`, from the cache when the slot holds `name`.
    #[inline]
    pub fn intern(&mut self, interner: &Interner, name: &str) -> Symbol {
        self.intern_derived(interner, name, Some)
            .expect("a name derives itself")
    }

    /// The symbol of the name `derive` makes of `key` (none where it makes none), cached under
    /// `key` itself: a hit neither calls `derive` nor hashes what it would make. `derive` must
    /// depend on `key` alone (the user agents' cache keeps whole agents and interns their
    /// product tokens).
    pub fn intern_derived<'k>(
        &mut self,
        interner: &Interner,
        key: &'k str,
        derive: impl FnOnce(&'k str) -> Option<&'k str>,
    ) -> Option<Symbol> {
        if self.bypass > 0 {
            self.bypass -= 1;
            return derive(key).map(|name| interner.intern(name));
        }
        let generation = interner.generation();
        if generation != self.generation {
            for slot in self.slots.iter_mut() {
                slot.symbol = None;
            }
            self.generation = generation;
        }
        let index = self.hasher.hash_one(key) as usize & (self.slots.len() - 1);
        let slot = &mut self.slots[index];
        let symbol = match slot.symbol {
            Some(symbol) if crate::text::same(&slot.key, key) => {
                self.hits += 1;
                Some(symbol)
            }
            _ => {
                let symbol = derive(key).map(|name| interner.intern(name));
                if let Some(symbol) = symbol.filter(|_| key.len() <= Self::MAX_NAME) {
                    slot.key.clear();
                    slot.key.push_str(key);
                    slot.symbol = Some(symbol);
                }
                symbol
            }
        };
        self.looked += 1;
        if self.looked == Self::WINDOW {
            if self.hits < Self::WINDOW / 16 {
                self.bypass = 15 * Self::WINDOW;
            }
            (self.looked, self.hits) = (0, 0);
        }
        symbol
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_symbol() {
        let interner = Interner::default();
        let a = interner.intern("s3:GetObject");
        let b = interner.intern("iam:CreateUser");
        assert_ne!(a, b);
        assert_eq!(interner.intern("s3:GetObject"), a);
        assert_eq!(&*interner.name(b), "iam:CreateUser");
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn the_cache_gives_the_interners_symbols_and_follows_a_renumbering() {
        let interner = Interner::default();
        // Two slots, so names share them and replace each other.
        let mut cache = NameCache::new(2);
        let names: Vec<String> = (0..20).map(|i| format!("name-{i}")).collect();
        let long = "x".repeat(NameCache::MAX_NAME + 1);
        for round in 0..3 {
            for name in names.iter().chain([&long]) {
                assert_eq!(
                    cache.intern(&interner, name),
                    interner.intern(name),
                    "{name}"
                );
            }
            if round == 1 {
                // Drop every other name: the rest get new symbols, and the cache must follow.
                let keep: Vec<Symbol> = names
                    .iter()
                    .step_by(2)
                    .map(|n| interner.intern(n))
                    .collect();
                interner.retain(|symbol| keep.contains(&symbol));
                assert_eq!(interner.len(), keep.len());
                for name in names.iter().step_by(2) {
                    assert_eq!(
                        cache.intern(&interner, name),
                        interner.intern(name),
                        "{name}"
                    );
                }
            }
        }
        assert_eq!(&*interner.name(cache.intern(&interner, "name-3")), "name-3");
    }

    #[test]
    fn a_derived_name_is_cached_under_its_key_and_follows_a_renumbering() {
        let interner = Interner::default();
        let mut cache = NameCache::new(4);
        let derived = std::cell::Cell::new(0);
        let head = |key: &'static str| {
            derived.set(derived.get() + 1);
            key.split('/').next().filter(|head| !head.is_empty())
        };
        let keys = [
            "aws-cli/1.18.0",
            "aws-cli/2.15.0",
            "Terraform/1.7",
            "/no-head",
        ];
        for _ in 0..3 {
            for key in keys {
                let expected = head(key).map(|name| interner.intern(name));
                assert_eq!(
                    cache.intern_derived(&interner, key, head),
                    expected,
                    "{key}"
                );
            }
        }
        // Two keys with one name share its symbol; the headless key is derived every time.
        assert_eq!(
            cache.intern_derived(&interner, "aws-cli/1.18.0", head),
            Some(interner.intern("aws-cli"))
        );
        let before = derived.get();
        cache.intern_derived(&interner, "Terraform/1.7", head);
        assert_eq!(derived.get(), before, "a hit does not derive");
        cache.intern_derived(&interner, "/no-head", head);
        assert_eq!(
            derived.get(),
            before + 1,
            "nothing cached where nothing derives"
        );
        // A renumbering: the cache must give the new symbols.
        let keep = interner.intern("Terraform");
        interner.retain(|symbol| symbol == keep);
        for key in keys {
            let got = cache.intern_derived(&interner, key, head);
            assert_eq!(got, head(key).map(|name| interner.intern(name)), "{key}");
        }
    }

    #[test]
    fn a_cache_that_seldom_hits_steps_aside_and_later_tries_again() {
        let interner = Interner::default();
        let mut cache = NameCache::new(16);
        let window = NameCache::WINDOW as usize;
        // Many more names than slots: nearly every lookup misses.
        let many: Vec<String> = (0..10_000).map(|i| format!("principal-{i}")).collect();
        let mut cold = many.iter().cycle();
        for name in cold.by_ref().take(window - 1) {
            assert_eq!(cache.intern(&interner, name), interner.intern(name));
        }
        assert!(!cache.bypassing(), "judged only after a whole window");
        let name = cold.next().unwrap();
        assert_eq!(cache.intern(&interner, name), interner.intern(name));
        assert!(cache.bypassing());
        // Straight to the interner, with the same symbols, for fifteen windows.
        let hot: Vec<String> = (0..8).map(|i| format!("endpoint-{i}")).collect();
        let mut hot = hot.iter().cycle();
        for name in hot.by_ref().take(15 * window) {
            assert_eq!(cache.intern(&interner, name), interner.intern(name));
        }
        assert!(!cache.bypassing());
        // Names that repeat hit again, and the cache stays in use.
        for name in hot.by_ref().take(2 * window + 1_000) {
            assert_eq!(cache.intern(&interner, name), interner.intern(name));
        }
        assert!(!cache.bypassing());
        assert!(cache.hits > 0, "the window under way has hits");
    }

    #[test]
    fn a_cache_filled_from_one_interner_is_not_taken_for_another() {
        let (first, second) = (Interner::default(), Interner::default());
        second.intern("other");
        let mut cache = NameCache::new(8);
        assert_eq!(cache.intern(&first, "name"), first.intern("name"));
        assert_eq!(cache.intern(&second, "name"), second.intern("name"));
        assert_ne!(first.intern("name"), second.intern("name"));
    }

    #[test]
    fn a_symbol_is_serialized_as_its_position_and_an_optional_one_is_four_bytes() {
        assert_eq!(std::mem::size_of::<Option<Symbol>>(), 4);
        let symbol = Symbol::from_index(7);
        assert_eq!(symbol.index(), 7);
        let bytes = postcard::to_stdvec(&symbol).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&7u32).unwrap());
        assert_eq!(postcard::from_bytes::<Symbol>(&bytes).unwrap(), symbol);
        assert!(postcard::from_bytes::<Symbol>(&postcard::to_stdvec(&u32::MAX).unwrap()).is_err());
    }
}
