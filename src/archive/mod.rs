//! Archive: every event and alert as Parquet, the history `credwatch query` runs SQL over.
//!
//! Layout under the archive directory:
//!
//! ```text
//! events/date=YYYY-MM-DD/hour=HH/part-<run>-<seq>.parquet   one row per normalized event
//! alerts/date=YYYY-MM-DD/hour=HH/part-<run>-<seq>.parquet   one row per alert and roll-up
//! credentials/credentials.parquet                            per-credential state, replaced
//! .lock                                                      held by the one writing process
//! ```
//!
//! Partitions are by event time (UTC). Files are zstd-compressed with dictionary-encoded
//! strings (delta encodings for times and near-unique columns), sorted by (credential, time)
//! with page statistics on the sort columns, so one credential's history is a few pages of a
//! few files. Files appear only complete (see [`writer`]); a crash loses at
//! most the rows still buffered, never a published file, and the next start removes the
//! temporary files it left. One process writes an archive at a time (an exclusive lock on
//! `.lock`); any number may read it.
//!
//! The archive is a sink: it sees events as decoded and alerts as emitted, and takes no part
//! in detection.

pub mod credentials;
pub mod read;
mod rows;
pub mod schema;
mod writer;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alerts::Alert;
use crate::config::Config;
use crate::event::Event;
use crate::state::StateStore;
use crate::zones::{Network, ZoneId};

use rows::{AlertRows, EventRows};
pub use writer::WrittenStats;
use writer::{Encoding, FileWriter, Table, TableWriter};

/// Why the archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {0} is in use by another credwatch process (it holds {0}/.lock)")]
    Locked(PathBuf),
    #[error("archive: building a batch: {0}")]
    Arrow(arrow::error::ArrowError),
    #[error("archive: encoding Parquet: {0}")]
    Parquet(parquet::errors::ParquetError),
    #[error("archive: the file writer stopped")]
    WriterStopped,
}

/// Where and how the archive is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveOptions {
    pub dir: PathBuf,
    /// A partition's open file is published once it holds this many rows; also the most rows
    /// buffered across all partitions of a table.
    pub roll_rows: usize,
    /// ... or once it has been open this long (wall-clock), so a quiet stream still lands.
    pub roll_age: Duration,
    /// Rows per Parquet row group: the unit of pruning by statistics.
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

impl ArchiveOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArchiveOptions {
            dir: dir.into(),
            roll_rows: 1_000_000,
            roll_age: Duration::from_secs(300),
            row_group_rows: 128 * 1024,
            zstd_level: 1,
        }
    }
}

/// What an archive run wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub events: u64,
    pub alerts: u64,
    pub credentials: u64,
    pub written: WrittenStats,
    /// Temporary files of an earlier, interrupted writer removed at start.
    pub stale_removed: u64,
}

impl ArchiveSummary {
    pub fn render(&self, dir: &Path) -> String {
        format!(
            "archive {}: {} events, {} alerts, {} credentials; {} files, {:.1} MiB\n",
            dir.display(),
            self.events,
            self.alerts,
            self.credentials,
            self.written.files,
            self.written.bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

/// The archive sink.
pub struct Archive {
    options: ArchiveOptions,
    config: Arc<Config>,
    events: TableWriter<EventRows>,
    alerts: TableWriter<AlertRows>,
    files: FileWriter,
    summary: ArchiveSummary,
    /// Files sent to the writer at the last checkpoint.
    checkpointed: u64,
    last_tick: Instant,
    _lock: File,
}

impl Archive {
    /// Opens (creating) the archive directory for writing. `config` names the zones.
    pub fn open(options: ArchiveOptions, config: Arc<Config>) -> Result<Archive, ArchiveError> {
        let dir = &options.dir;
        fs::create_dir_all(dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| ArchiveError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ArchiveError::Locked(dir.clone())),
            Err(fs::TryLockError::Error(source)) => {
                return Err(ArchiveError::Io {
                    path: lock_path,
                    source,
                })
            }
        }
        let stale_removed = writer::remove_temporaries(dir)?;
        if stale_removed > 0 {
            tracing::warn!(
                archive = %dir.display(),
                files = stale_removed,
                "Removed temporary files of an interrupted archive writer."
            );
        }
        // Names sort by start time and never collide with an earlier run's.
        let run = format!(
            "{:013}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let files = FileWriter::start(
            dir,
            &run,
            Encoding {
                zstd_level: options.zstd_level,
                row_group_rows: options.row_group_rows,
            },
        )?;
        Ok(Archive {
            events: TableWriter::new(Table::Events, options.roll_rows, options.roll_age),
            alerts: TableWriter::new(Table::Alerts, options.roll_rows, options.roll_age),
            options,
            config,
            files,
            summary: ArchiveSummary {
                stale_removed,
                ..ArchiveSummary::default()
            },
            checkpointed: 0,
            last_tick: Instant::now(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    pub fn roll_age(&self) -> Duration {
        self.options.roll_age
    }

    /// Archives one event, placed in `zone` and `network` by the zones stage
    /// ([`crate::engine::Engine::placement`]).
    pub fn event(
        &mut self,
        event: &Event,
        zone: ZoneId,
        network: Option<Network>,
    ) -> Result<(), ArchiveError> {
        let zone = self.config.zones.name(zone);
        let seq = self.summary.events;
        let pushed = self.events.push(event.ts, &self.files, |rows| {
            rows.push(event, zone, network, seq)
        });
        self.summary.events += 1;
        if self.summary.events.is_multiple_of(4096) {
            self.tick_if_due()?;
        }
        pushed.map_err(|e| self.writer_error(e))
    }

    /// Archives one alert (new finding or roll-up), partitioned by its event time.
    pub fn alert(&mut self, alert: &Alert) -> Result<(), ArchiveError> {
        let ts = crate::time::Timestamp::from_micros(alert.time.saturating_mul(1000));
        let pushed = self.alerts.push(ts, &self.files, |rows| rows.push(alert));
        self.summary.alerts += 1;
        pushed.map_err(|e| self.writer_error(e))
    }

    /// Publishes partitions open longer than the roll age; call it now and then on a quiet
    /// stream (the run loop does every second).
    pub fn tick(&mut self) -> Result<(), ArchiveError> {
        self.last_tick = Instant::now();
        let result = self
            .events
            .tick(&self.files)
            .and_then(|()| self.alerts.tick(&self.files));
        result.map_err(|e| self.writer_error(e))
    }

    fn tick_if_due(&mut self) -> Result<(), ArchiveError> {
        if self.last_tick.elapsed() >= Duration::from_secs(1) {
            self.tick()
        } else {
            Ok(())
        }
    }

    /// Publishes everything buffered and waits until it is durable: afterwards every event
    /// and alert given so far is in a published file. `run` commits Kafka offsets right after.
    pub fn checkpoint(&mut self) -> Result<(), ArchiveError> {
        let sealed = self
            .events
            .seal_all(&self.files)
            .and_then(|()| self.alerts.seal_all(&self.files))
            .and_then(|()| self.files.sync());
        self.checkpointed = self.files.sent();
        sealed.map_err(|e| self.writer_error(e))
    }

    /// Whether a file was sealed since the last checkpoint (a partition reached its row
    /// limit, or its age): rows are then published that offsets do not cover yet.
    pub fn sealed_since_checkpoint(&self) -> bool {
        self.files.sent() != self.checkpointed
    }

    /// Rows waiting to be published.
    pub fn buffered(&self) -> usize {
        self.events.buffered() + self.alerts.buffered()
    }

    /// Writes the `credentials` table from `store`, replacing the previous one.
    pub fn export_credentials(&mut self, store: &StateStore) -> Result<(), ArchiveError> {
        let rows = credentials::export(
            &self.options.dir,
            store,
            &self.config,
            self.options.zstd_level,
        )?;
        self.summary.credentials = rows as u64;
        Ok(())
    }

    /// Publishes everything buffered and waits for the files to be durable.
    pub fn finish(mut self) -> Result<ArchiveSummary, ArchiveError> {
        let sealed = self
            .events
            .seal_all(&self.files)
            .and_then(|()| self.alerts.seal_all(&self.files));
        if let Err(e) = sealed {
            return Err(self.writer_error(e));
        }
        let mut summary = self.summary;
        summary.written = self.files.finish()?;
        // Released explicitly: a child process forked meanwhile (before its exec closes the
        // descriptor) would otherwise hold the lock a moment longer than this archive.
        let _ = self._lock.unlock();
        Ok(summary)
    }

    /// A send to a stopped writer thread means the thread failed; its error is the one to
    /// report.
    fn writer_error(&mut self, error: ArchiveError) -> ArchiveError {
        match error {
            ArchiveError::WriterStopped => self.files.failure(),
            other => other,
        }
    }
}
