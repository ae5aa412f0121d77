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
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same`] for bytes.
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
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

/// `into.clear(); into.push_str(text)`, copied inline when `text` has from 4 to 32 bytes and
/// fits `into`'s capacity (a recycled event's fields do): as two overlapping words, where
/// `push_str` calls `memcpy`, whose call and size dispatch cost more than the copy for such
/// strings. The native decoder writes a record's ids and names into recycled events this way.
#[inline(always)]
pub(crate) fn overwrite(into: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let len = bytes.len();
    if !(4..=32).contains(&len) || into.capacity() < len {
        into.clear();
        into.push_str(text);
        return;
    }
    // SAFETY: `len` bytes fit the capacity; the two words written cover all `len` of them
    // with `text`'s bytes, which are UTF-8, before the length is set to `len`.
    unsafe {
        let vec = into.as_mut_vec();
        let out = vec.as_mut_ptr();
        match len {
            4..=8 => put_ends::<4>(bytes, out),
            9..=16 => put_ends::<8>(bytes, out),
            _ => put_ends::<16>(bytes, out),
        }
        vec.set_len(len);
    }
}

/// The window [`overwrite_window`] copies: this many bytes from a string's start.
pub(crate) const WINDOW: usize = 32;

/// [`overwrite`] for a `text` read out of a larger buffer, given `window`, the buffer's
/// [`WINDOW`] bytes from `text`'s start (`None` where it has fewer). A `text` of up to
/// `WINDOW` bytes is then copied as the whole window, whatever its length: one 32-byte copy
/// and no branch on the length, whose lengths vary from field to field and record to record.
/// `into` keeps a capacity of at least `WINDOW` for the next time.
#[inline(always)]
pub(crate) fn overwrite_window(into: &mut String, text: &str, window: Option<&[u8; WINDOW]>) {
    let len = text.len();
    match window {
        Some(window)
            if std::ptr::eq(window.as_ptr(), text.as_ptr())
                && len <= WINDOW
                && into.capacity() >= WINDOW =>
        {
            // SAFETY: the window starts where `text` does and is at least as long, so its
            // first `len` bytes are `text`'s, which are UTF-8; the capacity holds all of it.
            unsafe {
                let vec = into.as_mut_vec();
                vec.as_mut_ptr()
                    .cast::<[u8; WINDOW]>()
                    .write_unaligned(*window);
                vec.set_len(len);
            }
        }
        _ => {
            // Room for the next window first, so a new string is allocated once.
            if into.capacity() < WINDOW {
                into.clear();
                into.reserve(WINDOW.max(len));
            }
            overwrite(into, text);
        }
    }
}

/// Writes the first and the last `N` bytes of `bytes` (which has at least `N`) at the same
/// places from `out`.
///
/// # Safety
/// `out` must be valid for writes of `bytes.len()` bytes.
#[inline(always)]
unsafe fn put_ends<const N: usize>(bytes: &[u8], out: *mut u8) {
    let (first, last) = ends::<N>(bytes);
    // SAFETY: both words lie within the first `bytes.len()` bytes from `out` (the caller's
    // promise), `N <= bytes.len()`.
    unsafe {
        out.cast::<[u8; N]>().write_unaligned(first);
        out.add(bytes.len() - N)
            .cast::<[u8; N]>()
            .write_unaligned(last);
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

    /// `same` sees a difference in any one byte of strings of every length up to 40: every
    /// place, not a sample of them (a version that left one byte of 31 uncompared passed the
    /// property below).
    #[test]
    fn same_sees_every_byte() {
        for len in 0..=40 {
            let a = "a".repeat(len);
            assert!(same(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                b[at] = b'b';
                let b = String::from_utf8(b).expect("ASCII");
                assert!(!same(&a, &b), "length {len}, byte {at}");
            }
        }
    }

    proptest! {
        /// The shortcut trims as `str::trim` does, with ASCII and Unicode whitespace.
        #[test]
        fn trim_is_str_trim(text in "[ \t\n\x0b\u{a0}\u{2003}\u{85}a.é]{0,8}") {
            prop_assert_eq!(trim(&text), text.trim());
        }

        /// `overwrite` is `clear` then `push_str`, whatever the lengths and the capacity.
        #[test]
        fn overwrite_is_clear_and_push_str(
            old in "[ab]{0,40}",
            text in "[a-zé]{0,40}",
            spare in 0usize..40,
        ) {
            let mut into = String::with_capacity(old.len() + spare);
            into.push_str(&old);
            overwrite(&mut into, &text);
            prop_assert_eq!(&into, &text);
        }

        /// `overwrite_window` is `clear` then `push_str` too, for a string anywhere in a
        /// buffer (with its window, without one, or with a window that is not its own), and
        /// leaves room for the next string's window.
        #[test]
        fn overwrite_window_is_clear_and_push_str(
            old in "[ab]{0,40}",
            buffer in "[a-zé]{0,80}",
            span in any::<(prop::sample::Index, prop::sample::Index)>(),
            spare in 0usize..40,
            own in any::<bool>(),
        ) {
            let bounds: Vec<usize> = (0..=buffer.len()).filter(|&i| buffer.is_char_boundary(i)).collect();
            let (a, b) = (span.0.get(&bounds), span.1.get(&bounds));
            let text = &buffer[*a.min(b)..*a.max(b)];
            let start = *a.min(b);
            let window = if own {
                buffer.as_bytes().get(start..).and_then(<[u8]>::first_chunk::<WINDOW>)
            } else {
                buffer.as_bytes().first_chunk::<WINDOW>()
            };
            let mut into = String::with_capacity(old.len() + spare);
            into.push_str(&old);
            overwrite_window(&mut into, text, window);
            prop_assert_eq!(&into, text);
            prop_assert!(into.capacity() >= WINDOW);
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
