//! Reading archived events back into [`Event`]s: for `backtest`, `explain` and the round-trip
//! tests. Accepts the columns as written (`Utf8`) or as DataFusion reads them (`Utf8View`).

use arrow::array::{Array, AsArray, ListArray, StringArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::decode::Format;
use crate::event::{Event, Kind, Outcome};
use crate::time::Timestamp;

/// Why a batch is not a batch of archived events.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("column `{0}` is missing")]
    Missing(&'static str),
    #[error("column `{column}` has type {found}, expected {expected}")]
    Type {
        column: &'static str,
        found: DataType,
        expected: &'static str,
    },
    #[error("row {row}: `{column}` has an unknown value {value:?}")]
    Value {
        row: usize,
        column: &'static str,
        value: String,
    },
}

fn strings(batch: &RecordBatch, column: &'static str) -> Result<StringArray, ReadError> {
    let array = batch
        .column_by_name(column)
        .ok_or(ReadError::Missing(column))?;
    let utf8 = cast(array, &DataType::Utf8).map_err(|_| ReadError::Type {
        column,
        found: array.data_type().clone(),
        expected: "a string",
    })?;
    Ok(utf8.as_string::<i32>().clone())
}

fn times(
    batch: &RecordBatch,
    column: &'static str,
) -> Result<TimestampMicrosecondArray, ReadError> {
    let array = batch
        .column_by_name(column)
        .ok_or(ReadError::Missing(column))?;
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(array
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone()),
        other => Err(ReadError::Type {
            column,
            found: other.clone(),
            expected: "a microsecond timestamp",
        }),
    }
}

fn lists(batch: &RecordBatch, column: &'static str) -> Result<ListArray, ReadError> {
    let array = batch
        .column_by_name(column)
        .ok_or(ReadError::Missing(column))?;
    let wanted = DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new(
        "item",
        DataType::Utf8,
        true,
    )));
    let list = cast(array, &wanted).map_err(|_| ReadError::Type {
        column,
        found: array.data_type().clone(),
        expected: "a list of strings",
    })?;
    Ok(list.as_list::<i32>().clone())
}

fn optional(array: &StringArray, row: usize) -> Option<String> {
    array.is_valid(row).then(|| array.value(row).to_owned())
}

/// The events of one batch of the `events` table, in row order.
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<Event>, ReadError> {
    let time = times(batch, "time")?;
    let credential = strings(batch, "credential")?;
    let kind = strings(batch, "kind")?;
    let outcome = strings(batch, "outcome")?;
    let principal = strings(batch, "principal")?;
    let owner = strings(batch, "owner")?;
    let source_ip = strings(batch, "source_ip")?;
    let declared_zone = strings(batch, "declared_zone")?;
    let endpoint = strings(batch, "endpoint")?;
    let user_agent = strings(batch, "user_agent")?;
    let expires_at = times(batch, "expires_at")?;
    let allowed_zones = lists(batch, "allowed_zones")?;
    let leak_source = strings(batch, "leak_source")?;
    let leak_url = strings(batch, "leak_url")?;
    let secret_hash = strings(batch, "secret_hash")?;
    let event_id = strings(batch, "event_id")?;
    let format = strings(batch, "format")?;

    let mut events = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let unknown = |column, value: &str| ReadError::Value {
            row,
            column,
            value: value.to_owned(),
        };
        let kind = match kind.value(row) {
            "access" => Kind::Access,
            "issue" => Kind::Issue,
            "revoke" => Kind::Revoke,
            "leak" => Kind::Leak,
            other => return Err(unknown("kind", other)),
        };
        let outcome = match outcome.value(row) {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "unknown" => Outcome::Unknown,
            other => return Err(unknown("outcome", other)),
        };
        let format: Format = format
            .value(row)
            .parse()
            .map_err(|_| unknown("format", format.value(row)))?;
        let zones = if allowed_zones.is_valid(row) {
            let values = allowed_zones.value(row);
            let values = values.as_string::<i32>();
            (0..values.len())
                .filter(|&i| values.is_valid(i))
                .map(|i| values.value(i).to_owned())
                .collect()
        } else {
            Vec::new()
        };
        events.push(Event {
            ts: Timestamp::from_micros(time.value(row)),
            kind,
            credential: credential.value(row).to_owned(),
            principal: optional(&principal, row),
            source_ip: optional(&source_ip, row),
            zone: optional(&declared_zone, row),
            endpoint: optional(&endpoint, row),
            user_agent: optional(&user_agent, row),
            outcome,
            expires_at: expires_at
                .is_valid(row)
                .then(|| Timestamp::from_micros(expires_at.value(row))),
            allowed_zones: zones,
            owner: optional(&owner, row),
            leak_source: optional(&leak_source, row),
            leak_url: optional(&leak_url, row),
            secret_hash: optional(&secret_hash, row),
            event_id: event_id.value(row).to_owned(),
            format,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::rows::{EventRows, Rows, Sizing};

    fn full_event() -> Event {
        let mut event = Event::new(
            Timestamp::parse_rfc3339("2026-11-23T10:00:00.123456Z").unwrap(),
            Kind::Issue,
            "AKIAFULL",
        );
        event.principal = Some("arn:aws:iam::1:user/ci".into());
        event.source_ip = Some("203.0.113.9".into());
        event.zone = Some("aws-internal".into());
        event.endpoint = Some("iam:CreateAccessKey".into());
        event.user_agent = Some("aws-cli/2.15.0 Python/3.11".into());
        event.outcome = Outcome::Success;
        event.expires_at = Some(Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap());
        event.allowed_zones = vec!["ci".into(), "prod".into()];
        event.owner = Some("ci-bot".into());
        event.leak_source = Some("github".into());
        event.leak_url = Some("https://example.com/leak".into());
        event.secret_hash = Some("hmac-sha256:00ff".into());
        event.event_id = "e-1".into();
        event.format = Format::Cloudtrail;
        event
    }

    #[test]
    fn every_field_survives_a_batch() {
        let bare = Event::new(Timestamp::from_secs(0), Kind::Access, "AKIABARE");
        let full = full_event();
        let mut rows = EventRows::with_sizing(&Sizing::guess(2));
        rows.push(
            &full,
            "internet",
            crate::zones::parse_ip("203.0.113.9").map(crate::zones::Network::of),
            0,
        );
        rows.push(&bare, "unknown", None, 1);
        let batch = rows.seal().unwrap();
        assert_eq!(rows.len(), 0, "sealing empties the builder");
        assert_eq!(events_from_batch(&batch).unwrap(), vec![full, bare]);
        let network = batch.column_by_name("network").unwrap();
        let network = cast(network, &DataType::Utf8).unwrap();
        assert_eq!(network.as_string::<i32>().value(0), "203.0.113.0/24");
    }

    #[test]
    fn an_unknown_kind_is_an_error_naming_row_and_column() {
        let mut rows = EventRows::with_sizing(&Sizing::guess(2));
        rows.push(&full_event(), "internet", None, 0);
        let batch = rows.seal().unwrap();
        let mut columns = batch.columns().to_vec();
        let teleport = StringArray::from(vec!["teleport"]);
        columns[2] = cast(&teleport, &crate::archive::schema::label()).unwrap();
        let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let error = events_from_batch(&bad).unwrap_err().to_string();
        assert_eq!(error, "row 0: `kind` has an unknown value \"teleport\"");
    }
}
