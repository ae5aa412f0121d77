//! Checkpoints: the engine's state and the input positions it corresponds to, written
//! together, atomically, so that a restart resumes exactly there: no relearning, and no alert
//! lost or different (alerts after the checkpoint are raised again, with the same ids).
//!
//! A checkpoint is one file, `checkpoint.cwc` in the checkpoint directory:
//!
//! ```text
//! magic "credwchk" | format version (u32 LE) | payload length (u64 LE) | SHA-256 of payload | payload
//! ```
//!
//! The payload is a zstd-compressed postcard encoding of [`Checkpoint`]. It is written to a
//! temporary file, synced, and renamed over the previous one (then the directory is synced),
//! so a crash at any moment leaves either the old checkpoint or the new one, never a torn one.
//! A file with another version or a wrong checksum is refused with an error that says so;
//! credwatch never silently starts from nothing when a checkpoint was expected.
//!
//! Callers write a checkpoint only once every output up to its positions is delivered (alert
//! sinks flushed, dead letters written), which is what makes a resume at-least-once.
//!
//! `run` checkpoints each input partition on its own instead, so that state moves with a
//! partition when a rebalance hands it to another instance: `partitions/<topic>/<n>.cwc` in
//! the checkpoint directory ([`PartitionCheckpoint`]), the same header with magic
//! `credwprt`, holding the partition's next offset and its share of the engine's state
//! ([`EngineShare`]). Every member of a consumer group may point at one directory on a shared
//! volume: a member writes only the files of the partitions assigned to it, and reads a
//! partition's file when the partition is assigned to it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{EngineShare, EngineSnapshot};
use crate::replay::ReplayCounters;
use crate::state::RestoreError;

/// The version this build writes and reads. Bump it with any change to [`Checkpoint`] or the
/// types inside it.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"credwchk";
const PARTITION_MAGIC: &[u8; 8] = b"credwprt";
const HEADER_BYTES: usize = 8 + 4 + 8 + 32;

/// The checkpoint's file name inside the checkpoint directory.
pub const FILE_NAME: &str = "checkpoint.cwc";

/// The folder of per-partition checkpoints (`run`) inside the checkpoint directory.
pub const PARTITIONS_DIR: &str = "partitions";

/// Why a checkpoint could not be written, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot encode the checkpoint: {0}")]
    Encode(postcard::Error),
    #[error("{path} is not a credwatch checkpoint")]
    NotACheckpoint { path: PathBuf },
    #[error("{path} has checkpoint format version {found}; this credwatch reads version {FORMAT_VERSION} (remove the file to start from nothing)")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is damaged ({reason}); remove it to start from nothing, or restore a copy")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the checkpoint was taken with zones {then:?}, the configuration now has {now:?}; restore the zones or remove the checkpoint")]
    ZonesChanged { then: Vec<String>, now: Vec<String> },
    #[error("a checkpoint can only be restored before the first event")]
    EngineInUse,
    #[error(transparent)]
    State(#[from] RestoreError),
    #[error("cannot encode or decode an open alert: {0}")]
    Alert(String),
    #[error("the checkpoint was taken over inputs {then:?}; this run reads {now:?} (give the same inputs to resume, or another --checkpoint directory)")]
    Inputs { then: Vec<String>, now: Vec<String> },
    #[error("{path} was written by an older `credwatch run`, which kept one checkpoint per instance; run now keeps one per partition under {PARTITIONS_DIR}/ (remove the file: the partitions are rebuilt from the topics once)")]
    PerInstance { path: PathBuf },
    #[error("{path} holds the checkpoint of {found}, not of {expected}")]
    WrongPartition {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("the checkpoint was written by `credwatch {then}`, not by `credwatch {now}`")]
    Source {
        then: &'static str,
        now: &'static str,
    },
}

/// Where each input stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Positions {
    /// `credwatch replay`: files read in order.
    Replay(ReplayPosition),
    /// `credwatch run` before it kept one checkpoint per partition: the next offset to read
    /// in each assigned partition. Read only to tell the user to remove it.
    Kafka(Vec<PartitionPosition>),
}

impl Positions {
    pub fn command(&self) -> &'static str {
        match self {
            Positions::Replay(_) => "replay",
            Positions::Kafka(_) => "run",
        }
    }

    /// A replay's position; an error naming the command that wrote anything else.
    pub fn into_replay(self) -> Result<ReplayPosition, CheckpointError> {
        match self {
            Positions::Replay(position) => Ok(position),
            other => Err(other.written_by_other("replay")),
        }
    }

    fn written_by_other(&self, now: &'static str) -> CheckpointError {
        CheckpointError::Source {
            then: self.command(),
            now,
        }
    }
}

/// How far a replay got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReplayPosition {
    /// The replay's inputs, in order.
    pub inputs: Vec<String>,
    /// The input being read; `inputs.len()` once all were read.
    pub input: usize,
    /// Byte offset of the next record in that input.
    pub offset: u64,
    /// Lines before `offset` (for dead-letter line numbers).
    pub line: u64,
    /// The replay's counters up to here, so a resumed replay's summary is the whole run's.
    pub counters: ReplayCounters,
}

/// The next offset to read in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The engine's state with the input positions it corresponds to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub positions: Positions,
    pub engine: EngineSnapshot,
}

/// What writing a checkpoint took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes on disk.
    pub bytes: u64,
    pub credentials: usize,
}

impl Checkpoint {
    /// The checkpoint file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The file's bytes: header and compressed payload.
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        encode_file(MAGIC, self)
    }

    /// Parses a checkpoint file's bytes; `path` names it in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
        decode_file(MAGIC, bytes, path)
    }

    /// The payload after decompression (what the fuzz target feeds, past the checksum).
    pub fn decode_payload(plain: &[u8]) -> Result<Checkpoint, postcard::Error> {
        postcard::from_bytes(plain)
    }

    /// Writes the checkpoint into `dir` (created if missing), replacing the previous one
    /// atomically.
    pub fn write(&self, dir: &Path) -> Result<Written, CheckpointError> {
        let bytes = self.encode()?;
        publish(dir, FILE_NAME, &bytes)?;
        Ok(Written {
            bytes: bytes.len() as u64,
            credentials: self.engine.store.credentials.len(),
        })
    }

    /// What `credwatch checkpoint show` prints: who wrote it, where the input stood, and how
    /// much state it holds.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "written by: credwatch {} (format version {FORMAT_VERSION})",
            self.positions.command()
        );
        match &self.positions {
            Positions::Replay(position) => {
                let _ = writeln!(text, "inputs: {}", position.inputs.join(", "));
                match position.inputs.get(position.input) {
                    Some(input) => {
                        let _ = writeln!(
                            text,
                            "position: {input} at byte {} (after line {})",
                            position.offset, position.line
                        );
                    }
                    None => {
                        let _ = writeln!(text, "position: end of every input");
                    }
                }
            }
            Positions::Kafka(partitions) => {
                let _ = writeln!(text, "partitions: {}", partitions.len());
                for partition in partitions {
                    let _ = writeln!(
                        text,
                        "  {}/{} at offset {}",
                        partition.topic, partition.partition, partition.offset
                    );
                }
            }
        }
        let engine = &self.engine;
        let store = &engine.store;
        let _ = writeln!(
            text,
            "state: {} credentials, {} endpoints, {} principals, {} user agents, {} open suppression windows",
            store.credentials.len(),
            store.endpoints.len(),
            store.principals.len(),
            store.user_agents.len(),
            engine.suppressor.windows.len()
        );
        let stats = &engine.stats;
        let alerts: u64 = stats.rules.values().map(|counts| counts.alerts).sum();
        let _ = writeln!(
            text,
            "events: {} ({} access, {} issue, {} revoke, {} leak), {alerts} alerts; {} credentials evicted",
            stats.events,
            stats.by_kind[0],
            stats.by_kind[1],
            stats.by_kind[2],
            stats.by_kind[3],
            stats.evicted
        );
        if let Some(newest) = engine.newest {
            let _ = writeln!(text, "newest event: {newest}");
        }
        let _ = writeln!(text, "zones: {}", engine.zones.join(", "));
        text
    }

    /// The checkpoint in `dir`, or `None` when there is none yet.
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = Checkpoint::path(dir);
        match fs::read(&path) {
            Ok(bytes) => Checkpoint::decode(&bytes, &path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io { path, source }),
        }
    }
}

/// A header (`magic`, version, length, checksum) and the zstd-compressed postcard payload.
fn encode_file(magic: &[u8; 8], payload: &impl Serialize) -> Result<Vec<u8>, CheckpointError> {
    let plain = postcard::to_stdvec(payload).map_err(CheckpointError::Encode)?;
    let payload = zstd::bulk::compress(&plain, 3).map_err(|source| CheckpointError::Io {
        path: PathBuf::from("(compressing the checkpoint)"),
        source,
    })?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(&payload));
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// The payload of a file written by [`encode_file`] with `magic`, its header and checksum
/// checked; `path` names it in errors.
fn decode_file<T: serde::de::DeserializeOwned>(
    magic: &[u8; 8],
    bytes: &[u8],
    path: &Path,
) -> Result<T, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < magic.len() || &bytes[..magic.len()] != magic {
        return Err(CheckpointError::NotACheckpoint {
            path: path.to_owned(),
        });
    }
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than its header",
            bytes.len()
        )));
    }
    let field = |from: usize, to: usize| &bytes[from..to];
    let version = u32::from_le_bytes(field(8, 12).try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    let plain_len = u64::from_le_bytes(field(12, 20).try_into().unwrap_or_default());
    let payload = &bytes[HEADER_BYTES..];
    if Sha256::digest(payload)[..] != *field(20, HEADER_BYTES) {
        return Err(corrupt("checksum mismatch".to_owned()));
    }
    // The checksum matched, so the length is the writer's; still, never trust it blindly.
    let capacity = usize::try_from(plain_len)
        .ok()
        .filter(|&len| len <= payload.len().saturating_mul(1024).max(1 << 20))
        .ok_or_else(|| corrupt(format!("implausible payload length {plain_len}")))?;
    let plain = zstd::bulk::decompress(payload, capacity)
        .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
    postcard::from_bytes(&plain).map_err(|e| corrupt(format!("cannot decode: {e}")))
}

/// Turns an I/O error on `path` into a [`CheckpointError`] that names it.
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_owned();
    move |source| CheckpointError::Io { path, source }
}

/// Writes `bytes` as `dir/name` atomically: a synced temporary file renamed over the old one,
/// then the directory synced (`dir` is created if missing).
fn publish(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    // The rename is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// One input partition's checkpoint for `credwatch run`: where to resume reading it and its
/// share of the engine's state, written together so that they always agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read: the share reflects every message before it.
    pub offset: i64,
    pub share: EngineShare,
}

impl PartitionCheckpoint {
    /// `dir/partitions/<topic>/<partition>.cwc` (Kafka topic names are letters, digits, `.`,
    /// `_` and `-`, so they are safe as folder names).
    pub fn path(dir: &Path, topic: &str, partition: i32) -> PathBuf {
        dir.join(PARTITIONS_DIR)
            .join(topic)
            .join(format!("{partition}.cwc"))
    }

    /// Whether `dir` holds per-partition checkpoints (`run`'s).
    pub fn present(dir: &Path) -> bool {
        dir.join(PARTITIONS_DIR).is_dir()
    }

    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        encode_file(PARTITION_MAGIC, self)
    }

    /// Parses a partition checkpoint's bytes; `path` names it in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<PartitionCheckpoint, CheckpointError> {
        decode_file(PARTITION_MAGIC, bytes, path)
    }

    /// The payload after decompression (what the fuzz target feeds, past the checksum).
    pub fn decode_payload(plain: &[u8]) -> Result<PartitionCheckpoint, postcard::Error> {
        postcard::from_bytes(plain)
    }

    /// Writes the partition's file under `dir`, replacing its previous one atomically.
    pub fn write(&self, dir: &Path) -> Result<Written, CheckpointError> {
        let path = PartitionCheckpoint::path(dir, &self.topic, self.partition);
        let folder = path.parent().unwrap_or(dir);
        let bytes = self.encode()?;
        publish(folder, &format!("{}.cwc", self.partition), &bytes)?;
        Ok(Written {
            bytes: bytes.len() as u64,
            credentials: self.share.store.credentials.len(),
        })
    }

    /// The checkpoint of `topic`/`partition` under `dir`, or `None` when it has none yet.
    pub fn read(
        dir: &Path,
        topic: &str,
        partition: i32,
    ) -> Result<Option<PartitionCheckpoint>, CheckpointError> {
        let path = PartitionCheckpoint::path(dir, topic, partition);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let checkpoint = PartitionCheckpoint::decode(&bytes, &path)?;
        if (checkpoint.topic.as_str(), checkpoint.partition) != (topic, partition) {
            return Err(CheckpointError::WrongPartition {
                found: format!("{}/{}", checkpoint.topic, checkpoint.partition),
                expected: format!("{topic}/{partition}"),
                path,
            });
        }
        Ok(Some(checkpoint))
    }

    /// Every partition checkpoint under `dir`, by topic and partition, each with its size
    /// in bytes (for `credwatch checkpoint show`).
    pub fn read_all(dir: &Path) -> Result<Vec<(PartitionCheckpoint, u64)>, CheckpointError> {
        let root = dir.join(PARTITIONS_DIR);
        let mut all = Vec::new();
        for topic in fs::read_dir(&root).map_err(io_error(&root))? {
            let topic = topic.map_err(io_error(&root))?.path();
            if !topic.is_dir() {
                continue;
            }
            for file in fs::read_dir(&topic).map_err(io_error(&topic))? {
                let path = file.map_err(io_error(&topic))?.path();
                if path.extension().is_none_or(|extension| extension != "cwc") {
                    continue;
                }
                let bytes = fs::read(&path).map_err(io_error(&path))?;
                all.push((
                    PartitionCheckpoint::decode(&bytes, &path)?,
                    bytes.len() as u64,
                ));
            }
        }
        all.sort_by(|(a, _), (b, _)| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(all)
    }

    /// What `credwatch checkpoint show` prints of one partition.
    pub fn describe(&self) -> String {
        let share = &self.share;
        let store = &share.store;
        format!(
            "  {}/{} at offset {}: {} credentials, {} endpoints, {} principals, {} user agents, {} open suppression windows; newest event {}\n",
            self.topic,
            self.partition,
            self.offset,
            store.credentials.len(),
            store.endpoints.len(),
            store.principals.len(),
            store.user_agents.len(),
            share.windows.len(),
            share.newest.map_or_else(|| "none".to_owned(), |newest| newest.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            positions: Positions::Kafka(vec![PartitionPosition {
                topic: "access".into(),
                partition: 3,
                offset: 42,
            }]),
            engine: EngineSnapshot {
                zones: vec!["unknown".into(), "internet".into()],
                ..EngineSnapshot::default()
            },
        }
    }

    #[test]
    fn a_checkpoint_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let written = sample().write(dir.path()).unwrap();
        assert!(written.bytes > HEADER_BYTES as u64);
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), Some(sample()));
        assert!(
            !dir.path().join(format!("{FILE_NAME}.tmp")).exists(),
            "the temporary file was renamed"
        );
    }

    #[test]
    fn a_checkpoint_of_the_other_command_is_refused_by_name() {
        let error = sample().positions.into_replay().unwrap_err().to_string();
        assert!(
            error.contains("written by `credwatch run`, not by `credwatch replay`"),
            "{error}"
        );
    }

    fn partition(topic: &str, partition: i32) -> PartitionCheckpoint {
        PartitionCheckpoint {
            topic: topic.into(),
            partition,
            offset: 1_000,
            share: EngineShare {
                zones: vec!["unknown".into(), "internet".into()],
                ..EngineShare::default()
            },
        }
    }

    #[test]
    fn partition_checkpoints_round_trip_each_in_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!PartitionCheckpoint::present(dir.path()));
        assert_eq!(
            PartitionCheckpoint::read(dir.path(), "access", 0).unwrap(),
            None
        );
        for (topic, number) in [("access", 0), ("access", 1), ("leak-reports", 0)] {
            partition(topic, number).write(dir.path()).unwrap();
        }
        assert!(PartitionCheckpoint::present(dir.path()));
        assert!(
            PartitionCheckpoint::path(dir.path(), "access", 1).ends_with("partitions/access/1.cwc")
        );
        assert_eq!(
            PartitionCheckpoint::read(dir.path(), "access", 1).unwrap(),
            Some(partition("access", 1))
        );
        let all: Vec<(String, i32)> = PartitionCheckpoint::read_all(dir.path())
            .unwrap()
            .into_iter()
            .map(|(p, bytes)| {
                assert!(bytes > HEADER_BYTES as u64);
                (p.topic, p.partition)
            })
            .collect();
        assert_eq!(
            all,
            vec![
                ("access".into(), 0),
                ("access".into(), 1),
                ("leak-reports".into(), 0)
            ]
        );
        assert!(partition("access", 1)
            .describe()
            .contains("access/1 at offset 1000: 0 credentials"));
    }

    #[test]
    fn a_partition_file_in_the_wrong_place_or_of_the_other_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        partition("access", 3).write(dir.path()).unwrap();
        let misplaced = PartitionCheckpoint::path(dir.path(), "access", 4);
        std::fs::copy(
            PartitionCheckpoint::path(dir.path(), "access", 3),
            &misplaced,
        )
        .unwrap();
        let error = PartitionCheckpoint::read(dir.path(), "access", 4)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("holds the checkpoint of access/3, not of access/4"),
            "{error}"
        );
        std::fs::write(&misplaced, sample().encode().unwrap()).unwrap();
        let error = PartitionCheckpoint::read(dir.path(), "access", 4)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a credwatch checkpoint"), "{error}");
    }

    #[test]
    fn no_file_is_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn damage_another_version_and_foreign_files_are_refused_by_name() {
        let path = Path::new("ck/checkpoint.cwc");
        let bytes = sample().encode().unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = Checkpoint::decode(&flipped, path).unwrap_err().to_string();
        assert!(
            error.contains("ck/checkpoint.cwc is damaged (checksum mismatch)"),
            "{error}"
        );
        let error = Checkpoint::decode(&bytes[..30], path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("shorter than its header"), "{error}");
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let error = Checkpoint::decode(&future, path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{error}"
        );
        let error = Checkpoint::decode(b"{\"json\": true}", path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a credwatch checkpoint"), "{error}");
    }
}
