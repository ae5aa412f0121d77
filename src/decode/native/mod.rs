//! The native format: one [`Event`] as a JSON object per record.
//!
//! Strict on purpose: unknown fields, a missing credential or a bad timestamp reject the record
//! with a reason, because a typo in a field name would otherwise silently blind a detector.
//!
//! The hot path of every native input, so the record is read by a hand-written visitor rather
//! than the derived `Deserialize`: the same fields, defaults and errors (a property test holds
//! the two to the same result on any input), but read into an event [`Decoder::recycle`] gave
//! back from an earlier record, whose strings are overwritten in their buffers, so a steady
//! stream allocates nothing per event.
//!
//! In front of that visitor, [`scan`] reads the shape nearly every record has (a flat object
//! of plain strings) without serde, and hands anything else to the visitor: the visitor is
//! the reader of record, the scanner a shortcut that must agree with it.

mod scan;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{record_hash_id, record_hash_id_into, DecodeError, Decoder};
use crate::decode::Format;
use crate::event::{Event, Kind, Outcome};
use crate::text::overwrite;
use crate::time::Timestamp;

/// Recycled events kept for reuse: many records' worth, and a whole batch of
/// `replay --threads 2` (256 lines), which hands its events back to be decoded into again.
const MAX_POOLED_EVENTS: usize = 256;
/// Events of a record longer than this are not kept, so that no huge field's buffer stays
/// resident.
const MAX_POOLED_RECORD: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct NativeDecoder {
    /// Events handed back by `recycle`, read into again by the next records.
    pool: Vec<Event>,
    /// A record longer than [`MAX_POOLED_RECORD`] was decoded since the last `recycle`.
    large: bool,
    /// What the scanner remembers of the last record: its minute and its field order.
    memory: scan::Memory,
}

impl NativeDecoder {
    pub fn new() -> NativeDecoder {
        NativeDecoder::default()
    }
}

impl Decoder for NativeDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        self.large |= record.len() > MAX_POOLED_RECORD;
        // The usual case, one event per record and the last record's event recycled: the two
        // vectors swap, and the event is read where it lies, never moved (it is large).
        let swapped = out.is_empty() && self.pool.len() == 1;
        if swapped {
            std::mem::swap(out, &mut self.pool);
        } else {
            out.push(self.pool.pop().unwrap_or_else(blank));
        }
        let event = out.last_mut().expect("an event to read into");
        // The scanner reads the common shape, checking its strings' UTF-8 as it goes; whatever
        // it leaves, serde reads from the start, after one UTF-8 check over the whole record
        // (a `str` reader trusts it: parsing from bytes would check every string on its own).
        let parsed = match scan::read(record, event, &mut self.memory) {
            Some(()) => Ok(()),
            None => utf8(record).and_then(|text| parse_into(text, event)),
        };
        let read = parsed.and_then(|()| {
            check(event)?;
            if event.event_id.is_empty() {
                record_hash_id_into(record.trim_ascii(), &mut event.event_id);
            }
            Ok(())
        });
        if read.is_err() {
            if swapped {
                std::mem::swap(out, &mut self.pool);
            } else {
                self.pool.extend(out.pop());
            }
        }
        read
    }

    fn recycle(&mut self, events: &mut Vec<Event>) {
        if std::mem::take(&mut self.large) {
            events.clear();
        } else if self.pool.is_empty() {
            // The usual case (each record's events came from the pool): a swap, no copy.
            std::mem::swap(events, &mut self.pool);
            self.pool.truncate(MAX_POOLED_EVENTS);
        } else {
            let room = MAX_POOLED_EVENTS.saturating_sub(self.pool.len());
            events.truncate(room);
            self.pool.append(events);
        }
    }
}

/// The reference `NativeDecoder` is held to (by the property test and the fuzz harness): the
/// derived `Deserialize` of [`Event`], then the same checks and derived id, with the same
/// error texts. Slow; not for input.
#[doc(hidden)]
pub fn decode_as_derived(record: &[u8]) -> Result<Event, DecodeError> {
    let text = utf8(record)?;
    let mut event: Event = serde_json::from_str(text)
        .map_err(|e| DecodeError::new(format!("invalid native event: {e}")))?;
    check(&event)?;
    if event.event_id.is_empty() {
        event.event_id = record_hash_id(record.trim_ascii());
    }
    Ok(event)
}

fn blank() -> Event {
    Event::new(Timestamp::from_micros(0), Kind::Access, String::new())
}

/// `record` as text. The check is simdutf8's (about four times the standard library's on
/// ASCII); only a record that fails it is checked again, for the standard library's error.
fn utf8(record: &[u8]) -> Result<&str, DecodeError> {
    simdutf8::basic::from_utf8(record).or_else(|_| {
        std::str::from_utf8(record)
            .map_err(|e| DecodeError::new(format!("invalid native event: not UTF-8 ({e})")))
    })
}

/// What the native format asks beyond the fields' types.
fn check(event: &Event) -> Result<(), DecodeError> {
    if crate::text::trim(&event.credential).is_empty() {
        return Err(DecodeError::new(
            "invalid native event: `credential` is empty",
        ));
    }
    if event.kind != Kind::Issue && (event.expires_at.is_some() || !event.allowed_zones.is_empty())
    {
        return Err(DecodeError::new(format!(
            "invalid native event: `expires_at` and `allowed_zones` belong to `issue` events, not `{}`",
            event.kind.as_str()
        )));
    }
    Ok(())
}

/// Reads one native event from `text` into `event` (any earlier one: every field is written
/// or reset), exactly as `serde_json::from_str::<Event>` reads it.
fn parse_into(text: &str, event: &mut Event) -> Result<(), DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    EventSeed { event }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| DecodeError::new(format!("invalid native event: {e}")))
}

/// The field names in declaration order, as the derived `Deserialize` lists them in its
/// "unknown field" error.
const FIELDS: &[&str] = &[
    "ts",
    "kind",
    "credential",
    "principal",
    "source_ip",
    "zone",
    "endpoint",
    "user_agent",
    "outcome",
    "expires_at",
    "allowed_zones",
    "owner",
    "leak_source",
    "leak_url",
    "secret_hash",
    "event_id",
    "format",
];

#[derive(Clone, Copy, Debug)]
enum Field {
    Ts,
    Kind,
    Credential,
    Principal,
    SourceIp,
    Zone,
    Endpoint,
    UserAgent,
    Outcome,
    ExpiresAt,
    AllowedZones,
    Owner,
    LeakSource,
    LeakUrl,
    SecretHash,
    EventId,
    Format,
}

impl Field {
    fn name(self) -> &'static str {
        FIELDS[self as usize]
    }

    /// The field's bit in a set of fields seen.
    const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// The optional string field of `event` this is, if it is one.
    fn optional_string(self, event: &mut Event) -> Option<&mut Option<String>> {
        Some(match self {
            Field::Principal => &mut event.principal,
            Field::SourceIp => &mut event.source_ip,
            Field::Zone => &mut event.zone,
            Field::Endpoint => &mut event.endpoint,
            Field::UserAgent => &mut event.user_agent,
            Field::Owner => &mut event.owner,
            Field::LeakSource => &mut event.leak_source,
            Field::LeakUrl => &mut event.leak_url,
            Field::SecretHash => &mut event.secret_hash,
            _ => return None,
        })
    }

    /// The field named `name`: by length and first and last byte (unique among the fields),
    /// then one comparison of known length; a `match` on the names would compare the key with
    /// each in turn.
    fn from_name(bytes: &[u8]) -> Option<Field> {
        let (&first, &last) = (bytes.first()?, bytes.last()?);
        Some(match (bytes.len(), first, last) {
            (2, b't', b's') if bytes == b"ts" => Field::Ts,
            (4, b'k', b'd') if bytes == b"kind" => Field::Kind,
            (10, b'c', b'l') if bytes == b"credential" => Field::Credential,
            (9, b'p', b'l') if bytes == b"principal" => Field::Principal,
            (9, b's', b'p') if bytes == b"source_ip" => Field::SourceIp,
            (4, b'z', b'e') if bytes == b"zone" => Field::Zone,
            (8, b'e', b't') if bytes == b"endpoint" => Field::Endpoint,
            (10, b'u', b't') if bytes == b"user_agent" => Field::UserAgent,
            (7, b'o', b'e') if bytes == b"outcome" => Field::Outcome,
            (10, b'e', b't') if bytes == b"expires_at" => Field::ExpiresAt,
            (13, b'a', b's') if bytes == b"allowed_zones" => Field::AllowedZones,
            (5, b'o', b'r') if bytes == b"owner" => Field::Owner,
            (11, b'l', b'e') if bytes == b"leak_source" => Field::LeakSource,
            (8, b'l', b'l') if bytes == b"leak_url" => Field::LeakUrl,
            (11, b's', b'h') if bytes == b"secret_hash" => Field::SecretHash,
            (8, b'e', b'd') if bytes == b"event_id" => Field::EventId,
            (6, b'f', b't') if bytes == b"format" => Field::Format,
            _ => return None,
        })
    }
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Field::from_name(name.as_bytes()).ok_or_else(|| E::unknown_field(name, FIELDS))
    }
}

/// A string written over `into` (borrowed from the input when it has no escapes, so the copy
/// into the buffer is the only one).
struct StringInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for StringInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl Visitor<'_> for StringInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        overwrite(self.0, text);
        Ok(())
    }
}

/// An optional string written over `into`: `null` is `None`, as for the derived
/// `Option<String>`.
struct OptionalStringInto<'a>(&'a mut Option<String>);

impl<'de> DeserializeSeed<'de> for OptionalStringInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalStringInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        StringInto(self.0.get_or_insert_with(String::new)).deserialize(deserializer)
    }
}

struct EventSeed<'a> {
    event: &'a mut Event,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_struct("Event", FIELDS, self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let event = self.event;
        let mut seen = 0u32;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            if seen & field.bit() != 0 {
                return Err(de::Error::duplicate_field(field.name()));
            }
            seen |= field.bit();
            match field {
                Field::Ts => event.ts = map.next_value()?,
                Field::Kind => event.kind = map.next_value()?,
                Field::Credential => map.next_value_seed(StringInto(&mut event.credential))?,
                Field::EventId => map.next_value_seed(StringInto(&mut event.event_id))?,
                Field::Outcome => event.outcome = map.next_value::<Outcome>()?,
                Field::ExpiresAt => event.expires_at = map.next_value()?,
                Field::AllowedZones => event.allowed_zones = map.next_value()?,
                Field::Format => event.format = map.next_value::<Format>()?,
                _ => {
                    let optional = field.optional_string(event).expect("an optional string");
                    map.next_value_seed(OptionalStringInto(optional))?
                }
            }
        }
        // In the derived order: the first required field missing is the one named.
        for field in REQUIRED_FIELDS {
            if unseen(seen, field) {
                return Err(de::Error::missing_field(field.name()));
            }
        }
        reset_unseen(event, seen);
        Ok(())
    }
}

fn unseen(seen: u32, field: Field) -> bool {
    seen & field.bit() == 0
}

/// What the record left out (the fields not in `seen`) takes its default, whatever the
/// recycled event held.
fn reset_unseen(event: &mut Event, seen: u32) {
    if seen == ALL_FIELDS {
        return;
    }
    if unseen(seen, Field::EventId) {
        event.event_id.clear();
    }
    if unseen(seen, Field::Outcome) {
        event.outcome = Outcome::default();
    }
    if unseen(seen, Field::ExpiresAt) {
        event.expires_at = None;
    }
    if unseen(seen, Field::AllowedZones) {
        event.allowed_zones.clear();
    }
    if unseen(seen, Field::Format) {
        event.format = Format::default();
    }
    for field in OPTIONAL_STRINGS {
        if unseen(seen, field) {
            if let Some(optional) = field.optional_string(event) {
                *optional = None;
            }
        }
    }
}

/// The fields the derived `Deserialize` requires, in its order.
const REQUIRED_FIELDS: [Field; 3] = [Field::Ts, Field::Kind, Field::Credential];

/// [`REQUIRED_FIELDS`] as a set.
const REQUIRED: u32 =
    REQUIRED_FIELDS[0].bit() | REQUIRED_FIELDS[1].bit() | REQUIRED_FIELDS[2].bit();

const ALL_FIELDS: u32 = (1 << FIELDS.len()) - 1;

const OPTIONAL_STRINGS: [Field; 9] = [
    Field::Principal,
    Field::SourceIp,
    Field::Zone,
    Field::Endpoint,
    Field::UserAgent,
    Field::Owner,
    Field::LeakSource,
    Field::LeakUrl,
    Field::SecretHash,
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JSON value a native record's field might hold, right or wrong.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("\"2026-03-01T12:00:00Z\"".to_owned()),
            Just("\"2026-03-01T12:00:00.25+02:00\"".to_owned()),
            Just("\"not a time\"".to_owned()),
            prop::sample::select(vec![
                "access",
                "issue",
                "revoke",
                "leak",
                "success",
                "failure",
                "unknown",
                "native",
                "cloudtrail",
                "vault",
                "",
            ])
            .prop_map(|word| format!("\"{word}\"")),
            // Strings with escapes, unicode and quotes: copied, not borrowed.
            "[a-z0-9 :/._\\\\\"\u{e9}\u{1F600}-]{0,12}"
                .prop_map(|text| { serde_json::to_string(&text).expect("a string is JSON") }),
            Just("\"a\\u00e9\\n\\\"b\"".to_owned()),
            // A raw control character, which JSON forbids inside a string.
            Just("\"a\tb\"".to_owned()),
            prop::collection::vec("[a-z]{0,4}", 0..3)
                .prop_map(|zones| serde_json::to_string(&zones).expect("JSON")),
            Just("7".to_owned()),
            Just("true".to_owned()),
            Just("{}".to_owned()),
        ]
    }

    /// One of `words`, as a JSON string.
    fn quoted(words: Vec<&'static str>) -> BoxedStrategy<String> {
        prop::sample::select(words)
            .prop_map(|word| format!("\"{word}\""))
            .boxed()
    }

    /// A value of the right type for field `name`.
    fn fitting(name: &str) -> BoxedStrategy<String> {
        match name {
            "ts" | "expires_at" => quoted(vec![
                "2026-03-01T12:00:00Z",
                "2026-03-01T12:00:00.125-05:30",
                "2026-02-30T12:00:00Z",
            ]),
            "kind" => quoted(vec!["access", "issue", "revoke", "leak"]),
            "outcome" => quoted(vec!["success", "failure", "unknown"]),
            "format" => quoted(vec!["native", "cloudtrail", "k8s"]),
            "allowed_zones" => prop::collection::vec("[a-z]{0,4}", 0..3)
                .prop_map(|zones| serde_json::to_string(&zones).expect("JSON"))
                .boxed(),
            _ => "[a-zA-Z0-9 :/._\\\\\"\u{e9}\u{1F600}-]{0,12}"
                .prop_map(|text| serde_json::to_string(&text).expect("a string is JSON"))
                .boxed(),
        }
    }

    /// A field: mostly a value of its type, sometimes any value.
    fn field() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            12 => prop::sample::select(FIELDS.to_vec()),
            1 => Just("credentail"),
        ]
        .prop_flat_map(|name| {
            (
                Just(name.to_owned()),
                prop_oneof![4 => fitting(name), 1 => value()],
            )
        })
    }

    /// What a record puts between its tokens: mostly nothing, as writers do, sometimes any
    /// JSON whitespace.
    fn spacing() -> impl Strategy<Value = &'static str> {
        prop_oneof![3 => Just(""), 1 => prop::sample::select(vec![" ", "\n  ", " \r\n\t"])]
    }

    /// `fields` as a JSON object, with `gap` around every token.
    fn object(fields: &[(String, String)], gap: &str) -> String {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("\"{name}\"{gap}:{gap}{value}"))
            .collect();
        format!(
            "{gap}{{{gap}{}{gap}}}{gap}",
            body.join(&format!("{gap},{gap}"))
        )
    }

    /// A record: the required fields or not, other fields in any order (now and then the same
    /// one twice, or an unknown one), any values; now and then cut short, with a trailing comma
    /// or followed by junk.
    fn record() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(field(), 0..8),
            any::<bool>(),
            0..6u8,
            spacing(),
        )
            .prop_map(|(mut fields, complete, tail, gap)| {
                if complete {
                    fields
                        .retain(|(name, _)| !["ts", "kind", "credential"].contains(&name.as_str()));
                    for (name, value) in [
                        ("credential", "\"AKIA1\""),
                        ("kind", "\"access\""),
                        ("ts", "\"2026-03-01T12:00:00Z\""),
                    ] {
                        fields.insert(0, (name.to_owned(), value.to_owned()));
                    }
                }
                let mut text = object(&fields, gap);
                match tail {
                    0 => text.push_str(" x"),
                    1 => {
                        let mut cut = text.len() / 2;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut)
                    }
                    2 => {
                        // A trailing comma, which JSON does not allow.
                        if let Some(end) = text.rfind('}') {
                            text.insert(end, ',');
                        }
                    }
                    _ => {}
                }
                text
            })
    }

    /// A value of field `name` as writers write it: a plain string (no escapes) or `null`.
    fn plain(name: &str) -> BoxedStrategy<String> {
        match name {
            "ts" => quoted(vec![
                "2026-03-01T12:00:00Z",
                "2026-03-01T12:00:00.125-05:30",
            ]),
            "expires_at" => prop_oneof![
                quoted(vec!["2026-04-01T00:00:00Z"]),
                Just("null".to_owned())
            ]
            .boxed(),
            "kind" => quoted(vec!["access", "issue", "revoke", "leak"]),
            "outcome" => quoted(vec!["success", "failure", "unknown"]),
            "format" => quoted(vec!["native", "cloudtrail", "github-secret-scanning"]),
            "allowed_zones" => prop::collection::vec("[a-z]{1,4}", 0..3)
                .prop_map(|zones| serde_json::to_string(&zones).expect("JSON"))
                .boxed(),
            "credential" | "event_id" => "\"[A-Za-z0-9 :/._\u{e9}-]{0,24}\"".boxed(),
            _ => prop_oneof![
                4 => "\"[A-Za-z0-9 :/._\u{e9}\u{1F600}-]{0,24}\"",
                1 => Just("null".to_owned()),
            ]
            .boxed(),
        }
    }

    /// A record of the shape writers produce: the required fields and any others once each,
    /// plain strings (no escapes) or `null`, in any order and spacing.
    fn common_record() -> impl Strategy<Value = String> {
        (
            prop::sample::subsequence(FIELDS[3..].to_vec(), 0..FIELDS.len() - 3),
            spacing(),
        )
            .prop_flat_map(|(optional, gap)| {
                let names = FIELDS[..3].iter().chain(&optional).copied();
                let fields: Vec<_> = names
                    .map(|name| (Just(name.to_owned()), plain(name)))
                    .collect();
                fields
                    .prop_shuffle()
                    .prop_map(move |fields| object(&fields, gap))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written reader is the derived `Deserialize` made faster: same event or
        /// same error on any record, read into events recycled from earlier records (or
        /// appended after events not yet recycled, the other path). Now and then a byte
        /// outside ASCII is put anywhere in the record, which mostly makes it not UTF-8.
        #[test]
        fn reads_every_record_as_the_derived_deserialize_does(
            records in prop::collection::vec((
                record(),
                prop::bool::weighted(0.8),
                prop::option::weighted(0.2, (any::<prop::sample::Index>(), 0x80u8..=0xff)),
            ), 1..8)
        ) {
            let mut decoder = NativeDecoder::new();
            let mut events = Vec::new();
            for (text, recycle, stray) in &records {
                if *recycle {
                    decoder.recycle(&mut events);
                }
                let mut bytes = text.as_bytes().to_vec();
                if let Some((at, byte)) = stray {
                    bytes.insert(at.index(bytes.len() + 1), *byte);
                }
                let text = String::from_utf8_lossy(&bytes);
                let before = events.clone();
                let read = decoder.decode(&bytes, &mut events);
                let derived = decode_as_derived(&bytes);
                prop_assert_eq!(&events[..before.len()], &before[..], "earlier events untouched");
                match (read, derived) {
                    (Ok(()), Ok(derived)) => {
                        prop_assert_eq!(events.len(), before.len() + 1);
                        prop_assert_eq!(events.last().unwrap(), &derived, "{}", text);
                    }
                    (Err(fast), Err(derived)) => {
                        prop_assert_eq!(events.len(), before.len(), "nothing appended on error");
                        prop_assert_eq!(fast.reason, derived.reason, "{}", text)
                    }
                    (read, derived) => prop_assert!(false, "{text}: {read:?} but derived {derived:?}"),
                }
            }
        }
    }

    /// Records of one writer: the same fields in the same order, each record with its own
    /// values, now and then changed: two fields swapped, one left out, one twice, one
    /// misspelt, a key escaped (which serde reads as the plain name), other spacing.
    fn records_of_one_shape() -> impl Strategy<Value = Vec<String>> {
        prop::sample::subsequence(FIELDS[3..].to_vec(), 0..FIELDS.len() - 3)
            .prop_flat_map(|optional| {
                let names: Vec<&str> = FIELDS[..3].iter().chain(&optional).copied().collect();
                Just(names).prop_shuffle()
            })
            .prop_flat_map(|names| {
                let fields: Vec<_> = names
                    .iter()
                    .map(|name| (Just(name.to_string()), plain(name)))
                    .collect();
                let record = (
                    fields,
                    0..10u8,
                    any::<(prop::sample::Index, prop::sample::Index)>(),
                    spacing(),
                );
                prop::collection::vec(record, 1..8)
            })
            .prop_map(|records| {
                records
                    .into_iter()
                    .map(|(mut fields, change, (at, other), gap)| {
                        let len = fields.len();
                        let at = at.index(len);
                        match change {
                            0 => fields.swap(at, other.index(len)),
                            1 => drop(fields.remove(at)),
                            2 => fields.push(fields[at].clone()),
                            3 => fields[at].0.push('x'),
                            4 => {
                                let name = &mut fields[at].0;
                                let first = name.remove(0);
                                name.insert_str(0, &format!("\\u{:04x}", u32::from(first)));
                            }
                            _ => {}
                        }
                        object(&fields, if change == 5 { " " } else { gap })
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Keys compared whole with the last record's read as serde reads them byte by byte,
        /// whether the order holds, changes or breaks off.
        #[test]
        fn a_remembered_shape_reads_as_the_derived_deserialize_does(
            records in records_of_one_shape()
        ) {
            let mut decoder = NativeDecoder::new();
            let mut events = Vec::new();
            for text in &records {
                decoder.recycle(&mut events);
                let read = decoder.decode(text.as_bytes(), &mut events);
                match (read, decode_as_derived(text.as_bytes())) {
                    (Ok(()), Ok(derived)) => prop_assert_eq!(&events[0], &derived, "{}", text),
                    (Err(fast), Err(derived)) => prop_assert_eq!(fast.reason, derived.reason, "{}", text),
                    (read, derived) => prop_assert!(false, "{text}: {read:?} but derived {derived:?}"),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The records writers produce take the scanner, not serde (where they would read the
        /// same, only slower: the property above cannot tell), and read as derived.
        #[test]
        fn records_of_the_common_shape_take_the_fast_path(text in common_record()) {
            let mut event = blank();
            let read = scan::read(text.as_bytes(), &mut event, &mut scan::Memory::default());
            prop_assert!(read.is_some(), "{}", text);
            let derived: Event = serde_json::from_str(&text).expect("a valid record");
            prop_assert_eq!(event, derived, "{}", text);
        }
    }

    #[test]
    fn every_field_name_is_known_and_near_misses_are_not() {
        for (index, name) in FIELDS.iter().enumerate() {
            let field = FieldSeed.visit_str::<serde_json::Error>(name).unwrap();
            assert_eq!(field as usize, index, "{name}");
            for near in [&name[1..], &format!("{name}x"), &format!("x{}", &name[1..])] {
                assert!(
                    FieldSeed.visit_str::<serde_json::Error>(near).is_err(),
                    "{near}"
                );
            }
        }
        assert!(FieldSeed.visit_str::<serde_json::Error>("").is_err());
        assert!(FieldSeed.visit_str::<serde_json::Error>("tx_s").is_err());
    }

    #[test]
    fn recycled_events_carry_nothing_over_and_the_pool_is_bounded() {
        let mut decoder = NativeDecoder::new();
        let mut events = Vec::new();
        let long = r#"{"ts":"2026-03-01T12:00:00Z","kind":"issue","credential":"AKIA-LONG-ID","principal":"alice@example.com","source_ip":"10.0.1.7","zone":"prod","endpoint":"s3:GetObject","user_agent":"aws-cli/2.15","outcome":"success","expires_at":"2026-04-01T00:00:00Z","allowed_zones":["prod"],"owner":"alice","leak_source":"x","leak_url":"https://x","secret_hash":"sha256:00","event_id":"e1","format":"cloudtrail"}"#;
        let short = r#"{"ts":"2026-03-01T12:00:01Z","kind":"revoke","credential":"k2"}"#;
        decoder.decode(long.as_bytes(), &mut events).unwrap();
        assert_eq!(events[0], serde_json::from_str::<Event>(long).unwrap());
        decoder.recycle(&mut events);
        assert!(events.is_empty());
        assert_eq!(decoder.pool.len(), 1, "the event is kept");
        decoder.decode(short.as_bytes(), &mut events).unwrap();
        let expected = decode_as_derived(short.as_bytes()).unwrap();
        assert_eq!(events[0], expected, "nothing of the long event is left");
        assert!(decoder.pool.is_empty());

        // A rejected record's event goes back to the pool, and the next one reads clean.
        decoder.recycle(&mut events);
        assert!(decoder
            .decode(
                br#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","bogus":1}"#,
                &mut events
            )
            .is_err());
        assert!(events.is_empty());
        decoder.decode(short.as_bytes(), &mut events).unwrap();
        assert_eq!(events[0], expected);

        for _ in 0..MAX_POOLED_EVENTS * 2 {
            events.push(blank());
        }
        decoder.recycle(&mut events);
        assert_eq!(decoder.pool.len(), MAX_POOLED_EVENTS, "the pool is bounded");

        // A large record's events are dropped, not kept with their buffers.
        let mut decoder = NativeDecoder::new();
        let large = format!(
            r#"{{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","endpoint":"{}"}}"#,
            "x".repeat(MAX_POOLED_RECORD)
        );
        decoder.decode(large.as_bytes(), &mut events).unwrap();
        decoder.recycle(&mut events);
        assert!(events.is_empty() && decoder.pool.is_empty());
    }

    fn decode(line: &str) -> Result<Vec<Event>, DecodeError> {
        let mut out = Vec::new();
        NativeDecoder::new()
            .decode(line.as_bytes(), &mut out)
            .map(|_| out)
    }

    #[test]
    fn decodes_an_access_event_and_derives_a_stable_id() {
        let line = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA1","source_ip":"10.0.1.7","endpoint":"s3:GetObject"}"#;
        let first = decode(line).unwrap();
        let again = decode(&format!("  {line}\n")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].credential, "AKIA1");
        assert_eq!(first[0].event_id.len(), 32);
        assert_eq!(
            first[0].event_id, again[0].event_id,
            "surrounding whitespace must not change the id"
        );
    }

    #[test]
    fn keeps_an_explicit_event_id() {
        let line =
            r#"{"ts":"2026-03-01T12:00:00Z","kind":"revoke","credential":"k","event_id":"evt-9"}"#;
        assert_eq!(decode(line).unwrap()[0].event_id, "evt-9");
    }

    #[test]
    fn a_record_that_is_not_utf8_is_rejected_with_where_it_breaks_and_other_scripts_read() {
        let mut out = Vec::new();
        let bad =
            b"{\"ts\":\"2026-03-01T12:00:00Z\",\"kind\":\"access\",\"credential\":\"AK\xffIA\"}";
        let error = NativeDecoder::new().decode(bad, &mut out).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not UTF-8 (invalid utf-8 sequence of 1 bytes from index 61)"),
            "{error}"
        );
        let line = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"clé-日本","user_agent":"naïve/1.0 🚀"}"#;
        let events = decode(line).unwrap();
        assert_eq!(events[0].credential, "clé-日本");
        assert_eq!(events[0].user_agent.as_deref(), Some("naïve/1.0 🚀"));
    }

    #[test]
    fn rejects_unknown_fields_with_their_name() {
        let line = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credentail":"k"}"#;
        let err = decode(line).unwrap_err();
        assert!(err.reason.contains("credentail"), "{err}");
    }

    #[test]
    fn rejects_empty_credentials_and_bad_kinds() {
        assert!(
            decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":" "}"#).is_err()
        );
        let err =
            decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"use","credential":"k"}"#).unwrap_err();
        assert!(err.reason.contains("unknown variant"), "{err}");
    }

    #[test]
    fn rejects_issue_fields_on_other_kinds() {
        let err = decode(r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"k","allowed_zones":["prod"]}"#)
            .unwrap_err();
        assert!(err.reason.contains("allowed_zones"), "{err}");
    }
}
