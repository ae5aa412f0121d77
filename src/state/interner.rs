//! Interned strings: endpoints and principals stored once, referred to by a 4-byte [`Symbol`].
//!
//! Per-credential state keeps symbols instead of strings so a credential with eight endpoints
//! costs 8 × 4 bytes of ids, not eight heap strings. Ids depend on first-seen order, which is
//! the input order and so deterministic; they never appear in output (names do).

use std::sync::{Arc, RwLock};

use dashmap::DashMap;

/// An interned string's id.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Symbol(u32);

impl Symbol {
    /// The symbol the `index`-th name interned gets.
    pub fn from_index(index: usize) -> Symbol {
        Symbol(index as u32)
    }

    /// Its position in its interner's names.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A concurrent string interner.
#[derive(Debug, Default)]
pub struct Interner {
    ids: DashMap<Arc<str>, Symbol, super::Hashing>,
    names: RwLock<Vec<Arc<str>>>,
}

impl Interner {
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
        let symbol = Symbol(names.len() as u32);
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
            .get(symbol.0 as usize)
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
            if keep(Symbol(index as u32)) {
                renamed.push(Some(Symbol(kept.len() as u32)));
                kept.push(name);
            } else {
                renamed.push(None);
            }
        }
        self.ids.clear();
        for (index, name) in kept.iter().enumerate() {
            self.ids.insert(Arc::clone(name), Symbol(index as u32));
        }
        kept.shrink_to_fit();
        *names = kept;
        renamed
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
}
