//! The `credentials` table: every tracked credential's state as one Parquet file, replaced
//! atomically each time it is exported (`credentials/credentials.parquet`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, StringBuilder, UInt32Builder};
use arrow::record_batch::RecordBatch;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::ArchiveError;
use crate::config::Config;
use crate::state::StateStore;
use crate::time::Timestamp;

/// Where the table's single file lives under the archive directory.
pub fn path(archive: &Path) -> PathBuf {
    archive.join("credentials").join("credentials.parquet")
}

/// All credentials of `store`, sorted by id.
pub fn batch(store: &StateStore, config: &Config) -> Result<RecordBatch, ArchiveError> {
    let mut ids: Vec<String> = Vec::with_capacity(store.len());
    store.for_each(|id, _| ids.push(id.to_owned()));
    ids.sort_unstable();

    let times = || super::rows::times(0);
    let list = super::rows::list;
    let mut credential = StringBuilder::new();
    let mut owner = StringBuilder::new();
    let mut accesses = UInt32Builder::new();
    let (mut first_seen, mut last_seen, mut issued_at) = (times(), times(), times());
    let (mut expires_at, mut revoked_at, mut leaked_at) = (times(), times(), times());
    let mut leak_source = StringBuilder::new();
    let mut leak_url = StringBuilder::new();
    let mut allowed_zones = list();
    let mut allowed_from = StringBuilder::new();
    let mut seen_zones = list();
    let mut networks = list();
    let mut endpoints = list();
    let mut user_agents = list();
    let mut rate_mean = Float64Builder::new();
    let mut rate_std_dev = Float64Builder::new();
    let mut rate_minutes = UInt32Builder::new();

    let micros = |t: Option<Timestamp>| t.map(Timestamp::micros);
    for id in &ids {
        // A credential can only disappear between the two passes if something evicts it;
        // then it is simply not exported.
        let Some(state) = store.get(id) else { continue };
        credential.append_value(id);
        owner.append_option(state.owner.map(|o| store.principals.name(o)).as_deref());
        accesses.append_value(state.accesses);
        first_seen.append_option(micros(state.first_seen));
        last_seen.append_option(micros(state.last_seen));
        issued_at.append_option(micros(state.issued_at));
        expires_at.append_option(micros(state.expires_at()));
        revoked_at.append_option(micros(state.revoked_at()));
        let leak = state.leak();
        leaked_at.append_option(leak.map(|l| l.at.micros()));
        leak_source.append_option(leak.and_then(|l| l.source.as_deref()));
        leak_url.append_option(leak.and_then(|l| l.url.as_deref()));
        for zone in config.zones.names_of(state.allowed) {
            allowed_zones.values().append_value(zone);
        }
        allowed_zones.append(true);
        allowed_from.append_value(state.allowed_from().as_str());
        for zone in config.zones.names_of(state.seen_zones) {
            seen_zones.values().append_value(zone);
        }
        seen_zones.append(true);
        for seen in state.networks() {
            networks.values().append_value(seen.key.to_string());
        }
        networks.append(true);
        for seen in state.endpoints() {
            endpoints
                .values()
                .append_value(&*store.endpoints.name(seen.key));
        }
        endpoints.append(true);
        for seen in state.user_agents() {
            user_agents
                .values()
                .append_value(&*store.user_agents.name(seen.key));
        }
        user_agents.append(true);
        rate_mean.append_value(f64::from(state.rate.mean));
        rate_std_dev.append_value(f64::from(state.rate.variance.max(0.0)).sqrt());
        rate_minutes.append_value(state.rate.minutes);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(credential.finish()),
        Arc::new(owner.finish()),
        Arc::new(accesses.finish()),
        Arc::new(first_seen.finish()),
        Arc::new(last_seen.finish()),
        Arc::new(issued_at.finish()),
        Arc::new(expires_at.finish()),
        Arc::new(revoked_at.finish()),
        Arc::new(leaked_at.finish()),
        Arc::new(leak_source.finish()),
        Arc::new(leak_url.finish()),
        Arc::new(allowed_zones.finish()),
        Arc::new(allowed_from.finish()),
        Arc::new(seen_zones.finish()),
        Arc::new(networks.finish()),
        Arc::new(endpoints.finish()),
        Arc::new(user_agents.finish()),
        Arc::new(rate_mean.finish()),
        Arc::new(rate_std_dev.finish()),
        Arc::new(rate_minutes.finish()),
    ];
    RecordBatch::try_new(super::schema::credentials(), columns).map_err(ArchiveError::Arrow)
}

/// Writes the table, replacing the previous file atomically. Returns the rows written.
pub fn export(
    archive: &Path,
    store: &StateStore,
    config: &Config,
    zstd_level: i32,
) -> Result<usize, ArchiveError> {
    let batch = batch(store, config)?;
    let target = path(archive);
    let dir = target.parent().unwrap_or(archive);
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .build();
    super::writer::publish(dir, "credentials.parquet", &batch, properties)?;
    Ok(batch.num_rows())
}
