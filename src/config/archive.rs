//! `[archive]`: where and how events and alerts are archived as Parquet.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::archive::ArchiveOptions;
use crate::time::Period;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArchive {
    /// Archive directory; relative to the config file. `--archive DIR` overrides it.
    #[serde(default)]
    dir: Option<String>,
    #[serde(default = "default_roll_rows")]
    roll_rows: usize,
    #[serde(default = "default_roll_age")]
    roll_age: Period,
    #[serde(default = "default_row_group_rows")]
    row_group_rows: usize,
    #[serde(default = "default_zstd_level")]
    zstd_level: i32,
}

fn default_roll_rows() -> usize {
    1_000_000
}
fn default_roll_age() -> Period {
    Period::from_minutes(5)
}
fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_zstd_level() -> i32 {
    1
}

impl Default for RawArchive {
    fn default() -> Self {
        RawArchive {
            dir: None,
            roll_rows: default_roll_rows(),
            roll_age: default_roll_age(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
        }
    }
}

/// Validated `[archive]` settings; `dir` is `None` when archiving is off unless the command
/// line gives a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveConfig {
    pub dir: Option<PathBuf>,
    pub roll_rows: usize,
    pub roll_age: Duration,
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        // The defaults are valid by construction.
        RawArchive::default()
            .validate(None)
            .unwrap_or_else(|_| unreachable!("default [archive] settings are valid"))
    }
}

impl ArchiveConfig {
    /// The options of an archive in `dir` (the command line's), else the configured one.
    pub fn options(&self, dir: Option<&Path>) -> Option<ArchiveOptions> {
        let dir = dir.map(Path::to_owned).or_else(|| self.dir.clone())?;
        Some(ArchiveOptions {
            dir,
            roll_rows: self.roll_rows,
            roll_age: self.roll_age,
            row_group_rows: self.row_group_rows,
            zstd_level: self.zstd_level,
        })
    }
}

impl RawArchive {
    pub(super) fn validate(self, base: Option<&Path>) -> Result<ArchiveConfig, String> {
        if self.roll_rows == 0 || self.row_group_rows == 0 {
            return Err("roll_rows and row_group_rows must be positive".into());
        }
        if self.roll_age.micros() <= 0 {
            return Err("roll_age must be positive (for example \"5m\")".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(format!(
                "zstd_level: {} is outside 1..=22 (1 is fastest, 3 is zstd's default)",
                self.zstd_level
            ));
        }
        Ok(ArchiveConfig {
            dir: self.dir.map(|d| super::resolve(base, &d)),
            roll_rows: self.roll_rows,
            roll_age: Duration::from_micros(self.roll_age.micros() as u64),
            row_group_rows: self.row_group_rows,
            zstd_level: self.zstd_level,
        })
    }
}
