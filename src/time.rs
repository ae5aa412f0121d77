//! Event time: the only clock the detection core knows.
//!
//! Every window, baseline and alert timestamp in credwatch is derived from the `ts` of events,
//! never from the wall clock, so replaying the same input yields the same alerts byte for byte.
//! Timestamps are microseconds since the Unix epoch (UTC); durations in configuration and rules
//! are written the human way (`90s`, `5m`, `1h`, `30d`) and parsed into [`Period`].

use std::fmt;
use std::num::NonZeroU64;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;

/// A point in event time: microseconds since the Unix epoch, UTC.
///
/// Held with its sign bit flipped in a `NonZeroU64`: unsigned order is then time order, and
/// the one value it cannot hold (`i64::MIN` microseconds, 292,000 years before the epoch,
/// taken as the next one up) is the niche that makes an `Option<Timestamp>` 8 bytes instead
/// of 16. A credential's record holds several.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(NonZeroU64);

const SIGN: u64 = 1 << 63;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        let flipped = (micros as u64) ^ SIGN;
        match NonZeroU64::new(flipped) {
            Some(held) => Timestamp(held),
            // `i64::MIN`, the niche: one microsecond later.
            None => Timestamp(NonZeroU64::MIN),
        }
    }

    pub const fn from_secs(secs: i64) -> Self {
        Timestamp::from_micros(secs.saturating_mul(MICROS_PER_SECOND))
    }

    /// The start of the `minutes`-th minute since the epoch.
    pub const fn from_minutes(minutes: i64) -> Self {
        Timestamp::from_micros(minutes.saturating_mul(MICROS_PER_MINUTE))
    }

    pub const fn micros(self) -> i64 {
        (self.0.get() ^ SIGN) as i64
    }

    pub const fn millis(self) -> i64 {
        self.micros().div_euclid(1000)
    }

    /// The minute this instant falls in, counted from the epoch (floor, also before 1970).
    pub const fn minute(self) -> i64 {
        self.micros().div_euclid(MICROS_PER_MINUTE)
    }

    /// Parses RFC 3339 (`2026-03-01T12:00:00Z`, `2026-03-01T13:00:00.250+01:00`).
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        Rfc3339Reader::default().parse(text)
    }

    /// [`Timestamp::parse_rfc3339`] by chrono alone, for what the fast path leaves.
    fn parse_rfc3339_slow(text: &str) -> Result<Self, String> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("invalid RFC 3339 timestamp `{text}`: {e}"))?;
        Ok(Timestamp::from_micros(parsed.timestamp_micros()))
    }

    /// Parses the time forms logs use: RFC 3339, else (taken as UTC) ISO 8601 without offset
    /// (`2022-11-29 00:09:04.38`, `2024-07-30T21:31:21`) or AWS's console form
    /// (`Jul 30, 2024, 9:46:15 PM`, `Aug 1, 2024 1:33:28 PM`).
    pub fn parse_lenient(text: &str) -> Option<Self> {
        if let Ok(ts) = Timestamp::parse_rfc3339(text) {
            return Some(ts);
        }
        let text = text.trim();
        let formats = [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%b %d, %Y, %I:%M:%S %p",
            "%b %d, %Y %I:%M:%S %p",
        ];
        formats.iter().find_map(|format| {
            chrono::NaiveDateTime::parse_from_str(text, format)
                .ok()
                .map(|naive| Timestamp::from_micros(naive.and_utc().timestamp_micros()))
        })
    }

    /// RFC 3339 in UTC with as many fractional digits as needed: stable across runs.
    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_micros(self.micros()) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => format!("@{}us", self.micros()),
        }
    }

    pub fn saturating_add(self, period: Period) -> Self {
        Timestamp::from_micros(self.micros().saturating_add(period.0))
    }

    /// `self - earlier`, saturating; negative when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Period {
        Period(self.micros().saturating_sub(earlier.micros()))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Timestamp").field(&self.micros()).finish()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// RFC 3339 in human-readable formats (JSON, TOML); microseconds in binary ones (checkpoints).
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.micros())
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return i64::deserialize(deserializer).map(Timestamp::from_micros);
        }
        // A visitor rather than `Cow<str>`, whose impl copies every string into a `String`.
        struct Rfc3339;
        impl serde::de::Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Rfc3339)
    }
}

/// Reads the RFC 3339 timestamps of a stream ([`Timestamp::parse_rfc3339`] for each), keeping
/// the minute of the last one it read: a stream's timestamps mostly share the minute of the
/// one before, whose date and time of day are then neither checked nor converted again.
#[derive(Debug, Default, Clone)]
pub struct Rfc3339Reader {
    /// The last `YYYY-MM-DDTHH:MM` read, as `fast` loads it (0: none, as no valid
    /// text loads as 0), and its seconds since the epoch before any offset.
    minute: u128,
    minute_seconds: i64,
}

impl Rfc3339Reader {
    /// `Timestamp::parse_rfc3339(text)`.
    pub fn parse(&mut self, text: &str) -> Result<Timestamp, String> {
        match self.fast(text.as_bytes()) {
            Some(ts) => Ok(ts),
            None => Timestamp::parse_rfc3339_slow(text),
        }
    }

    /// The form nearly every log writes, `2026-03-01T12:00:00[.fraction](Z|+hh:mm|-hh:mm)`,
    /// read without chrono (a third of the native decode's time went there); `None` for
    /// anything else, valid or not, which chrono then reads or rejects with its reason. Same
    /// result as chrono's RFC 3339 parser on every input it accepts (a property test checks),
    /// with or without the minute the reader remembers.
    fn fast(&mut self, b: &[u8]) -> Option<Timestamp> {
        /// The value of a run of digits (the offset's hours and minutes).
        fn digits(b: &[u8]) -> Option<i64> {
            b.iter().try_fold(0i64, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
            })
        }
        let (head, _) = b.split_first_chunk::<19>()?;
        let minute = u128::from_le_bytes(*head.first_chunk::<16>()?);
        let [s1, s2] = [head[17].wrapping_sub(b'0'), head[18].wrapping_sub(b'0')];
        if head[16] != b':' || s1 > 9 || s2 > 9 || s1 * 10 + s2 > 59 {
            return None; // Leap seconds and errors: chrono's answer.
        }
        let second = i64::from(s1 * 10 + s2);
        if minute != self.minute {
            self.minute_seconds = minute_seconds(minute)?;
            self.minute = minute;
        }
        let mut rest = &b[19..];
        let mut micros = 0;
        if let [b'.', fraction @ ..] = rest {
            // One pass over the digits, then one scaling to microseconds (nanoseconds truncated,
            // as chrono reads them).
            const POW10: [i64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
            let mut value = 0i64;
            let mut count = 0;
            for &c in fraction.iter().take(10) {
                let digit = c.wrapping_sub(b'0');
                if digit > 9 {
                    break;
                }
                value = value * 10 + i64::from(digit);
                count += 1;
            }
            if !(1..=9).contains(&count) {
                return None;
            }
            micros = if count <= 6 {
                value * POW10[6 - count]
            } else {
                value / POW10[count - 6]
            };
            rest = &fraction[count..];
        }
        let offset = match rest {
            [b'Z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = hours * 3600 + minutes * 60;
                if *sign == b'-' {
                    -seconds
                } else {
                    seconds
                }
            }
            _ => return None,
        };
        let seconds = self.minute_seconds + second - offset;
        Some(Timestamp::from_micros(seconds * MICROS_PER_SECOND + micros))
    }
}

/// The seconds since the epoch of `YYYY-MM-DDTHH:MM` (its 16 bytes as a little-endian
/// word), if it is a valid date and time of day. The separators are compared at once and the
/// twelve digits checked at once: a byte is a digit when its high half is 3 and adding 6
/// keeps it so, and a carry out of a byte comes only from a byte that fails its own test.
fn minute_seconds(word: u128) -> Option<i64> {
    const SEPARATORS: u128 = 0xff << 32 | 0xff << 56 | 0xff << 80 | 0xff << 104;
    const EXPECTED: u128 =
        (b'-' as u128) << 32 | (b'-' as u128) << 56 | (b'T' as u128) << 80 | (b':' as u128) << 104;
    const DIGITS: u128 = !SEPARATORS;
    const ZEROS: u128 = 0x3030_3030_3030_3030_3030_3030_3030_3030 & DIGITS;
    const HIGH: u128 = 0xf0f0_f0f0_f0f0_f0f0_f0f0_f0f0_f0f0_f0f0 & DIGITS;
    const SIXES: u128 = 0x0606_0606_0606_0606_0606_0606_0606_0606 & DIGITS;
    const MONTH_DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if word & SEPARATORS != EXPECTED
        || word & HIGH != ZEROS
        || word.wrapping_add(SIXES) & HIGH != ZEROS
    {
        return None;
    }
    let d = word.wrapping_sub(ZEROS).to_le_bytes();
    let two = |i: usize| i64::from(d[i]) * 10 + i64::from(d[i + 1]);
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, minute) = (two(11), two(14));
    if !(1..=12).contains(&month) || hour > 23 || minute > 59 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = MONTH_DAYS[month as usize - 1] + i64::from(month == 2 && leap);
    if day < 1 || day > month_days {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60)
}

/// A length of event time in microseconds, written in config as `30s`, `5m`, `2h`, `30d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Period(i64);

impl Period {
    pub const ZERO: Period = Period(0);

    pub const fn from_micros(micros: i64) -> Self {
        Period(micros)
    }

    pub const fn from_secs(secs: i64) -> Self {
        Period(secs * MICROS_PER_SECOND)
    }

    pub const fn from_minutes(minutes: i64) -> Self {
        Period(minutes * MICROS_PER_MINUTE)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_SECOND as f64
    }

    pub fn as_minutes_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_MINUTE as f64
    }

    /// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`; `0` alone is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(Period::ZERO);
        }
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let hint =
            "expected a number and a unit: ms, s, m, h or d (for example `90s`, `5m`, `30d`)";
        let value: i64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: {hint}"))?;
        let unit_micros = match unit {
            "ms" => 1_000,
            "s" => MICROS_PER_SECOND,
            "m" => MICROS_PER_MINUTE,
            "h" => 60 * MICROS_PER_MINUTE,
            "d" => 24 * 60 * MICROS_PER_MINUTE,
            _ => return Err(format!("invalid duration `{text}`: {hint}")),
        };
        value
            .checked_mul(unit_micros)
            .map(Period)
            .ok_or_else(|| format!("duration `{text}` is too large"))
    }
}

impl fmt::Display for Period {
    /// The largest whole unit that divides the period exactly, so `Display` round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            ("d", 24 * 60 * MICROS_PER_MINUTE),
            ("h", 60 * MICROS_PER_MINUTE),
            ("m", MICROS_PER_MINUTE),
            ("s", MICROS_PER_SECOND),
            ("ms", 1_000),
        ];
        if self.0 == 0 {
            return f.write_str("0s");
        }
        for (name, size) in units {
            if self.0 % size == 0 {
                return write!(f, "{}{}", self.0 / size, name);
            }
        }
        write!(f, "{}us", self.0)
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::parse(s)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return i64::deserialize(deserializer).map(Period);
        }
        let text = String::deserialize(deserializer)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_optional_timestamp_takes_no_more_room_than_a_timestamp() {
        assert_eq!(std::mem::size_of::<Option<Timestamp>>(), 8);
        let edges = [i64::MIN + 1, -1, 0, 1, i64::MAX];
        for pair in edges.windows(2) {
            assert!(Timestamp::from_micros(pair[0]) < Timestamp::from_micros(pair[1]));
        }
        assert_eq!(Timestamp::from_micros(i64::MIN).micros(), i64::MIN + 1);
        assert_eq!(format!("{:?}", Timestamp::from_micros(-5)), "Timestamp(-5)");
    }

    fn chrono_micros(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|parsed| parsed.timestamp_micros())
    }

    proptest! {
        /// Microseconds come back as given (`i64::MIN` as the next one up), and timestamps
        /// order as their microseconds do.
        #[test]
        fn timestamps_keep_their_micros_and_order(a in any::<i64>(), b in any::<i64>()) {
            let (ta, tb) = (Timestamp::from_micros(a), Timestamp::from_micros(b));
            prop_assert_eq!(ta.micros(), a.max(i64::MIN + 1));
            prop_assert_eq!(ta.cmp(&tb), a.max(i64::MIN + 1).cmp(&b.max(i64::MIN + 1)));
        }

        /// The fast path agrees with chrono wherever it answers, on valid and invalid input.
        #[test]
        fn the_fast_rfc3339_path_agrees_with_chrono(
            year in 0i64..10_000, month in 0u32..14, day in 0u32..33,
            hour in 0u32..26, minute in 0u32..61, second in 0u32..62,
            fraction in "(\\.[0-9]{0,11})?",
            offset in "Z|z|[+-](0[0-9]|1[0-9]|2[0-5]):[0-6][0-9]|",
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}");
            if let Some(fast) = Rfc3339Reader::default().fast(text.as_bytes()) {
                prop_assert_eq!(Some(fast.micros()), chrono_micros(&text), "{}", text);
            }
            prop_assert_eq!(
                Timestamp::parse_rfc3339(&text).ok().map(Timestamp::micros),
                chrono_micros(&text),
                "{}", text
            );
        }

        /// A reader that remembers a minute reads each text as chrono does, whether the text
        /// before it had the same minute, another valid one or none at all.
        #[test]
        fn a_reader_remembering_a_minute_agrees_with_chrono(
            texts in prop::collection::vec((
                prop_oneof![
                    Just("2026-03-01T12:00".to_owned()),
                    Just("2026-03-01T12:01".to_owned()),
                    Just("2024-02-29T23:59".to_owned()),
                    "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]"],
                ":[0-6][0-9]",
                "(\\.[0-9]{0,10})?",
                "Z|[+-](0[0-9]|2[0-5]):[0-6][0-9]|x",
            ), 1..12),
        ) {
            let mut reader = Rfc3339Reader::default();
            for (minute, second, fraction, offset) in texts {
                let text = format!("{minute}{second}{fraction}{offset}");
                prop_assert_eq!(
                    reader.parse(&text).ok().map(Timestamp::micros),
                    chrono_micros(&text),
                    "{}", text
                );
            }
        }
    }

    #[test]
    fn the_fast_path_takes_the_common_forms() {
        for text in [
            "2026-03-01T12:00:00Z",
            "2026-03-01T12:00:00.250Z",
            "2024-02-29T23:59:59.123456789+01:00",
            "1969-12-31T23:59:59.5-05:30",
        ] {
            let fast = Rfc3339Reader::default().fast(text.as_bytes()).expect(text);
            assert_eq!(Some(fast.micros()), chrono_micros(text), "{text}");
        }
        assert!(Rfc3339Reader::default()
            .fast(b"2023-02-29T00:00:00Z")
            .is_none());
        assert!(
            Rfc3339Reader::default()
                .fast(b"2026-03-01T12:00:60Z")
                .is_none(),
            "leap second: chrono's"
        );
        assert!(Rfc3339Reader::default()
            .fast(b"2026-03-01 12:00:00Z")
            .is_none());
    }

    #[test]
    fn rfc3339_round_trips_in_utc() {
        let ts = Timestamp::parse_rfc3339("2026-03-01T13:00:00.250+01:00").unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-03-01T12:00:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339(&ts.to_rfc3339()).unwrap(), ts);
    }

    #[test]
    fn rejects_timestamps_without_offset() {
        let err = Timestamp::parse_rfc3339("2026-03-01 12:00:00").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn lenient_parsing_takes_offsetless_times_as_utc() {
        let expected = Timestamp::parse_rfc3339("2022-11-29T00:09:04.380Z").unwrap();
        assert_eq!(
            Timestamp::parse_lenient("2022-11-29 00:09:04.38"),
            Some(expected)
        );
        assert_eq!(
            Timestamp::parse_lenient("2022-11-29T00:09:04.380"),
            Some(expected)
        );
        assert_eq!(
            Timestamp::parse_lenient("Nov 29, 2022, 12:09:04 AM"),
            Some(Timestamp::from_secs(expected.micros() / 1_000_000))
        );
        assert_eq!(Timestamp::parse_lenient("redacted"), None);
    }

    #[test]
    fn minute_floors_before_the_epoch() {
        assert_eq!(Timestamp::from_micros(-1).minute(), -1);
        assert_eq!(Timestamp::from_secs(59).minute(), 0);
        assert_eq!(Timestamp::from_secs(60).minute(), 1);
    }

    #[test]
    fn periods_parse_and_display() {
        for (text, secs) in [("90s", 90), ("5m", 300), ("2h", 7200), ("30d", 2_592_000)] {
            let period = Period::parse(text).unwrap();
            assert_eq!(period, Period::from_secs(secs));
        }
        assert_eq!(Period::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Period::parse("120m").unwrap().to_string(), "2h");
        assert_eq!(Period::parse("0").unwrap(), Period::ZERO);
        assert!(Period::parse("5 minutes").is_err());
        assert!(Period::parse("m").is_err());
        assert!(Period::parse("99999999999999999d").is_err());
    }
}
