//! Partitioned, rolled, atomic Parquet files.
//!
//! [`TableWriter`] keeps one open batch per hour partition and seals it when it reaches the
//! row limit, when its age passes the roll age, or when too many rows are buffered across
//! partitions. Sealed batches go over a bounded channel to [`FileWriter`]'s thread, which sorts
//! each by (credential, time), encodes it and publishes it atomically: written under a hidden
//! `.part-*.parquet.tmp` name, synced, renamed, and the directory synced. A reader (or a crash)
//! therefore never sees a partial file, and the channel bound is the backpressure: the caller
//! blocks while the thread is two files behind.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding as ColumnEncoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::rows::{Rows, Sizing};
use super::ArchiveError;
use crate::time::Timestamp;

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The hour partition of an event time (hours since the epoch).
pub(crate) fn hour_of(ts: Timestamp) -> i64 {
    ts.micros().div_euclid(MICROS_PER_HOUR)
}

/// `date=YYYY-MM-DD/hour=HH` of an hour partition.
pub(crate) fn partition_path(hour: i64) -> PathBuf {
    let date = chrono::DateTime::from_timestamp(hour.saturating_mul(3600), 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "out-of-range".to_owned());
    PathBuf::from(format!("date={date}")).join(format!("hour={:02}", hour.rem_euclid(24)))
}

/// A batch ready to be written as one file.
pub(crate) struct Sealed {
    pub table: Table,
    pub hour: i64,
    pub batch: RecordBatch,
}

/// The partitioned tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    Events,
    Alerts,
}

impl Table {
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Alerts => "alerts",
        }
    }
}

/// Per-table buffering: one open batch per hour partition.
pub(crate) struct TableWriter<R: Rows> {
    table: Table,
    partitions: HashMap<i64, (R, Instant)>,
    buffered: usize,
    roll_rows: usize,
    roll_age: Duration,
    /// What a new partition's batch reserves: like the last one sealed.
    sizing: Sizing,
}

impl<R: Rows> TableWriter<R> {
    pub(crate) fn new(table: Table, roll_rows: usize, roll_age: Duration) -> Self {
        TableWriter {
            table,
            partitions: HashMap::new(),
            buffered: 0,
            roll_rows: roll_rows.max(1),
            roll_age,
            sizing: Sizing::guess(roll_rows.clamp(1, 1 << 16)),
        }
    }

    /// Appends one row to the partition of `ts`, then seals what is due.
    pub(crate) fn push(
        &mut self,
        ts: Timestamp,
        files: &FileWriter,
        push: impl FnOnce(&mut R),
    ) -> Result<(), ArchiveError> {
        let hour = hour_of(ts);
        let sizing = &self.sizing;
        let (rows, _) = self
            .partitions
            .entry(hour)
            .or_insert_with(|| (R::with_sizing(sizing), Instant::now()));
        push(rows);
        self.buffered += 1;
        if rows.len() >= self.roll_rows {
            self.seal(hour, files)?;
        } else if self.buffered >= self.roll_rows {
            // Input spread over several hours holds more than a file's worth of rows: publish
            // the oldest hours (complete, for input in time order) until half is left.
            let mut hours: Vec<i64> = self.partitions.keys().copied().collect();
            hours.sort_unstable();
            for hour in hours {
                if self.buffered <= self.roll_rows / 2 {
                    break;
                }
                self.seal(hour, files)?;
            }
        }
        Ok(())
    }

    /// Seals partitions older than the roll age.
    pub(crate) fn tick(&mut self, files: &FileWriter) -> Result<(), ArchiveError> {
        let due: Vec<i64> = self
            .partitions
            .iter()
            .filter(|(_, (_, opened))| opened.elapsed() >= self.roll_age)
            .map(|(hour, _)| *hour)
            .collect();
        for hour in due {
            self.seal(hour, files)?;
        }
        Ok(())
    }

    pub(crate) fn seal_all(&mut self, files: &FileWriter) -> Result<(), ArchiveError> {
        let mut hours: Vec<i64> = self.partitions.keys().copied().collect();
        hours.sort_unstable();
        for hour in hours {
            self.seal(hour, files)?;
        }
        Ok(())
    }

    fn seal(&mut self, hour: i64, files: &FileWriter) -> Result<(), ArchiveError> {
        let Some((mut rows, _)) = self.partitions.remove(&hour) else {
            return Ok(());
        };
        self.buffered -= rows.len();
        let batch = rows.seal().map_err(ArchiveError::Arrow)?;
        self.sizing = Sizing::of(&batch, self.roll_rows);
        files.send(Sealed {
            table: self.table,
            hour,
            batch,
        })
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }
}

/// What the file thread wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenStats {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// Encoding settings for one table's files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Encoding {
    pub zstd_level: i32,
    pub row_group_rows: usize,
}

/// Files published so far, and whether the thread has stopped: what [`FileWriter::sync`]
/// waits on.
#[derive(Default)]
struct Progress {
    published: u64,
    stopped: bool,
}

/// The thread that sorts, encodes and publishes sealed batches.
pub(crate) struct FileWriter {
    sender: Option<SyncSender<Sealed>>,
    thread: Option<JoinHandle<Result<WrittenStats, ArchiveError>>>,
    progress: Arc<(Mutex<Progress>, Condvar)>,
    sent: std::cell::Cell<u64>,
}

impl FileWriter {
    /// Starts the thread writing under `dir`; files are named `part-<run>-<sequence>.parquet`.
    pub(crate) fn start(dir: &Path, run: &str, encoding: Encoding) -> Result<Self, ArchiveError> {
        let (sender, receiver) = sync_channel::<Sealed>(2);
        let dir = dir.to_owned();
        let run = run.to_owned();
        let progress = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("archive-writer".to_owned())
            .spawn(move || {
                let (state, changed) = &*shared;
                let mut stats = WrittenStats::default();
                let mut result = Ok(());
                for (sequence, sealed) in receiver.into_iter().enumerate() {
                    let name = format!("part-{run}-{sequence:06}.parquet");
                    match write_file(&dir, &sealed, &name, encoding) {
                        Ok(bytes) => {
                            stats.files += 1;
                            stats.rows += sealed.batch.num_rows() as u64;
                            stats.bytes += bytes;
                        }
                        Err(error) => {
                            result = Err(error);
                            break;
                        }
                    }
                    if let Ok(mut progress) = state.lock() {
                        progress.published += 1;
                    }
                    changed.notify_all();
                }
                if let Ok(mut progress) = state.lock() {
                    progress.stopped = true;
                }
                changed.notify_all();
                result.map(|()| stats)
            })
            .map_err(|source| ArchiveError::Io {
                path: PathBuf::from("archive-writer thread"),
                source,
            })?;
        Ok(FileWriter {
            sender: Some(sender),
            thread: Some(thread),
            progress,
            sent: std::cell::Cell::new(0),
        })
    }

    /// Batches handed to the thread so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// Waits until every batch sent so far is published (durable under its final name).
    pub(crate) fn sync(&mut self) -> Result<(), ArchiveError> {
        let (state, changed) = &*self.progress;
        let mut progress = state.lock().map_err(|_| ArchiveError::WriterStopped)?;
        while progress.published < self.sent.get() && !progress.stopped {
            progress = changed
                .wait(progress)
                .map_err(|_| ArchiveError::WriterStopped)?;
        }
        let failed = progress.published < self.sent.get();
        drop(progress);
        if failed {
            Err(self.failure())
        } else {
            Ok(())
        }
    }

    /// Hands a batch to the thread, blocking while it is busy with two others.
    fn send(&self, sealed: Sealed) -> Result<(), ArchiveError> {
        let sent = match &self.sender {
            Some(sender) => sender.send(sealed).is_ok(),
            None => false,
        };
        self.sent.set(self.sent.get() + u64::from(sent));
        if sent {
            Ok(())
        } else {
            // The thread stopped, so it failed: its error says why.
            Err(ArchiveError::WriterStopped)
        }
    }

    /// Waits for every sealed batch to be published.
    pub(crate) fn finish(mut self) -> Result<WrittenStats, ArchiveError> {
        self.join()
    }

    fn join(&mut self) -> Result<WrittenStats, ArchiveError> {
        drop(self.sender.take());
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(ArchiveError::WriterStopped)),
            None => Ok(WrittenStats::default()),
        }
    }

    /// The thread's error after a failed send.
    pub(crate) fn failure(&mut self) -> ArchiveError {
        match self.join() {
            Err(error) => error,
            Ok(_) => ArchiveError::WriterStopped,
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Writes one sorted file of a partition; returns its size.
fn write_file(
    dir: &Path,
    sealed: &Sealed,
    name: &str,
    encoding: Encoding,
) -> Result<u64, ArchiveError> {
    let batch = sort_by_credential_and_time(&sealed.batch)?;
    let partition = dir
        .join(sealed.table.dir_name())
        .join(partition_path(sealed.hour));
    publish(&partition, name, &batch, properties(sealed.table, encoding))
}

/// Writes `batch` as `dir/name` atomically: under the hidden name `.name.tmp`, synced, renamed,
/// and the directory synced, so the file is either absent or complete, also after a crash.
/// Returns its size.
pub(crate) fn publish(
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
    properties: WriterProperties,
) -> Result<u64, ArchiveError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ArchiveError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let temporary = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let file = File::create(&temporary).map_err(io(&temporary))?;
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        batch.schema(),
        Some(properties),
    )
    .map_err(ArchiveError::Parquet)?;
    writer.write(batch).map_err(ArchiveError::Parquet)?;
    let file = writer
        .into_inner()
        .map_err(ArchiveError::Parquet)?
        .into_inner()
        .map_err(|e| ArchiveError::Io {
            path: temporary.clone(),
            source: e.into_error(),
        })?;
    file.sync_all().map_err(io(&temporary))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    fs::rename(&temporary, &target).map_err(io(&target))?;
    // The rename is durable once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(bytes)
}

/// Sorts a batch by (credential, time); both tables have `time` first and `credential`
/// second. Rows are bucketed by credential in time order (a stable sort on the timestamps,
/// skipped when they already are in order, as a stream's mostly are), then the buckets are
/// concatenated in credential order: linear in the rows plus a sort of the distinct
/// credentials, instead of a comparison sort over strings.
fn sort_by_credential_and_time(batch: &RecordBatch) -> Result<RecordBatch, ArchiveError> {
    use arrow::array::{AsArray, UInt32Array};
    use arrow::datatypes::TimestampMicrosecondType;

    let times = batch.column(0).as_primitive::<TimestampMicrosecondType>();
    let credentials = batch.column(1).as_string::<i32>();
    let times = times.values();
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    if times.windows(2).any(|pair| pair[0] > pair[1]) {
        order.sort_by_key(|&row| times[row as usize]);
    }
    // A stream's hour holds a few thousand credentials or fewer, each with many rows.
    let mut buckets: HashMap<&str, Vec<u32>, crate::state::Hashing> =
        HashMap::with_capacity_and_hasher(order.len() / 64, Default::default());
    for &row in &order {
        buckets
            .entry(credentials.value(row as usize))
            .or_default()
            .push(row);
    }
    let mut keys: Vec<&str> = buckets.keys().copied().collect();
    keys.sort_unstable();
    order.clear();
    for key in keys {
        if let Some(rows) = buckets.get(key) {
            order.extend_from_slice(rows);
        }
    }
    let indices = UInt32Array::from(order);
    take_record_batch(batch, &indices).map_err(ArchiveError::Arrow)
}

fn properties(table: Table, encoding: Encoding) -> WriterProperties {
    let level = ZstdLevel::try_new(encoding.zstd_level).unwrap_or_default();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(encoding.row_group_rows.max(1)))
        // Page statistics (the page index): a credential's rows are a few pages of a sorted
        // row group, and a timeline query reads only those, about 3 times faster
        // (benches/archive.rs). Events keep them only where they prune (below).
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_created_by(format!("credwatch {}", env!("CARGO_PKG_VERSION")));
    // (Nearly) unique per row: a dictionary would only be built to be thrown away (the
    // writer interns every value until the dictionary outgrows its page, then falls back).
    // That included `time` and `ingest_seq` until they were listed here, at about a sixth of
    // the writing time (benches/archive.rs).
    let unique: &[&str] = match table {
        Table::Events => &["time", "ingest_seq", "event_id", "source_ip", "secret_hash"],
        Table::Alerts => &["time", "id", "first_seen", "last_seen", "ocsf"],
    };
    for column in unique {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    // Within a file rows run by credential, then time: times and arrival numbers grow by
    // small steps (delta-encoded to a few bits each instead of 8 bytes), and a credential's
    // event ids and addresses share prefixes (front-coded). Smaller pages for zstd to work
    // through: the events files came out a third smaller and cheaper to write.
    let encodings: &[(&str, ColumnEncoding)] = match table {
        Table::Events => &[
            ("time", ColumnEncoding::DELTA_BINARY_PACKED),
            ("ingest_seq", ColumnEncoding::DELTA_BINARY_PACKED),
            ("event_id", ColumnEncoding::DELTA_BYTE_ARRAY),
            ("source_ip", ColumnEncoding::DELTA_BYTE_ARRAY),
        ],
        Table::Alerts => &[("time", ColumnEncoding::DELTA_BINARY_PACKED)],
    };
    for (column, encoding) in encodings {
        builder = builder.set_column_encoding(ColumnPath::from(*column), *encoding);
    }
    if table == Table::Events {
        // The labels' pages are dictionary keys in runs (the rows are sorted by credential):
        // a few bytes each, which zstd does not shrink. Uncompressed, a query reads them
        // without a zstd context per page: count by zone about 15% faster, the files 7 KB
        // smaller for 10 M events (benches/archive.rs).
        let schema = super::schema::events();
        let labels = schema
            .fields()
            .iter()
            .filter(|field| *field.data_type() == super::schema::label());
        for label in labels {
            builder = builder.set_column_compression(
                ColumnPath::from(label.name().as_str()),
                Compression::UNCOMPRESSED,
            );
        }
        // Min/max statistics cost two comparisons per value, and only columns whose values
        // cluster in a file can skip anything with them: `credential` and `time` (the sort
        // order), and `kind`, whose rare kinds (leaks, revocations) leave most pages out of a
        // search for them. In the other columns every page holds about every value, so their
        // statistics were a tenth of the writing time for no pruning (benches/archive.rs).
        builder = builder.set_statistics_enabled(EnabledStatistics::None);
        for column in ["time", "credential", "kind"] {
            builder = builder
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Page);
        }
    }
    builder.build()
}

/// Removes temporary files a crashed writer left behind; returns how many.
pub(crate) fn remove_temporaries(dir: &Path) -> Result<u64, ArchiveError> {
    let mut removed = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ArchiveError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| ArchiveError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if name.starts_with('.') && name.ends_with(".parquet.tmp") {
                fs::remove_file(&path).map_err(|source| ArchiveError::Io {
                    path: path.clone(),
                    source,
                })?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_utc_date_and_hour() {
        let ts = Timestamp::parse_rfc3339("2026-11-23T07:59:59.999Z").unwrap();
        assert_eq!(
            partition_path(hour_of(ts)),
            PathBuf::from("date=2026-11-23/hour=07")
        );
        let before_epoch = Timestamp::parse_rfc3339("1969-12-31T23:30:00Z").unwrap();
        assert_eq!(
            partition_path(hour_of(before_epoch)),
            PathBuf::from("date=1969-12-31/hour=23")
        );
    }
}
