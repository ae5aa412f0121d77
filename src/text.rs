//! Small string helpers of the hot path, shared by the decoders and the state.

/// `text.trim()`, without decoding characters at either end when both are visible ASCII
/// (neither can then be whitespace, ASCII or not): the usual field from a log.
pub(crate) fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// `a == b`, compared inline for the lengths names and credential ids have: from 4 to 32
/// bytes, as two overlapping words of each (4, 8 or 16 bytes), where `==` on slices calls
/// `memcmp`, whose call and size dispatch cost more than the comparison for such strings.
#[inline(always)]
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..=8 => ends::<4>(a) == ends::<4>(b),
        9..=16 => ends::<8>(a) == ends::<8>(b),
        17..=32 => ends::<16>(a) == ends::<16>(b),
        _ => a == b,
    }
}

/// The first and the last `N` bytes of `bytes` (which has at least `N`), overlapping when it
/// has fewer than `2 * N`.
#[inline(always)]
fn ends<const N: usize>(bytes: &[u8]) -> ([u8; N], [u8; N]) {
    match (bytes.first_chunk::<N>(), bytes.last_chunk::<N>()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => unreachable!("a string of at least {N} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The shortcut trims as `str::trim` does, with ASCII and Unicode whitespace.
        #[test]
        fn trim_is_str_trim(text in "[ \t\n\x0b\u{a0}\u{2003}\u{85}a.é]{0,8}") {
            prop_assert_eq!(trim(&text), text.trim());
        }

        /// `same` is `==`: on unrelated strings of every length up to 40, and on a string
        /// against itself with one byte changed anywhere, which one of the two words (or
        /// both, where they overlap) must see.
        #[test]
        fn same_is_equality(
            a in "[ab]{0,40}",
            b in "[ab]{0,40}",
            at in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(same(&a, &b), a == b);
            prop_assert!(same(&a, &a.clone()));
            if !a.is_empty() {
                let mut changed = a.clone().into_bytes();
                let at = at.index(changed.len());
                changed[at] = if changed[at] == b'a' { b'b' } else { b'a' };
                let changed = String::from_utf8(changed).expect("ASCII");
                prop_assert!(!same(&a, &changed), "{} {}", a, changed);
            }
        }
    }
}
