//! The native reader's fast path: a scanner for the shape nearly every native record has.
//!
//! A record is a flat JSON object of strings (`null` for the optional ones, one array of
//! strings for `allowed_zones`). This scanner reads exactly that without serde's visitor
//! machinery: half the decode's instructions went to serde_json's per-string setup and its
//! visitor calls, for strings of ten to thirty bytes. The bytes that end a plain string
//! (quote, backslash, control character) are found for 64 bytes at once, as a bit mask (SSE2
//! on x86-64, `u64` words elsewhere), so finding a string's end is a shift and a count.
//!
//! Its one invariant: when it returns `Some`, the event is what the serde reader (and so the
//! derived `Deserialize`) would have read. Anything else it does not read itself: an escape,
//! a number, a duplicate or unknown field, a missing required field, a malformed token, an
//! unknown enum value, a timestamp the fast parser does not take. Then it returns `None` and
//! the serde reader reads the record from the start, with its own error texts. The property
//! test in the parent module holds the whole reader to the derived one, and a second one
//! checks that the records of the common shape do take this path.

use serde::de::{value, Deserialize, IntoDeserializer};

use super::{reset_unseen, Field, FIELDS, REQUIRED};
use crate::event::Event;
use crate::text::{overwrite_window, WINDOW};
use crate::time::Rfc3339Reader;

/// What the scanner keeps from one record to the next, for records that resemble the one
/// before: its timestamps' last minute and its field order.
#[derive(Debug, Clone, Default)]
pub(super) struct Memory {
    times: Rfc3339Reader,
    shape: Shape,
}

/// Reads `record` into `event` (writing or resetting every field), or `None` to hand the
/// record to the serde reader; `event` is then in no particular state, which that reader
/// overwrites. Every string written into `event` is UTF-8, checked here: the record as a
/// whole is not (see [`Scanner::plain_string`]), so `None` may mean that it is not UTF-8.
///
/// Each key is first compared, as a whole, with the one at the same place in the record read
/// before (`memory`'s shape), and read byte by byte only when it is not that one; `memory`
/// then holds this record's.
pub(super) fn read(record: &[u8], event: &mut Event, memory: &mut Memory) -> Option<()> {
    let Memory { times, shape } = memory;
    let mut scanner = Scanner {
        bytes: record,
        at: 0,
        stops: Stops::new(),
        times,
    };
    scanner.whitespace();
    scanner.byte(b'{')?;
    scanner.whitespace();
    let mut seen = 0u32;
    if scanner.peek() != Some(b'}') {
        for place in 0.. {
            let field = match shape.0.get(place).copied().flatten() {
                Some(expected) if scanner.key(expected) => expected,
                _ => {
                    scanner.byte(b'"')?;
                    let name = scanner.plain_string()?;
                    let field = Field::from_name(name.as_bytes())?;
                    scanner.whitespace();
                    scanner.byte(b':')?;
                    field
                }
            };
            if seen & field.bit() != 0 {
                return None;
            }
            seen |= field.bit();
            // At most one place per field: a seventeenth key is a duplicate or unknown.
            shape.0[place] = Some(field);
            scanner.whitespace();
            scanner.value(field, event)?;
            scanner.whitespace();
            match scanner.next()? {
                b',' => scanner.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        scanner.at += 1;
    }
    scanner.whitespace();
    if scanner.at != record.len() || seen & REQUIRED != REQUIRED {
        return None;
    }
    reset_unseen(event, seen);
    Some(())
}

/// The fields of the last record read, in its order: where most writers put the same keys in
/// the same order, the next record's keys are compared with these whole.
#[derive(Debug, Clone, Default)]
struct Shape([Option<Field>; FIELDS.len()]);

/// Each field's key as compact JSON spells it (`"name":`): its bytes as a little-endian word,
/// the mask of those bytes and their count.
const KEYS: [(u128, u128, usize); FIELDS.len()] = {
    let mut keys = [(0, 0, 0); FIELDS.len()];
    let mut field = 0;
    while field < FIELDS.len() {
        let name = FIELDS[field].as_bytes();
        let len = name.len() + 3;
        assert!(len <= 16, "a key longer than one word");
        let mut word = b'"' as u128;
        let mut at = 0;
        while at < name.len() {
            word |= (name[at] as u128) << (8 * (at + 1));
            at += 1;
        }
        word |= (b'"' as u128) << (8 * (name.len() + 1));
        word |= (b':' as u128) << (8 * (name.len() + 2));
        let mask = if len == 16 {
            u128::MAX
        } else {
            (1 << (8 * len)) - 1
        };
        keys[field] = (word, mask, len);
        field += 1;
    }
    keys
};

struct Scanner<'a, 't> {
    /// The record; not known to be UTF-8.
    bytes: &'a [u8],
    at: usize,
    stops: Stops,
    /// The decoder's reader of timestamps, which remembers the last one's minute.
    times: &'t mut Rfc3339Reader,
}

impl<'a> Scanner<'a, '_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    #[inline(always)]
    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// Whether the key `"name":` of `field` comes next, as compact JSON writes it; if so it is
    /// read (the colon too). Sixteen bytes compared at once: the longest key is that long.
    #[inline(always)]
    fn key(&mut self, field: Field) -> bool {
        let (word, mask, len) = KEYS[field as usize];
        let next = self
            .bytes
            .get(self.at..)
            .and_then(<[u8]>::first_chunk::<16>);
        match next {
            Some(next) if (u128::from_le_bytes(*next) ^ word) & mask == 0 => {
                self.at += len;
                true
            }
            _ => false,
        }
    }

    /// JSON's whitespace, as serde_json skips it.
    #[inline(always)]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The rest of a string whose opening quote was read, if it holds no escape and no control
    /// character (which JSON forbids unescaped) and is UTF-8; the closing quote is consumed.
    ///
    /// This is the scanner's only UTF-8 check: every other byte it takes is one of JSON's
    /// ASCII tokens, compared exactly. While the blocks classified so far are all ASCII (as
    /// in nearly every record), the check is free: the classification marks the bytes outside
    /// ASCII beside the stops. It replaced simdutf8's check of the whole record before
    /// scanning: decode 2,275 -> 2,213 instructions an event on the demo day.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let bytes = self.bytes;
        let end = self.stops.string_end(bytes, start);
        if bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        let string = bytes.get(start..end)?;
        if self.stops.wide == 0 {
            // SAFETY: `string_end` classified every block from `start`'s to `end`'s (each
            // block is classified once, at the first string that reaches it, and its bytes
            // outside ASCII are added to `wide`), so each byte of `string` lies in a block
            // with none: `string` is ASCII, which is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(string) })
        } else {
            simdutf8::basic::from_utf8(string).ok()
        }
    }

    /// A quoted plain string.
    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        self.plain_string()
    }

    /// A quoted plain string or `null`.
    fn optional_string(&mut self) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'n') {
            (self.bytes.get(self.at..self.at + 4) == Some(b"null")).then(|| {
                self.at += 4;
                None
            })
        } else {
            self.string().map(Some)
        }
    }

    fn value(&mut self, field: Field, event: &mut Event) -> Option<()> {
        match field {
            Field::Ts => {
                let text = self.string()?;
                event.ts = self.times.parse(text).ok()?;
            }
            Field::Kind => event.kind = variant(self.string()?)?,
            Field::Credential => {
                let text = self.string()?;
                self.put(&mut event.credential, text);
            }
            Field::EventId => {
                let text = self.string()?;
                self.put(&mut event.event_id, text);
            }
            Field::Outcome => event.outcome = variant(self.string()?)?,
            Field::Format => event.format = variant(self.string()?)?,
            Field::ExpiresAt => {
                event.expires_at = match self.optional_string()? {
                    Some(text) => Some(self.times.parse(text).ok()?),
                    None => None,
                }
            }
            Field::AllowedZones => self.strings(&mut event.allowed_zones)?,
            _ => {
                let slot = field.optional_string(event)?;
                match self.optional_string()? {
                    Some(text) => self.put(slot.get_or_insert_with(String::new), text),
                    None => *slot = None,
                }
            }
        }
        Some(())
    }

    /// `text`, a string of the record, written over `into` (see [`overwrite_window`]).
    #[inline(always)]
    fn put(&self, into: &mut String, text: &str) {
        let start = text
            .as_ptr()
            .addr()
            .wrapping_sub(self.bytes.as_ptr().addr());
        let window = self
            .bytes
            .get(start..)
            .and_then(<[u8]>::first_chunk::<WINDOW>);
        overwrite_window(into, text, window);
    }

    /// An array of plain strings, written over `into`'s strings.
    fn strings(&mut self, into: &mut Vec<String>) -> Option<()> {
        self.byte(b'[')?;
        self.whitespace();
        let mut count = 0;
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                let text = self.string()?;
                match into.get_mut(count) {
                    Some(slot) => self.put(slot, text),
                    None => into.push(text.to_owned()),
                }
                count += 1;
                self.whitespace();
                match self.next()? {
                    b',' => self.whitespace(),
                    b']' => break,
                    _ => return None,
                }
            }
        }
        into.truncate(count);
        Some(())
    }
}

/// As the derived `Deserialize` reads a unit variant from a JSON string (an unknown name is
/// left to the serde reader, for its error text).
fn variant<T: for<'de> Deserialize<'de>>(text: &str) -> Option<T> {
    let deserializer: value::StrDeserializer<'_, value::Error> = text.into_deserializer();
    T::deserialize(deserializer).ok()
}

/// The bytes that end a plain string (a quote, a backslash or a control character), one bit
/// per byte, for one 64-byte block of the record at a time: each block is classified once, at
/// the first string that reaches it.
struct Stops {
    /// The block `mask` is of.
    block: usize,
    mask: u64,
    /// The bytes outside ASCII of every block classified so far, OR-ed: not 0 once any of
    /// them holds one.
    wide: u64,
}

impl Stops {
    fn new() -> Stops {
        Stops {
            block: usize::MAX,
            mask: 0,
            wide: 0,
        }
    }

    /// The index of the first stop byte of `bytes` from `at` on (`bytes.len()` or beyond if
    /// none). `bytes` is the same record at every call.
    #[inline(always)]
    fn string_end(&mut self, bytes: &[u8], at: usize) -> usize {
        let mut block = at / 64;
        let mut stops = self.of_block(bytes, block) & (!0u64 << (at % 64));
        while stops == 0 {
            block += 1;
            if block * 64 >= bytes.len() {
                return bytes.len();
            }
            stops = self.of_block(bytes, block);
        }
        block * 64 + stops.trailing_zeros() as usize
    }

    #[inline(always)]
    fn of_block(&mut self, bytes: &[u8], block: usize) -> u64 {
        if self.block != block {
            self.block = block;
            let classes = block_classes(bytes, block * 64);
            self.mask = classes.stops;
            self.wide |= classes.wide;
        }
        self.mask
    }
}

/// What a block of 64 bytes holds, one bit per byte (bit 0 for its first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Classes {
    /// The bytes that end a plain string.
    stops: u64,
    /// The bytes outside ASCII (the high bit set).
    wide: u64,
}

/// The classes of the 64 bytes of `bytes` from `start`; bytes past the end count as stops,
/// and as ASCII.
#[inline(always)]
fn block_classes(bytes: &[u8], start: usize) -> Classes {
    let rest = bytes.get(start..).unwrap_or_default();
    // A block past the record's end is read from the record's last 64 bytes, which end
    // where it does: their classes shifted down to `start`, and the stops past the end set.
    let (block, past) = match (rest.first_chunk::<64>(), bytes.last_chunk::<64>()) {
        (Some(block), _) => (block, 0),
        (None, Some(last)) if !rest.is_empty() => (last, 64 - rest.len()),
        _ => return padded_classes(rest),
    };
    let Classes { stops, wide } = classes64(block);
    let (stops, wide) = (stops >> past, wide >> past);
    Classes {
        stops: if past == 0 {
            stops
        } else {
            stops | !0u64 << (64 - past)
        },
        wide,
    }
}

/// [`block_classes`] of a record under 64 bytes (or past its end): zeros are control
/// characters, so the padding stops any string that runs into it.
#[cold]
fn padded_classes(rest: &[u8]) -> Classes {
    let mut block = [0u8; 64];
    block[..rest.len()].copy_from_slice(rest);
    classes64(&block)
}

/// The classes of `block`, sixteen bytes at a time with SSE2 (every x86-64 has it).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn classes64(block: &[u8; 64]) -> Classes {
    // SAFETY: SSE2 is enabled for this target (checked by the `cfg` above), which is all
    // `classes64_sse2` asks; it reads nothing but `block`'s 64 bytes.
    unsafe { classes64_sse2(block) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn classes64_sse2(block: &[u8; 64]) -> Classes {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut stops = 0u64;
    let mut wide = 0u64;
    for (index, chunk) in block.as_chunks::<16>().0.iter().enumerate() {
        // SAFETY: `chunk` is sixteen readable bytes, all an unaligned load reads. (Built from
        // two `u64` halves instead, the compiler loaded each chunk three times: 8 extra
        // instructions a block.)
        let x = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // Unsigned x <= 0x1f: max(x, 0x1f) is 0x1f.
        let control = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        let found = _mm_or_si128(_mm_or_si128(quote, backslash), control);
        stops |= u64::from(_mm_movemask_epi8(found) as u16) << (index * 16);
        // The high bit of each byte is what `movemask` gathers.
        wide |= u64::from(_mm_movemask_epi8(x) as u16) << (index * 16);
    }
    Classes { stops, wide }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn classes64(block: &[u8; 64]) -> Classes {
    classes64_words(block)
}

/// The classes of `block`, eight bytes at a time in a `u64`: for targets without SSE2, and
/// the reference the SSE2 version is tested against. Each test is exact per byte (no borrow
/// crosses from one byte into the next), so every stop is marked, not only the first.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn classes64_words(block: &[u8; 64]) -> Classes {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// The high bit of each byte of `x` that is zero, exactly.
    fn zero_bytes(x: u64) -> u64 {
        !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
    }
    /// The eight high bits of `x` gathered into one byte, bit k for byte k.
    fn gather(x: u64) -> u64 {
        ((x & HIGH) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let mut stops = 0u64;
    let mut wide = 0u64;
    for (index, chunk) in block.as_chunks::<8>().0.iter().enumerate() {
        let x = u64::from_le_bytes(*chunk);
        let quote = zero_bytes(x ^ (ONES * u64::from(b'"')));
        let backslash = zero_bytes(x ^ (ONES * u64::from(b'\\')));
        // Below 0x20: high bit clear and bits 5 and 6 clear.
        let control = zero_bytes(x & (ONES * 0xe0));
        stops |= gather(quote | backslash | control) << (index * 8);
        wide |= gather(x) << (index * 8);
    }
    Classes { stops, wide }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A byte of a record, biased towards the ones that stop a string.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => 0x20u8..=0x7e,
            1 => Just(b'"'),
            1 => Just(b'\\'),
            1 => 0u8..0x20,
            1 => 0x80u8..=0xff,
        ]
    }

    fn is_stop(byte: u8) -> bool {
        matches!(byte, b'"' | b'\\' | 0..=0x1f)
    }

    proptest! {
        /// Both classifiers mark exactly the stop bytes and the bytes outside ASCII.
        #[test]
        fn every_stop_byte_is_found_and_nothing_else(block in prop::array::uniform32(byte())
            .prop_flat_map(|low| (Just(low), prop::array::uniform32(byte())))) {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&block.0);
            bytes[32..].copy_from_slice(&block.1);
            let expected = Classes {
                stops: (0..64).fold(0u64, |mask, i| mask | (u64::from(is_stop(bytes[i])) << i)),
                wide: (0..64).fold(0u64, |mask, i| mask | (u64::from(!bytes[i].is_ascii()) << i)),
            };
            prop_assert_eq!(classes64_words(&bytes), expected);
            prop_assert_eq!(classes64(&bytes), expected);
        }

        /// A block that runs past the record's end is its bytes with every stop past the end
        /// set and no byte there outside ASCII, whether it is read from the record's last 64
        /// bytes or padded (a record under 64 bytes).
        #[test]
        fn a_last_block_marks_its_stops_and_the_end(
            bytes in prop::collection::vec(byte(), 0..200),
        ) {
            for start in (0..=bytes.len()).step_by(64) {
                let expected = Classes {
                    stops: (0..64).fold(0u64, |mask, i| {
                        let stop = bytes.get(start + i).is_none_or(|&b| is_stop(b));
                        mask | (u64::from(stop) << i)
                    }),
                    wide: (0..64).fold(0u64, |mask, i| {
                        let wide = bytes.get(start + i).is_some_and(|b| !b.is_ascii());
                        mask | (u64::from(wide) << i)
                    }),
                };
                prop_assert_eq!(block_classes(&bytes, start), expected, "start {}", start);
            }
        }

        /// The scanner's search finds what a byte-by-byte one finds, from any start, across
        /// blocks and at the end.
        #[test]
        fn string_end_finds_the_first_stop_byte(
            bytes in prop::collection::vec(byte(), 0..200),
            start in 0usize..200,
        ) {
            let start = start.min(bytes.len());
            let expected = bytes[start..]
                .iter()
                .position(|&b| is_stop(b))
                .map_or(bytes.len(), |i| start + i);
            prop_assert_eq!(Stops::new().string_end(&bytes, start).min(bytes.len()), expected);
        }
    }

    #[test]
    fn reads_the_common_shape_and_leaves_the_rest_to_serde() {
        let mut event = super::super::blank();
        let common = r#" {"ts": "2026-03-01T12:00:00Z", "kind":"access","credential":"AKIA1","source_ip":"10.0.1.7","zone":null,"allowed_zones":[],"event_id":"e"}
"#;
        assert!(read(common.as_bytes(), &mut event, &mut Memory::default()).is_some());
        assert_eq!(
            event,
            super::super::decode_as_derived(common.as_bytes()).unwrap()
        );
        for other in [
            // An escape, a number, a duplicate, an unknown field, a missing field.
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AK\"IA"}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","zone":7}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","kind":"leak"}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","x":"y"}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access"}"#,
            // Unknown variants, a bad time, a trailing comma, trailing junk, cut short.
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"use","credential":"k"}"#,
            r#"{"ts":"yesterday","kind":"access","credential":"k"}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k",}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k"} x"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k""#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","zone":nul}"#,
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","allowed_zones":["a",]}"#,
        ] {
            assert!(
                read(other.as_bytes(), &mut event, &mut Memory::default()).is_none(),
                "{other}"
            );
        }
    }

    /// The scanner checks UTF-8 itself: a string outside ASCII is read when it is UTF-8, in
    /// the first block or a later one, and the record is left to serde (whose reader rejects
    /// it) when a string is not UTF-8, whether the bad bytes are in its first block or not.
    #[test]
    fn reads_utf8_outside_ascii_and_leaves_what_is_not_utf8_to_serde() {
        let pad = "x".repeat(70);
        for record in [
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA1","principal":"zoë","event_id":"e"}"#.to_owned(),
            format!(r#"{{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA1","endpoint":"/{pad}","principal":"日本","event_id":"e"}}"#),
        ] {
            let mut event = super::super::blank();
            assert!(read(record.as_bytes(), &mut event, &mut Memory::default()).is_some(), "{record}");
            assert_eq!(event, super::super::decode_as_derived(record.as_bytes()).unwrap());
        }
        for (before, after) in [
            // A lone continuation byte, a cut two-byte sequence, an overlong '/', a surrogate.
            (
                r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA"#,
                b"\x80".as_slice(),
            ),
            (
                r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA"#,
                b"\xc3",
            ),
            (
                r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA"#,
                b"\xc0\xaf",
            ),
            (
                r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA"#,
                b"\xed\xa0\x80",
            ),
        ] {
            for padding in [0, 70] {
                let mut record = before.as_bytes().to_vec();
                record.extend("x".repeat(padding).bytes());
                record.extend_from_slice(after);
                record.extend_from_slice(br#"1"}"#);
                assert!(std::str::from_utf8(&record).is_err());
                let mut event = super::super::blank();
                assert!(
                    read(&record, &mut event, &mut Memory::default()).is_none(),
                    "{record:?}"
                );
            }
        }
    }
}
