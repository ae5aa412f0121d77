//! Glob patterns over ids and names (canaries, rule scopes, exceptions), matched once per event.
//!
//! Most patterns in practice are an exact id (`AKIACIBOTTERRAFORM01`) or a prefix
//! (`AKIACANARY*`). Those are answered by a hash lookup and `starts_with`; only the others go to
//! `globset`, whose per-call setup (it treats the input as a path) cost about 600 instructions
//! per event for one prefix pattern. The answer is the same as `globset`'s with default options:
//! `*` also matches `/`, case matters.

use std::collections::HashSet;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::state::Hashing;

/// Characters with a meaning in a glob; a pattern without them is an exact id.
const META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// A set of glob patterns; matches when any pattern does.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    exact: HashSet<Box<str>, Hashing>,
    prefixes: Vec<Box<str>>,
    globs: Option<GlobSet>,
}

impl Patterns {
    /// Compiles `patterns`; the error names the first invalid one.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, String> {
        let mut set = Patterns::default();
        let mut builder = GlobSetBuilder::new();
        let mut globs = 0;
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob =
                Glob::new(pattern).map_err(|e| format!("invalid pattern `{pattern}`: {e}"))?;
            if !pattern.contains(META) {
                set.exact.insert(pattern.into());
            } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !p.contains(META)) {
                set.prefixes.push(prefix.into());
            } else {
                builder.add(glob);
                globs += 1;
            }
        }
        if globs > 0 {
            set.globs = Some(builder.build().map_err(|e| e.to_string())?);
        }
        Ok(set)
    }

    pub fn is_match(&self, text: &str) -> bool {
        (!self.exact.is_empty() && self.exact.contains(text))
            || self.prefixes.iter().any(|prefix| {
                // `starts_with` calls `memcmp`; `same` compares the short prefix inline.
                text.as_bytes()
                    .get(..prefix.len())
                    .is_some_and(|head| crate::text::same_bytes(head, prefix.as_bytes()))
            })
            || self
                .globs
                .as_ref()
                .is_some_and(|globs| globs.is_match(text))
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty() && self.globs.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_prefix_and_glob_patterns_match_as_globset_does() {
        let set = Patterns::new(&["AKIA1", "AKIACANARY*", "ghp_*_ci??", "svc-[ab]*"]).unwrap();
        assert!(set.is_match("AKIA1"));
        assert!(!set.is_match("AKIA12"), "an exact pattern is not a prefix");
        assert!(set.is_match("AKIACANARY"));
        assert!(set.is_match("AKIACANARY/with/slashes"), "`*` crosses `/`");
        assert!(!set.is_match("akiacanary1"), "case matters");
        assert!(set.is_match("ghp_canary_ci01"));
        assert!(!set.is_match("ghp_canary_ci1"));
        assert!(set.is_match("svc-b-deploy"));
        assert!(!set.is_match("svc-c"));
        assert!(Patterns::new::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn an_invalid_pattern_is_named() {
        let err = Patterns::new(&["ok", "bad[x"]).unwrap_err();
        assert!(err.contains("`bad[x`"), "{err}");
    }

    proptest! {
        /// Whatever the split into exact, prefix and glob patterns, the answer is globset's.
        #[test]
        fn agrees_with_globset(
            patterns in proptest::collection::vec("[ab/*?]{0,4}|[ab]{1,3}\\*|\\[ab\\][ab]", 1..4),
            text in "[ab/]{0,5}",
        ) {
            let mut builder = GlobSetBuilder::new();
            for pattern in &patterns {
                builder.add(Glob::new(pattern).unwrap());
            }
            let reference = builder.build().unwrap();
            let set = Patterns::new(&patterns).unwrap();
            prop_assert_eq!(set.is_match(&text), reference.is_match(&text));
        }
    }
}
