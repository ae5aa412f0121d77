//! Column builders: events and alerts appended one at a time, sealed into a record batch in
//! the column order of [`super::schema`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, DictionaryArray, Int32Array, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::Int32Type;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::alerts::{Activity, Alert};
use crate::event::{Event, Outcome};
use crate::zones::Network;

/// How much to reserve for a new batch: as much as the last batch of the table held, so an
/// hour of a steady stream fills its builders without growing them. Growing means copying every
/// buffer into a fresh allocation whose pages the kernel must then zero: 12-15% of the
/// appending thread's time in a profile before batches were sized this way.
#[derive(Clone, Debug)]
pub(crate) struct Sizing {
    rows: usize,
    /// Bytes of string values per column, in schema order; empty before the first batch, when
    /// each column's estimate per row applies.
    bytes: Vec<usize>,
}

impl Sizing {
    /// `rows` rows, string sizes from the columns' estimates.
    pub(crate) fn guess(rows: usize) -> Sizing {
        Sizing {
            rows,
            bytes: Vec::new(),
        }
    }

    /// The size of `batch`, with an eighth to spare (and at least 4,096 rows), at most
    /// `max_rows` rows.
    pub(crate) fn of(batch: &RecordBatch, max_rows: usize) -> Sizing {
        use arrow::array::AsArray;
        let spare = |n: usize| n + n / 8;
        let rows = spare(batch.num_rows()).clamp(4096.min(max_rows), max_rows.max(1));
        let bytes = batch
            .columns()
            .iter()
            .map(|column| {
                column
                    .as_string_opt::<i32>()
                    .map_or(0, |strings| spare(strings.values().len()))
            })
            .collect();
        Sizing { rows, bytes }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The builder of string column `column` (its index in the schema), of about `per_row`
    /// bytes a row when there is no batch to go by.
    fn strings(&self, column: usize, per_row: usize) -> StringBuilder {
        let bytes = match self.bytes.get(column) {
            Some(&measured) => measured,
            None => self.rows * per_row,
        };
        StringBuilder::with_capacity(self.rows, bytes)
    }
}

/// A batch of rows of one table being built.
pub(crate) trait Rows: Send + 'static {
    /// Empty builders sized by `sizing` (grown as needed).
    fn with_sizing(sizing: &Sizing) -> Self;
    fn len(&self) -> usize;
    /// The rows so far as a batch; the builder is empty afterwards.
    fn seal(&mut self) -> Result<RecordBatch, ArrowError>;
}

pub(crate) fn times(rows: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")
}

pub(crate) fn list() -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new())
}

/// A column of labels (`kind`, `zone`, ...: a handful of distinct values) built as a
/// dictionary of the batch's distinct values and a 4-byte key per row
/// ([`super::schema::label`]). Sorting the batch then moves keys, not bytes, and a query's
/// reader hands the column over as keys too, instead of a 16-byte view per row.
pub(crate) struct Labels {
    keys: Vec<i32>,
    values: Vec<Box<str>>,
    index: HashMap<Box<str>, i32, crate::state::Hashing>,
}

impl Labels {
    pub(crate) fn with_capacity(rows: usize) -> Labels {
        Labels {
            keys: Vec::with_capacity(rows),
            values: Vec::new(),
            index: HashMap::default(),
        }
    }

    pub(crate) fn append(&mut self, label: &str) {
        // Rows of one credential mostly repeat the row before.
        let key = match self.keys.last() {
            Some(&last) if *self.values[last as usize] == *label => last,
            _ => self.key(label),
        };
        self.keys.push(key);
    }

    fn key(&mut self, label: &str) -> i32 {
        if let Some(&key) = self.index.get(label) {
            return key;
        }
        let key = i32::try_from(self.values.len()).expect("fewer than 2^31 distinct labels");
        self.values.push(label.into());
        self.index.insert(label.into(), key);
        key
    }

    /// The rows so far as a dictionary array; empty afterwards.
    pub(crate) fn finish(&mut self) -> Result<DictionaryArray<Int32Type>, ArrowError> {
        let keys = Int32Array::from(std::mem::take(&mut self.keys));
        let values = StringArray::from_iter_values(self.values.drain(..));
        self.index.clear();
        DictionaryArray::try_new(keys, Arc::new(values))
    }
}

pub(crate) fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Unknown => "unknown",
    }
}

/// `a.b.c.0/24` of an IPv4 /24, without the formatting machinery (this runs per event).
fn v4_network(prefix: u32, buffer: &mut [u8; 18]) -> &str {
    let mut len = 0;
    for (i, octet) in prefix.to_be_bytes()[..3].iter().enumerate() {
        if i > 0 {
            buffer[len] = b'.';
            len += 1;
        }
        let (hundreds, tens, ones) = (octet / 100, octet / 10 % 10, octet % 10);
        if hundreds > 0 {
            buffer[len] = b'0' + hundreds;
            len += 1;
        }
        if hundreds > 0 || tens > 0 {
            buffer[len] = b'0' + tens;
            len += 1;
        }
        buffer[len] = b'0' + ones;
        len += 1;
    }
    buffer[len..len + 5].copy_from_slice(b".0/24");
    len += 5;
    // Only ASCII digits and punctuation were written.
    std::str::from_utf8(&buffer[..len]).unwrap_or("")
}

/// Rows of the `events` table.
pub(crate) struct EventRows {
    time: TimestampMicrosecondBuilder,
    credential: StringBuilder,
    kind: Labels,
    outcome: Labels,
    principal: StringBuilder,
    owner: StringBuilder,
    source_ip: StringBuilder,
    zone: Labels,
    network: StringBuilder,
    declared_zone: StringBuilder,
    endpoint: StringBuilder,
    user_agent: StringBuilder,
    expires_at: TimestampMicrosecondBuilder,
    allowed_zones: ListBuilder<StringBuilder>,
    leak_source: StringBuilder,
    leak_url: StringBuilder,
    secret_hash: StringBuilder,
    event_id: StringBuilder,
    format: Labels,
    ingest_seq: UInt64Builder,
}

impl EventRows {
    /// Appends `event`, placed in `zone` and `network` by the zones stage, as the `seq`th event
    /// of this writer.
    pub(crate) fn push(&mut self, event: &Event, zone: &str, network: Option<Network>, seq: u64) {
        self.time.append_value(event.ts.micros());
        self.credential.append_value(&event.credential);
        self.kind.append(event.kind.as_str());
        self.outcome.append(outcome_str(event.outcome));
        self.principal.append_option(event.principal.as_deref());
        self.owner.append_option(event.owner.as_deref());
        self.source_ip.append_option(event.source_ip.as_deref());
        self.zone.append(zone);
        match network {
            Some(Network::V4(prefix)) => {
                let mut buffer = [0u8; 18];
                self.network.append_value(v4_network(prefix, &mut buffer));
            }
            Some(network) => {
                // Formatted straight into the column, no String per event.
                let _ = write!(self.network, "{network}");
                self.network.append_value("");
            }
            None => self.network.append_null(),
        }
        self.declared_zone.append_option(event.zone.as_deref());
        self.endpoint.append_option(event.endpoint.as_deref());
        self.user_agent.append_option(event.user_agent.as_deref());
        self.expires_at
            .append_option(event.expires_at.map(|t| t.micros()));
        if event.allowed_zones.is_empty() {
            self.allowed_zones.append_null();
        } else {
            for zone in &event.allowed_zones {
                self.allowed_zones.values().append_value(zone);
            }
            self.allowed_zones.append(true);
        }
        self.leak_source.append_option(event.leak_source.as_deref());
        self.leak_url.append_option(event.leak_url.as_deref());
        self.secret_hash.append_option(event.secret_hash.as_deref());
        self.event_id.append_value(&event.event_id);
        self.format.append(event.format.as_str());
        self.ingest_seq.append_value(seq);
    }
}

impl Rows for EventRows {
    fn with_sizing(sizing: &Sizing) -> Self {
        let rows = sizing.rows();
        // Column indices as in `schema::events`; the per-row figures are first guesses.
        EventRows {
            time: times(rows),
            credential: sizing.strings(1, 20),
            kind: Labels::with_capacity(rows),
            outcome: Labels::with_capacity(rows),
            principal: sizing.strings(4, 16),
            owner: sizing.strings(5, 0),
            source_ip: sizing.strings(6, 12),
            zone: Labels::with_capacity(rows),
            network: sizing.strings(8, 14),
            declared_zone: sizing.strings(9, 0),
            endpoint: sizing.strings(10, 16),
            user_agent: sizing.strings(11, 20),
            expires_at: times(0),
            allowed_zones: list(),
            leak_source: sizing.strings(14, 0),
            leak_url: sizing.strings(15, 0),
            secret_hash: sizing.strings(16, 0),
            event_id: sizing.strings(17, 16),
            format: Labels::with_capacity(rows),
            ingest_seq: UInt64Builder::with_capacity(rows),
        }
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    fn seal(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.credential.finish()),
            Arc::new(self.kind.finish()?),
            Arc::new(self.outcome.finish()?),
            Arc::new(self.principal.finish()),
            Arc::new(self.owner.finish()),
            Arc::new(self.source_ip.finish()),
            Arc::new(self.zone.finish()?),
            Arc::new(self.network.finish()),
            Arc::new(self.declared_zone.finish()),
            Arc::new(self.endpoint.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.expires_at.finish()),
            Arc::new(self.allowed_zones.finish()),
            Arc::new(self.leak_source.finish()),
            Arc::new(self.leak_url.finish()),
            Arc::new(self.secret_hash.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.format.finish()?),
            Arc::new(self.ingest_seq.finish()),
        ];
        RecordBatch::try_new(super::schema::events(), columns)
    }
}

/// Rows of the `alerts` table.
pub(crate) struct AlertRows {
    time: TimestampMicrosecondBuilder,
    credential: StringBuilder,
    id: StringBuilder,
    activity: StringBuilder,
    rule: StringBuilder,
    detector: StringBuilder,
    severity: StringBuilder,
    action: StringBuilder,
    count: UInt32Builder,
    summary: StringBuilder,
    owner: StringBuilder,
    source_ip: StringBuilder,
    endpoint: StringBuilder,
    user_agent: StringBuilder,
    event_id: StringBuilder,
    first_seen: TimestampMicrosecondBuilder,
    last_seen: TimestampMicrosecondBuilder,
    ocsf: StringBuilder,
}

impl AlertRows {
    pub(crate) fn push(&mut self, alert: &Alert) {
        let event = &alert.evidence.event;
        self.time.append_value(alert.time.saturating_mul(1000));
        self.credential.append_value(&alert.credential);
        self.id.append_value(&alert.id);
        self.activity.append_value(match alert.activity {
            Activity::Create => "create",
            Activity::Update => "update",
        });
        self.rule.append_value(&alert.rule);
        self.detector.append_value(&alert.detector);
        self.severity.append_value(alert.severity.as_str());
        self.action.append_value(match alert.action {
            crate::rules::Action::Alert => "alert",
            crate::rules::Action::Revoke => "revoke",
        });
        self.count.append_value(alert.count);
        self.summary.append_value(&alert.summary);
        self.owner.append_option(
            alert
                .resources
                .first()
                .and_then(|r| r.owner.as_ref())
                .map(|o| o.name.as_str()),
        );
        self.source_ip.append_option(event.source_ip.as_deref());
        self.endpoint.append_option(event.endpoint.as_deref());
        self.user_agent.append_option(event.user_agent.as_deref());
        self.event_id.append_value(&event.event_id);
        self.first_seen
            .append_value(alert.finding_info.first_seen_time.saturating_mul(1000));
        self.last_seen
            .append_value(alert.finding_info.last_seen_time.saturating_mul(1000));
        self.ocsf.append_value(alert.to_json());
    }
}

impl Rows for AlertRows {
    /// Alerts are few: no point reserving for them.
    fn with_sizing(_sizing: &Sizing) -> Self {
        AlertRows {
            time: times(0),
            credential: StringBuilder::new(),
            id: StringBuilder::new(),
            activity: StringBuilder::new(),
            rule: StringBuilder::new(),
            detector: StringBuilder::new(),
            severity: StringBuilder::new(),
            action: StringBuilder::new(),
            count: UInt32Builder::new(),
            summary: StringBuilder::new(),
            owner: StringBuilder::new(),
            source_ip: StringBuilder::new(),
            endpoint: StringBuilder::new(),
            user_agent: StringBuilder::new(),
            event_id: StringBuilder::new(),
            first_seen: times(0),
            last_seen: times(0),
            ocsf: StringBuilder::new(),
        }
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    fn seal(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.credential.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.activity.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.detector.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.summary.finish()),
            Arc::new(self.owner.finish()),
            Arc::new(self.source_ip.finish()),
            Arc::new(self.endpoint.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.first_seen.finish()),
            Arc::new(self.last_seen.finish()),
            Arc::new(self.ocsf.finish()),
        ];
        RecordBatch::try_new(super::schema::alerts(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_batch_reserves_what_the_last_one_held() {
        use crate::event::{Event, Kind};
        use crate::time::Timestamp;
        let mut rows = EventRows::with_sizing(&Sizing::guess(2));
        for i in 0..3 {
            let mut event = Event::new(Timestamp::from_secs(i), Kind::Access, "AKIAEXAMPLE0000001");
            event.event_id = format!("event-{i:04}");
            rows.push(&event, "internet", None, i as u64);
        }
        let batch = rows.seal().expect("batch");
        let credential_bytes = 3 * "AKIAEXAMPLE0000001".len();

        let sizing = Sizing::of(&batch, 1_000_000);
        // At least 4,096 rows; string bytes as measured, plus an eighth.
        assert_eq!(sizing.rows(), 4096);
        assert_eq!(sizing.bytes[1], credential_bytes + credential_bytes / 8);
        assert_eq!(sizing.bytes[0], 0, "time is not a string column");
        let next = EventRows::with_sizing(&sizing);
        assert!(next.credential.values_capacity() >= sizing.bytes[1]);
        assert!(next.event_id.values_capacity() >= 3 * "event-0000".len());
        // Never more than a file's rows.
        assert_eq!(Sizing::of(&batch, 100).rows(), 100);
        assert_eq!(Sizing::of(&batch, 2).rows(), 2);
    }

    #[test]
    fn v4_networks_format_like_display() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "203.0.113.255",
            "255.255.255.255",
            "1.20.100.7",
        ] {
            let Some(Network::V4(prefix)) = crate::zones::parse_ip(ip).map(Network::of) else {
                panic!("{ip} is IPv4");
            };
            let mut buffer = [0u8; 18];
            assert_eq!(
                v4_network(prefix, &mut buffer),
                Network::V4(prefix).to_string()
            );
        }
    }
}
