//! The native format: one [`Event`] as a JSON object per record.
//!
//! Strict on purpose: unknown fields, a missing credential or a bad timestamp reject the record
//! with a reason, because a typo in a field name would otherwise silently blind a detector.
//!
//! The hot path of every native input, so the record is read by a hand-written visitor rather
//! than the derived `Deserialize`: the same fields, defaults and errors (a property test holds
//! the two to the same result on any input), but the strings are copied into buffers that
//! [`Decoder::recycle`] hands back from the events of the previous record, so a steady stream
//! allocates nothing per event.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

#[cfg(test)]
use super::record_hash_id;
use super::{record_hash_id_into, DecodeError, Decoder};
use crate::decode::Format;
use crate::event::{Event, Kind, Outcome};
use crate::time::Timestamp;

/// Spare string buffers kept between records: enough for a record's worth of events many
/// times over, and none so large that one huge field stays resident.
const MAX_SPARE_STRINGS: usize = 256;
const MAX_SPARE_CAPACITY: usize = 1024;

#[derive(Debug, Default, Clone)]
pub struct NativeDecoder {
    /// Emptied string buffers from recycled events, reused for the next record's strings.
    spare: Vec<String>,
}

impl NativeDecoder {
    pub fn new() -> NativeDecoder {
        NativeDecoder::default()
    }
}

impl Decoder for NativeDecoder {
    fn decode(&mut self, record: &[u8], out: &mut Vec<Event>) -> Result<(), DecodeError> {
        // One UTF-8 check over the whole record, then a `str` reader, which trusts it: parsing
        // from bytes would check every string again on its own.
        let text = std::str::from_utf8(record)
            .map_err(|e| DecodeError::new(format!("invalid native event: not UTF-8 ({e})")))?;
        // Filled where it lies in `out`: the event is large, and moving it costs more than
        // reading most of its fields.
        out.push(Event::new(
            Timestamp::from_micros(0),
            Kind::Access,
            String::new(),
        ));
        let event = out.last_mut().expect("just pushed");
        if let Err(reason) = parse_into(text, event, &mut self.spare).and_then(|()| {
            check(event)?;
            if event.event_id.is_empty() {
                record_hash_id_into(trim_ascii(record), &mut event.event_id);
            }
            Ok(())
        }) {
            self.strip(event);
            out.pop();
            return Err(reason);
        }
        Ok(())
    }

    fn recycle(&mut self, events: &mut Vec<Event>) {
        for event in events.iter_mut() {
            self.strip(event);
        }
        // What is left owns nothing but the (rare) allowed zones.
        events.clear();
    }
}

impl NativeDecoder {
    /// Takes `event`'s strings into the spare buffers.
    fn strip(&mut self, event: &mut Event) {
        self.keep(std::mem::take(&mut event.credential));
        self.keep(std::mem::take(&mut event.event_id));
        for field in [
            &mut event.principal,
            &mut event.source_ip,
            &mut event.zone,
            &mut event.endpoint,
            &mut event.user_agent,
            &mut event.owner,
            &mut event.leak_source,
            &mut event.leak_url,
            &mut event.secret_hash,
        ] {
            if let Some(string) = field.take() {
                self.keep(string);
            }
        }
    }

    fn keep(&mut self, mut string: String) {
        if self.spare.len() < MAX_SPARE_STRINGS
            && string.capacity() != 0
            && string.capacity() <= MAX_SPARE_CAPACITY
        {
            string.clear();
            self.spare.push(string);
        }
    }
}

/// What the native format asks beyond the fields' types.
fn check(event: &Event) -> Result<(), DecodeError> {
    if event.credential.trim().is_empty() {
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

/// Reads one native event from `text` into `event` (a blank one), exactly as
/// `serde_json::from_str::<Event>` reads it, with its strings in buffers from `spare`.
fn parse_into(text: &str, event: &mut Event, spare: &mut Vec<String>) -> Result<(), DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    EventSeed { event, spare }
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

#[derive(Clone, Copy)]
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
        Ok(match name {
            "ts" => Field::Ts,
            "kind" => Field::Kind,
            "credential" => Field::Credential,
            "principal" => Field::Principal,
            "source_ip" => Field::SourceIp,
            "zone" => Field::Zone,
            "endpoint" => Field::Endpoint,
            "user_agent" => Field::UserAgent,
            "outcome" => Field::Outcome,
            "expires_at" => Field::ExpiresAt,
            "allowed_zones" => Field::AllowedZones,
            "owner" => Field::Owner,
            "leak_source" => Field::LeakSource,
            "leak_url" => Field::LeakUrl,
            "secret_hash" => Field::SecretHash,
            "event_id" => Field::EventId,
            "format" => Field::Format,
            _ => return Err(E::unknown_field(name, FIELDS)),
        })
    }
}

/// A string copied into a spare buffer (borrowed from the input when it has no escapes, so
/// the copy is the only one).
struct StringSeed<'a> {
    spare: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl Visitor<'_> for StringSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        let mut string = self.spare.pop().unwrap_or_default();
        string.push_str(text);
        Ok(string)
    }
}

/// An optional string: `null` is `None`, as for the derived `Option<String>`.
struct OptionalStringSeed<'a> {
    spare: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for OptionalStringSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalStringSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        StringSeed { spare: self.spare }
            .deserialize(deserializer)
            .map(Some)
    }
}

struct EventSeed<'a> {
    event: &'a mut Event,
    spare: &'a mut Vec<String>,
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
        let EventSeed { event, spare } = self;
        let mut seen = 0u32;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let bit = 1u32 << field as u32;
            if seen & bit != 0 {
                return Err(de::Error::duplicate_field(field.name()));
            }
            seen |= bit;
            let optional = match field {
                Field::Ts => {
                    event.ts = map.next_value()?;
                    continue;
                }
                Field::Kind => {
                    event.kind = map.next_value()?;
                    continue;
                }
                Field::Credential => {
                    event.credential = map.next_value_seed(StringSeed { spare: &mut *spare })?;
                    continue;
                }
                Field::EventId => {
                    event.event_id = map.next_value_seed(StringSeed { spare: &mut *spare })?;
                    continue;
                }
                Field::Outcome => {
                    event.outcome = map.next_value::<Outcome>()?;
                    continue;
                }
                Field::ExpiresAt => {
                    event.expires_at = map.next_value()?;
                    continue;
                }
                Field::AllowedZones => {
                    event.allowed_zones = map.next_value()?;
                    continue;
                }
                Field::Format => {
                    event.format = map.next_value::<Format>()?;
                    continue;
                }
                Field::Principal => &mut event.principal,
                Field::SourceIp => &mut event.source_ip,
                Field::Zone => &mut event.zone,
                Field::Endpoint => &mut event.endpoint,
                Field::UserAgent => &mut event.user_agent,
                Field::Owner => &mut event.owner,
                Field::LeakSource => &mut event.leak_source,
                Field::LeakUrl => &mut event.leak_url,
                Field::SecretHash => &mut event.secret_hash,
            };
            *optional = map.next_value_seed(OptionalStringSeed { spare: &mut *spare })?;
        }
        // In the derived order: the first required field missing is the one named.
        for field in [Field::Ts, Field::Kind, Field::Credential] {
            if seen & (1u32 << field as u32) == 0 {
                return Err(de::Error::missing_field(field.name()));
            }
        }
        Ok(())
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

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
            prop::collection::vec("[a-z]{0,4}", 0..3)
                .prop_map(|zones| serde_json::to_string(&zones).expect("JSON")),
            Just("7".to_owned()),
            Just("true".to_owned()),
            Just("{}".to_owned()),
        ]
    }

    /// A value of the right type for field `name`.
    fn fitting(name: &str) -> BoxedStrategy<String> {
        let quoted = |words: Vec<&'static str>| {
            prop::sample::select(words)
                .prop_map(|word| format!("\"{word}\""))
                .boxed()
        };
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

    /// A record: the required fields or not, other fields in any order (now and then the same
    /// one twice, or an unknown one), any values; now and then cut short or followed by junk.
    fn record() -> impl Strategy<Value = String> {
        (prop::collection::vec(field(), 0..8), any::<bool>(), 0..6u8).prop_map(
            |(mut fields, complete, tail)| {
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
                let body: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("\"{name}\":{value}"))
                    .collect();
                let mut text = format!("{{{}}}", body.join(","));
                match tail {
                    0 => text.push_str(" x"),
                    1 => {
                        let mut cut = text.len() / 2;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut)
                    }
                    _ => {}
                }
                text
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written reader is the derived `Deserialize` made faster: same event or
        /// same error on any record, with buffers reused from earlier records.
        #[test]
        fn reads_every_record_as_the_derived_deserialize_does(records in prop::collection::vec(record(), 1..6)) {
            let mut decoder = NativeDecoder::new();
            let mut events = Vec::new();
            for text in &records {
                decoder.recycle(&mut events);
                let mut fast = Event::new(Timestamp::from_micros(0), Kind::Access, String::new());
                let read = parse_into(text, &mut fast, &mut decoder.spare);
                let derived = serde_json::from_str::<Event>(text);
                match (read, derived) {
                    (Ok(()), Ok(derived)) => {
                        prop_assert_eq!(&fast, &derived);
                        events.push(fast);
                    }
                    (Err(fast), Err(derived)) => {
                        prop_assert_eq!(fast.reason, format!("invalid native event: {derived}"), "{}", text)
                    }
                    (read, derived) => prop_assert!(false, "{text}: {read:?} but derived {derived:?}"),
                }
            }
        }
    }

    #[test]
    fn recycled_buffers_carry_nothing_over() {
        let mut decoder = NativeDecoder::new();
        let mut events = Vec::new();
        let long = r#"{"ts":"2026-03-01T12:00:00Z","kind":"access","credential":"AKIA-LONG-ID","principal":"alice@example.com","source_ip":"10.0.1.7","endpoint":"s3:GetObject","user_agent":"aws-cli/2.15","event_id":"e1"}"#;
        let short = r#"{"ts":"2026-03-01T12:00:01Z","kind":"revoke","credential":"k2"}"#;
        decoder.decode(long.as_bytes(), &mut events).unwrap();
        decoder.recycle(&mut events);
        assert!(events.is_empty());
        assert_eq!(decoder.spare.len(), 6, "the long event's strings are kept");
        decoder.decode(short.as_bytes(), &mut events).unwrap();
        assert_eq!(
            events[0],
            serde_json::from_str::<Event>(short)
                .map(|mut event| {
                    event.event_id = record_hash_id(short.as_bytes());
                    event
                })
                .unwrap()
        );
        assert!(events[0].principal.is_none() && events[0].endpoint.is_none());
        decoder.recycle(&mut events);
        for _ in 0..MAX_SPARE_STRINGS * 2 {
            events.push(serde_json::from_str::<Event>(long).unwrap());
        }
        events.push(Event::new(
            Timestamp::from_micros(0),
            Kind::Access,
            "x".repeat(MAX_SPARE_CAPACITY + 1),
        ));
        decoder.recycle(&mut events);
        assert_eq!(
            decoder.spare.len(),
            MAX_SPARE_STRINGS,
            "the pool is bounded"
        );
        assert!(decoder
            .spare
            .iter()
            .all(|s| s.is_empty() && s.capacity() <= MAX_SPARE_CAPACITY));
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
