//! The archive's three table schemas, in one place: the writers build batches in this column
//! order, `query` registers the tables with them, and the README documents them.
//!
//! Strings are dictionary-encoded by the Parquet writer (low-cardinality columns such as `zone`,
//! `kind` and `endpoint` compress to a few bits per row; near-unique ones such as `event_id`
//! and `source_ip` are front-coded instead, see `writer`). In arrow they are plain `Utf8`,
//! except the events' labels (`kind`, `outcome`, `zone`, `format`: a fixed handful of values),
//! which are arrow dictionaries ([`label`]): the file's arrow schema says so, and a reader then
//! gets those columns as 4-byte keys into the page's dictionary rather than as strings. Times are
//! microseconds in UTC. Lists (`allowed_zones`, `networks`, ...) are `List<Utf8>`, so SQL can use
//! `array_has` and `unnest` on them.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Hive partition columns of `events` and `alerts`: `date=YYYY-MM-DD/hour=HH`.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

pub(crate) fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// A label column: `Dictionary(Int32, Utf8)`. Queries see strings (`kind = 'access'`,
/// `upper(zone)`); the type shows in `DESCRIBE events` and in Arrow and Parquet tools.
pub fn label() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// One row per normalized event, as decoded, plus where it was placed (`zone`, `network`).
pub fn events() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("time", time_type(), false),
                Field::new("credential", DataType::Utf8, false),
                Field::new("kind", label(), false),
                Field::new("outcome", label(), false),
                Field::new("principal", DataType::Utf8, true),
                Field::new("owner", DataType::Utf8, true),
                Field::new("source_ip", DataType::Utf8, true),
                // The zone credwatch placed the event in (from the address or the declared
                // environment), by the configuration in force when it was archived.
                Field::new("zone", label(), false),
                // The /24 (IPv4) or /48 (IPv6) of `source_ip`.
                Field::new("network", DataType::Utf8, true),
                // The environment the log itself declared (`zone` of the native event).
                Field::new("declared_zone", DataType::Utf8, true),
                Field::new("endpoint", DataType::Utf8, true),
                Field::new("user_agent", DataType::Utf8, true),
                Field::new("expires_at", time_type(), true),
                Field::new("allowed_zones", string_list(), true),
                Field::new("leak_source", DataType::Utf8, true),
                Field::new("leak_url", DataType::Utf8, true),
                // A hash of the secret as the log carried it; never the secret.
                Field::new("secret_hash", DataType::Utf8, true),
                Field::new("event_id", DataType::Utf8, false),
                Field::new("format", label(), false),
                // Arrival order within one writing process: ties in `time` keep the order the
                // events were processed in (what `backtest` replays).
                Field::new("ingest_seq", DataType::UInt64, false),
            ]))
        })
        .clone()
}

/// One row per alert emitted: new findings (`activity = 'create'`) and the roll-ups of
/// suppressed repeats (`'update'`), with the full OCSF JSON in `ocsf`.
pub fn alerts() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("time", time_type(), false),
                Field::new("credential", DataType::Utf8, false),
                Field::new("id", DataType::Utf8, false),
                Field::new("activity", DataType::Utf8, false),
                Field::new("rule", DataType::Utf8, false),
                Field::new("detector", DataType::Utf8, false),
                Field::new("severity", DataType::Utf8, false),
                Field::new("action", DataType::Utf8, false),
                Field::new("count", DataType::UInt32, false),
                Field::new("summary", DataType::Utf8, false),
                Field::new("owner", DataType::Utf8, true),
                Field::new("source_ip", DataType::Utf8, true),
                Field::new("endpoint", DataType::Utf8, true),
                Field::new("user_agent", DataType::Utf8, true),
                Field::new("event_id", DataType::Utf8, false),
                Field::new("first_seen", time_type(), false),
                Field::new("last_seen", time_type(), false),
                Field::new("ocsf", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// One row per tracked credential: its state when the archive was last written.
pub fn credentials() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("credential", DataType::Utf8, false),
                Field::new("owner", DataType::Utf8, true),
                Field::new("accesses", DataType::UInt32, false),
                Field::new("first_seen", time_type(), true),
                Field::new("last_seen", time_type(), true),
                Field::new("issued_at", time_type(), true),
                Field::new("expires_at", time_type(), true),
                Field::new("revoked_at", time_type(), true),
                Field::new("leaked_at", time_type(), true),
                Field::new("leak_source", DataType::Utf8, true),
                Field::new("leak_url", DataType::Utf8, true),
                Field::new("allowed_zones", string_list(), false),
                Field::new("allowed_from", DataType::Utf8, false),
                Field::new("seen_zones", string_list(), false),
                Field::new("networks", string_list(), false),
                Field::new("endpoints", string_list(), false),
                Field::new("user_agents", string_list(), false),
                Field::new("rate_mean", DataType::Float64, false),
                Field::new("rate_std_dev", DataType::Float64, false),
                Field::new("rate_active_minutes", DataType::UInt32, false),
            ]))
        })
        .clone()
}

/// The schema a reader sees: top-level strings as `Utf8View`, which DataFusion filters and groups faster
/// and the Parquet reader produces without a copy.
pub fn for_reading(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8 => field.as_ref().clone().with_data_type(DataType::Utf8View),
                _ => field.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    )
}
