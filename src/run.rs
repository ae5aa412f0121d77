//! Run: the Kafka stream processor. Input topics → decode → engine → sinks, with offsets
//! committed only after every sink confirmed what was emitted (at-least-once), malformed
//! records to a dead-letter topic, and a clean stop on SIGINT/SIGTERM.
//!
//! With an archive, offsets are committed at archive checkpoints only (when its files are
//! published and durable, every `roll_age` or `roll_rows`), so a crash neither loses archived
//! rows nor archives a message twice: what was not committed was not published either.
//!
//! With checkpoints (`--checkpoint DIR`), offsets are committed only at checkpoints, right
//! after the state they correspond to was written, one file per assigned partition (see
//! [`crate::checkpoint::PartitionCheckpoint`]). A partition assigned with a file, at start or
//! in a rebalance, resumes at its offset with its state merged into the engine: nothing to
//! relearn or re-read. A checkpoint is taken every interval, when the archive publishes
//! files, and at shutdown, but never while a partition is still rebuilding its state from the
//! input.
//!
//! The loop is single-threaded over one engine; scaling out is Kafka's job: more instances in
//! the same consumer group split the input partitions, and with input keyed by credential id
//! each credential's events stay in one partition, so its state lives in one instance. Each
//! record remembers the partition of its latest event (its home), which decides the file it
//! is checkpointed into and lets a partition's state leave with it when a rebalance moves it
//! to another instance.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::alerts::{dead_letter_headers, Activity, Alert, AlertSink, Producer};
use crate::archive::{Archive, ArchiveError};
use crate::checkpoint::{Checkpoint, CheckpointError, PartitionCheckpoint, Positions};
use crate::config::KafkaConfig;
use crate::decode::{split_records, Decoder};
use crate::engine::{Engine, EngineStats};
use crate::event::Event;
use crate::respond::Responder;
use crate::source::kafka::{Delivery, KafkaSource, KafkaSourceError};
use crate::source::{MAX_DOCUMENT_BYTES, MAX_RECORD_BYTES};
use crate::state::Home;

/// Why a run stopped with an error (bad records never stop it).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] KafkaSourceError),
    #[error("cannot create the Kafka producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("cannot deliver alerts: {0}")]
    Sink(io::Error),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the decoding thread: {0}")]
    Decoding(io::Error),
    #[error("more than {} input partitions were assigned to this process over its life (topic {topic:?}, partition {partition}); a record keeps its partition's number in 16 bits", Home::MAX as u32 + 1)]
    TooManyPartitions { topic: String, partition: i32 },
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub messages: u64,
    /// Messages read again only to rebuild state (alerts already delivered before).
    pub rebuilt: u64,
    pub malformed: u64,
    pub alerts: u64,
    pub commits: u64,
    /// Checkpoints taken (each writes a file per assigned partition).
    pub checkpoints: u64,
    /// Credentials restored from partition checkpoints (at start, or when a rebalance
    /// brought a partition another member had checkpointed), and from how many files;
    /// `None` when no file was read.
    pub restored: Option<usize>,
    pub restored_partitions: u64,
    /// Partitions that went to other members, and the credentials dropped with them.
    pub released: u64,
    pub released_credentials: u64,
    pub engine: EngineStats,
    /// From the first message received to the last one processed: the time spent consuming,
    /// without the group join before it or the idle wait after it.
    pub consuming: Duration,
}

impl RunSummary {
    pub fn render(&self) -> String {
        let mut text = format!(
            "credwatch run: {} messages ({} re-read to rebuild state), {} events, {} malformed, {} alerts, {} commits\n",
            self.messages, self.rebuilt, self.engine.events, self.malformed, self.alerts, self.commits
        );
        let partitions = |n: u64| {
            if n == 1 {
                "1 partition".to_owned()
            } else {
                format!("{n} partitions")
            }
        };
        if let Some(credentials) = self.restored {
            text.push_str(&format!(
                "restored {credentials} credentials from the checkpoints of {}; {} checkpoints written\n",
                partitions(self.restored_partitions),
                self.checkpoints
            ));
        } else if self.checkpoints > 0 {
            text.push_str(&format!("{} checkpoints written\n", self.checkpoints));
        }
        if self.released > 0 {
            text.push_str(&format!(
                "released {} to other members, with {} credentials\n",
                partitions(self.released),
                self.released_credentials
            ));
        }
        text
    }
}

/// Options beyond the config file.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// The HTTP API's shared state: readiness and metrics are published to it.
    pub api: Option<std::sync::Arc<crate::api::Shared>>,
    /// Stop (cleanly) after this long without a message once partitions are assigned: for
    /// backfills and tests.
    pub exit_when_idle: Option<Duration>,
    /// Stop (cleanly) after this many messages: for the Kafka demo and tests.
    pub stop_after_messages: Option<u64>,
    /// Checkpoint state and offsets into this directory, every `checkpoint_interval`.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_interval: Duration,
    /// Decode messages on a thread of their own, up to [`IN_FLIGHT`] messages ahead of the
    /// engine (which stays one, on this thread, and sees every message in order).
    pub decode_thread: bool,
}

/// Refuses a checkpoint directory that holds a single-file checkpoint: `replay`'s, or one an
/// older `run` wrote per instance.
fn refuse_single_file(dir: &Path) -> Result<(), RunError> {
    match Checkpoint::read(dir)? {
        None => Ok(()),
        Some(Checkpoint {
            positions: Positions::Kafka(_),
            ..
        }) => Err(CheckpointError::PerInstance {
            path: Checkpoint::path(dir),
        }
        .into()),
        Some(checkpoint) => Err(CheckpointError::Source {
            then: checkpoint.positions.command(),
            now: "run",
        }
        .into()),
    }
}

/// Numbers the input partitions for the engine's records ([`Home`]).
#[derive(Default)]
struct Homes {
    by_topic: HashMap<String, HashMap<i32, Home>>,
    count: u32,
}

impl Homes {
    fn of(&mut self, topic: &str, partition: i32) -> Result<Home, RunError> {
        if let Some(home) = self.by_topic.get(topic).and_then(|p| p.get(&partition)) {
            return Ok(*home);
        }
        let home = Home::try_from(self.count).map_err(|_| RunError::TooManyPartitions {
            topic: topic.to_owned(),
            partition,
        })?;
        self.count += 1;
        self.by_topic
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, home);
        Ok(home)
    }
}

/// What the last poll's rebalances decided, taken from the source.
struct Rebalanced {
    released: Vec<(String, i32)>,
    handoffs: Vec<Result<PartitionCheckpoint, CheckpointError>>,
}

impl Rebalanced {
    fn take(source: &KafkaSource) -> Rebalanced {
        Rebalanced {
            released: source.take_released(),
            handoffs: source.take_handoffs(),
        }
    }

    fn is_empty(&self) -> bool {
        self.released.is_empty() && self.handoffs.is_empty()
    }
}

/// Applies what the last poll's rebalances decided: drops the state of partitions released
/// to other members, then merges the checkpoints of partitions assigned here.
fn apply_rebalances(
    engine: &mut Engine,
    rebalanced: Rebalanced,
    homes: &mut Homes,
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    let Rebalanced { released, handoffs } = rebalanced;
    for (topic, partition) in released {
        let credentials = engine.forget(homes.of(&topic, partition)?);
        summary.released += 1;
        summary.released_credentials += credentials as u64;
        tracing::info!(%topic, partition, credentials, "Partition released; its state went with it.");
    }
    for handoff in handoffs {
        let PartitionCheckpoint {
            topic,
            partition,
            offset,
            share,
        } = handoff?;
        let absorbed = engine.absorb(share, homes.of(&topic, partition)?)?;
        *summary.restored.get_or_insert(0) += absorbed.credentials;
        summary.restored_partitions += 1;
        if absorbed.conflicts > 0 {
            tracing::warn!(%topic, partition, conflicts = absorbed.conflicts, "Credentials restored from a partition checkpoint were tracked here already (are the input topics keyed by credential id?); the record with the later activity was kept.");
        }
        tracing::info!(%topic, partition, offset, credentials = absorbed.credentials, "State restored from the partition's checkpoint.");
    }
    Ok(())
}

/// Writes a checkpoint of every assigned partition (its offset and its share of the engine's
/// state), after publishing the archive and flushing every sink, then commits those offsets. Returns false (and does nothing) while
/// a partition is still rebuilding its state.
#[allow(clippy::too_many_arguments)]
fn take_checkpoint(
    dir: &Path,
    engine: &Engine,
    source: &mut KafkaSource,
    sink: &mut dyn AlertSink,
    producer: &Producer,
    archive: Option<&mut Archive>,
    last_export: &mut Option<Instant>,
    homes: &mut Homes,
    summary: &mut RunSummary,
) -> Result<bool, RunError> {
    let Some(positions) = source.positions() else {
        return Ok(false);
    };
    let partitions: Vec<Home> = positions
        .iter()
        .map(|p| homes.of(&p.topic, p.partition))
        .collect::<Result<_, _>>()?;
    if let Some(archive) = archive {
        checkpoint(archive, engine, last_export, false)?;
    }
    sink.flush().map_err(RunError::Sink)?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(RunError::Sink)?;
    let mut shares = engine.shares(&partitions)?;
    let (mut bytes, mut credentials) = (0, 0);
    for (position, home) in positions.into_iter().zip(partitions) {
        let written = PartitionCheckpoint {
            topic: position.topic,
            partition: position.partition,
            offset: position.offset,
            share: shares.remove(&home).unwrap_or_default(),
        }
        .write(dir)?;
        bytes += written.bytes;
        credentials += written.credentials;
    }
    tracing::debug!(bytes, credentials, "Checkpoint written.");
    summary.checkpoints += 1;
    source.commit()?;
    summary.commits += 1;
    Ok(true)
}

/// Consumes until `shutdown` is set (or the input stays idle), then flushes and commits.
pub fn run(
    engine: &mut Engine,
    kafka: &KafkaConfig,
    sink: &mut dyn AlertSink,
    mut responder: Option<&mut Responder>,
    mut archive: Option<&mut Archive>,
    options: &RunOptions,
    shutdown: &AtomicBool,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    if let Some(dir) = &options.checkpoint {
        refuse_single_file(dir)?;
    }
    let producer = Producer::connect(kafka).map_err(RunError::Producer)?;
    let mut source = KafkaSource::connect(kafka, options.checkpoint.as_deref())?;
    let mut homes = Homes::default();
    let decoders: HashMap<String, Box<dyn Decoder + Send>> = kafka
        .inputs
        .iter()
        .map(|i| {
            (
                i.topic.clone(),
                i.format.decoder_with(&engine.config().secret_hasher),
            )
        })
        .collect();
    let mut decoding = Decoding::start(decoders, options.decode_thread)?;
    let commit_interval = Duration::from_micros(kafka.commit_interval.micros().max(0) as u64);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut last_commit = Instant::now();
    let mut last_message = Instant::now();
    // The first message received and when the last one was processed.
    let mut consumed: Option<(Instant, Instant)> = None;
    let mut pending = false;
    // A commit point waiting for its alerts and dead letters to be acknowledged.
    let mut committing: Option<(crate::source::kafka::CommitPoint, u64)> = None;
    let mut latency = crate::api::new_latency_histogram();
    let mut last_publish = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_archive_tick = Instant::now();
    let mut last_export = None;
    let mut lag = Vec::new();
    let severities: std::collections::BTreeMap<String, &'static str> = engine
        .rules()
        .rules()
        .iter()
        .map(|r| (r.id.clone(), r.severity.as_str()))
        .collect();

    // Runs a decoded message through the engine and the sinks and marks it done. Messages
    // come out of `decoding` in the order they went in.
    macro_rules! process {
        ($decoded:expr) => {{
            let Decoded {
                delivery,
                received,
                pieces,
            } = $decoded;
            engine.set_home(homes.of(&delivery.topic, delivery.partition)?);
            let result = apply_message(
                &delivery,
                &pieces,
                engine,
                sink,
                responder.as_deref_mut(),
                archive.as_deref_mut(),
                &producer,
                kafka,
                &mut alerts,
                &mut summary,
            );
            decoding.recycle(pieces);
            result?;
            source.done(&delivery);
            pending = true;
            let finished = Instant::now();
            last_message = finished;
            consumed = Some((consumed.map_or(received, |(first, _)| first), finished));
            let _ = latency.record(((finished - received).as_micros() as u64).max(1));
        }};
    }
    macro_rules! drain {
        () => {
            while let Some(decoded) = decoding.next(true)? {
                process!(decoded);
            }
        };
    }

    while !shutdown.load(Ordering::Relaxed) {
        // Backpressure: while the revocation queue is full, fetching pauses and the group is
        // still polled; it resumes once the queue has drained to half. The messages handed
        // out are processed first: on resume, fetching restarts after the last one handed
        // out, and the source checks the first message against the last one done.
        if let Some(responder) = responder.as_deref() {
            let paused = responder.backpressure(source.is_paused());
            if paused != source.is_paused() {
                drain!();
                source.set_paused(paused)?;
            }
        }
        // With revocations, no more messages in flight than the revocation queue has room
        // for: a message of one record raises at most one, and the queue is to pass its bound
        // by at most one message's worth before consumption pauses.
        let limit = responder
            .as_deref()
            .map_or(IN_FLIGHT, |r| (r.room() as usize).clamp(1, IN_FLIGHT));
        let ahead = decoding.in_flight();
        let delivery = if ahead >= limit {
            None
        } else if ahead > 0 {
            // Work is waiting: only take a message that is there already.
            source.poll(Duration::ZERO)?
        } else {
            source.poll(Duration::from_millis(100))?
        };
        // Before the message: it may be the first of a partition whose state just arrived.
        // The messages before it go first, so a released partition's last ones do not bring
        // its state back.
        let rebalanced = Rebalanced::take(&source);
        if !rebalanced.is_empty() {
            drain!();
            apply_rebalances(engine, rebalanced, &mut homes, &mut summary)?;
        }
        let received = delivery.is_some();
        match delivery {
            Some(delivery) => {
                last_message = Instant::now();
                summary.messages += 1;
                summary.rebuilt += u64::from(delivery.rebuilding);
                if !decoding.decodes(&delivery.topic) {
                    continue;
                }
                decoding.submit(delivery)?;
                if options
                    .stop_after_messages
                    .is_some_and(|n| summary.messages >= n)
                {
                    break;
                }
            }
            // Waiting for an assignment or paused is not being idle, and neither is
            // decoding what came before.
            None if !source.has_assignment() || source.is_paused() || ahead > 0 => {
                last_message = Instant::now()
            }
            None => {
                if let Some(idle) = options.exit_when_idle {
                    if last_message.elapsed() >= idle {
                        tracing::info!(idle_secs = idle.as_secs_f64(), "Input idle; stopping.");
                        break;
                    }
                }
            }
        }
        // What is decoded already; and when no message came or the pipeline is full, wait
        // for the oldest one.
        let mut wait = !received || decoding.in_flight() >= limit;
        while let Some(decoded) = decoding.next(wait)? {
            process!(decoded);
            wait = false;
        }
        if let Some(api) = &options.api {
            if last_publish.elapsed() >= Duration::from_secs(1) {
                api.set_ready(source.has_assignment() && !source.is_rebuilding());
                if last_lag.elapsed() >= Duration::from_secs(5) || lag.is_empty() {
                    lag = source.lag();
                    last_lag = Instant::now();
                }
                let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
                let stats = responder.as_deref().map(Responder::stats);
                let mut revocations = std::collections::BTreeMap::new();
                if let Some(stats) = stats {
                    revocations.insert("delivered", get(&stats.delivered));
                    revocations.insert("refused", get(&stats.refused));
                    revocations.insert("pending", get(&stats.pending));
                    revocations.insert("dry_run", get(&stats.dry_run));
                    revocations.insert("protected", get(&stats.protected));
                    revocations.insert("rate_limited", get(&stats.rate_limited));
                }
                api.publish(crate::api::Metrics {
                    revocations_queued: stats.map(|s| get(&s.queued)),
                    backpressure_pauses: stats.map_or(0, |s| get(&s.backpressure_pauses)),
                    paused: source.is_paused(),
                    engine: engine.stats().clone(),
                    messages: summary.messages,
                    malformed: summary.malformed,
                    severities: severities.clone(),
                    revocations,
                    lag: lag.clone(),
                    latency: latency.clone(),
                    // Filled in by the /metrics handler, off this thread: walking the
                    // state costs time proportional to the credentials tracked.
                    credentials: 0,
                    state_bytes: 0,
                });
                last_publish = Instant::now();
            }
        }
        if let Some(archive) = archive.as_deref_mut() {
            if last_archive_tick.elapsed() >= Duration::from_secs(1) {
                archive.tick()?;
                last_archive_tick = Instant::now();
            }
        }
        if let Some(dir) = &options.checkpoint {
            let sealed = archive
                .as_deref()
                .is_some_and(|archive| archive.sealed_since_checkpoint());
            if pending
                && (sealed || last_commit.elapsed() >= options.checkpoint_interval)
                && take_checkpoint(
                    dir,
                    engine,
                    &mut source,
                    sink,
                    &producer,
                    archive.as_deref_mut(),
                    &mut last_export,
                    &mut homes,
                    &mut summary,
                )?
            {
                pending = false;
                last_commit = Instant::now();
            }
            continue;
        }
        match archive.as_deref_mut() {
            None => {
                // Pipelined: note the offsets and start confirming the alerts and dead letters
                // emitted so far; commit those offsets once the broker acknowledged them all,
                // while consumption goes on (a blocking flush and commit stalled the loop for
                // a broker round trip or two every commit_interval).
                if committing.is_none() && pending && last_commit.elapsed() >= commit_interval {
                    sink.start_confirm().map_err(RunError::Sink)?;
                    committing = Some((source.commit_point(), producer.mark()));
                    pending = false;
                    last_commit = Instant::now();
                }
                if let Some((point, mark)) = &committing {
                    if sink.confirmed().map_err(RunError::Sink)?
                        && producer.delivered_through(*mark).map_err(RunError::Sink)?
                    {
                        source.commit_at(point)?;
                        summary.commits += 1;
                        committing = None;
                    }
                }
            }
            Some(archive) => {
                // A file was published (rolled by rows or age): publish the rest too and
                // commit, so offsets and the archive agree.
                if archive.sealed_since_checkpoint() {
                    checkpoint(archive, engine, &mut last_export, false)?;
                    confirm_and_commit(sink, &producer, &mut source, &mut summary)?;
                    pending = false;
                    last_commit = Instant::now();
                }
            }
        }
    }
    // Whatever was handed out is processed, so its offsets can be committed. (What the
    // loop's bookkeeping sets as it goes, `pending` and `last_message`, is not read after.)
    #[allow(unused_assignments)]
    {
        drain!();
    }
    if let Some(dir) = &options.checkpoint {
        let done = take_checkpoint(
            dir,
            engine,
            &mut source,
            sink,
            &producer,
            archive.as_deref_mut(),
            &mut last_export,
            &mut homes,
            &mut summary,
        )?;
        if !done {
            tracing::warn!("Stopping while state is still being rebuilt; no checkpoint written.");
        }
    }
    if let Some(archive) = archive {
        checkpoint(archive, engine, &mut last_export, true)?;
    }
    // Suppression windows stay open: closing them here would emit roll-ups that a restart
    // (which rebuilds the same windows) would emit again with other counts.
    confirm_and_commit(sink, &producer, &mut source, &mut summary)?;
    summary.engine = engine.stats().clone();
    summary.consuming = consumed.map_or(Duration::ZERO, |(first, last)| last - first);
    Ok(summary)
}

/// Publishes the archive's buffered rows, and the credentials table when `force`d or once per
/// roll age (its cost grows with the credentials tracked, not with the traffic).
fn checkpoint(
    archive: &mut Archive,
    engine: &Engine,
    last_export: &mut Option<Instant>,
    force: bool,
) -> Result<(), RunError> {
    archive.checkpoint()?;
    if force || last_export.is_none_or(|at| at.elapsed() >= archive.roll_age()) {
        archive.export_credentials(engine.state())?;
        *last_export = Some(Instant::now());
    }
    Ok(())
}

/// Messages handed to the decoding thread and not yet processed, at most.
pub const IN_FLIGHT: usize = 32;

/// What became of one record of a message.
enum Piece {
    /// Decoded into the message's next `n` events (none: valid but irrelevant).
    Events(u32),
    /// Rejected, with the part of the record its dead letter carries.
    Rejected { record: Vec<u8>, reason: String },
}

/// A message's events and rejects, in its records' order. Kept from message to message, so
/// its vectors and the events' buffers are reused.
#[derive(Default)]
struct Pieces {
    events: Vec<Event>,
    pieces: Vec<Piece>,
}

/// A message, when it was received, and what its records decoded to.
struct Decoded {
    delivery: Delivery,
    received: Instant,
    pieces: Pieces,
}

/// Decodes a message's records into `out`, emptied first (its events back to `decoder`).
fn decode_message(payload: &[u8], decoder: &mut dyn Decoder, out: &mut Pieces) {
    decoder.recycle(&mut out.events);
    out.pieces.clear();
    if payload.len() > MAX_DOCUMENT_BYTES {
        out.pieces.push(Piece::Rejected {
            record: payload[..MAX_RECORD_BYTES].to_vec(),
            reason: format!(
                "message of {} bytes exceeds the {MAX_DOCUMENT_BYTES}-byte limit",
                payload.len()
            ),
        });
        return;
    }
    for element in split_records(payload) {
        if element.len() > MAX_RECORD_BYTES {
            out.pieces.push(Piece::Rejected {
                record: element[..MAX_RECORD_BYTES].to_vec(),
                reason: format!(
                    "record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                    element.len()
                ),
            });
            continue;
        }
        let before = out.events.len();
        match decoder.decode(element, &mut out.events) {
            Ok(()) => out
                .pieces
                .push(Piece::Events((out.events.len() - before) as u32)),
            Err(error) => out.pieces.push(Piece::Rejected {
                record: element.to_vec(),
                reason: error.reason,
            }),
        }
    }
}

/// Where messages are decoded: on the loop's thread, or on one of their own that decodes
/// while the loop runs the engine over the messages before. Either way messages come out in
/// the order they went in, and what comes out is the same.
enum Decoding {
    Inline {
        decoders: HashMap<String, Box<dyn Decoder + Send>>,
        ready: Option<Decoded>,
        spare: Pieces,
    },
    Thread {
        topics: std::collections::HashSet<String>,
        to: std::sync::mpsc::Sender<(Delivery, Instant, Pieces)>,
        from: std::sync::mpsc::Receiver<Decoded>,
        in_flight: usize,
        spare: Vec<Pieces>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Decoding {
    fn start(
        mut decoders: HashMap<String, Box<dyn Decoder + Send>>,
        thread: bool,
    ) -> Result<Decoding, RunError> {
        if !thread {
            return Ok(Decoding::Inline {
                decoders,
                ready: None,
                spare: Pieces::default(),
            });
        }
        let topics = decoders.keys().cloned().collect();
        let (to, work) = std::sync::mpsc::channel::<(Delivery, Instant, Pieces)>();
        let (done, from) = std::sync::mpsc::channel::<Decoded>();
        // Ends when the loop drops its sender (or its receiver: the next send fails).
        let thread = std::thread::Builder::new()
            .name("credwatch-decode".to_owned())
            .spawn(move || {
                for (delivery, received, mut pieces) in work {
                    let Some(decoder) = decoders.get_mut(&delivery.topic) else {
                        continue;
                    };
                    decode_message(&delivery.payload, decoder.as_mut(), &mut pieces);
                    let decoded = Decoded {
                        delivery,
                        received,
                        pieces,
                    };
                    if done.send(decoded).is_err() {
                        return;
                    }
                }
            })
            .map_err(RunError::Decoding)?;
        Ok(Decoding::Thread {
            topics,
            to,
            from,
            in_flight: 0,
            spare: Vec::new(),
            thread: Some(thread),
        })
    }

    /// Whether messages of `topic` have a decoder (an input topic).
    fn decodes(&self, topic: &str) -> bool {
        match self {
            Decoding::Inline { decoders, .. } => decoders.contains_key(topic),
            Decoding::Thread { topics, .. } => topics.contains(topic),
        }
    }

    /// Messages handed in and not yet taken out.
    fn in_flight(&self) -> usize {
        match self {
            Decoding::Inline { ready, .. } => usize::from(ready.is_some()),
            Decoding::Thread { in_flight, .. } => *in_flight,
        }
    }

    /// Hands in a message of an input topic, received now.
    fn submit(&mut self, delivery: Delivery) -> Result<(), RunError> {
        let received = Instant::now();
        match self {
            Decoding::Inline {
                decoders,
                ready,
                spare,
            } => {
                let mut pieces = std::mem::take(spare);
                match decoders.get_mut(&delivery.topic) {
                    Some(decoder) => {
                        decode_message(&delivery.payload, decoder.as_mut(), &mut pieces)
                    }
                    // Not an input topic (the loop does not hand those in): nothing to run.
                    None => pieces.pieces.clear(),
                }
                *ready = Some(Decoded {
                    delivery,
                    received,
                    pieces,
                });
                Ok(())
            }
            Decoding::Thread {
                to,
                in_flight,
                spare,
                ..
            } => {
                let pieces = spare.pop().unwrap_or_default();
                if to.send((delivery, received, pieces)).is_err() {
                    return Err(self.died());
                }
                *in_flight += 1;
                Ok(())
            }
        }
    }

    /// The oldest message handed in and decoded: waiting for it when `wait`, else only if it
    /// is ready. `None` when nothing is in flight (or, not waiting, nothing is ready yet).
    fn next(&mut self, wait: bool) -> Result<Option<Decoded>, RunError> {
        match self {
            Decoding::Inline { ready, .. } => Ok(ready.take()),
            Decoding::Thread {
                from, in_flight, ..
            } => {
                if *in_flight == 0 {
                    return Ok(None);
                }
                let decoded = if wait {
                    from.recv().ok()
                } else {
                    match from.try_recv() {
                        Ok(decoded) => Some(decoded),
                        Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                    }
                };
                match decoded {
                    Some(decoded) => {
                        *in_flight -= 1;
                        Ok(Some(decoded))
                    }
                    None => Err(self.died()),
                }
            }
        }
    }

    /// Takes back a processed message's pieces for reuse.
    fn recycle(&mut self, pieces: Pieces) {
        match self {
            Decoding::Inline { spare, .. } => *spare = pieces,
            Decoding::Thread { spare, .. } => spare.push(pieces),
        }
    }

    /// The decoding thread hung up: it panicked. Passes its panic on.
    fn died(&mut self) -> RunError {
        if let Decoding::Thread { thread, .. } = self {
            if let Some(Err(panic)) = thread.take().map(std::thread::JoinHandle::join) {
                std::panic::resume_unwind(panic);
            }
        }
        RunError::Decoding(io::Error::other("it stopped"))
    }
}

/// Runs a decoded message's events through the engine, the archive, the responder and the
/// sinks, and its rejects to the dead-letter topic, in its records' order.
#[allow(clippy::too_many_arguments)]
fn apply_message(
    delivery: &Delivery,
    pieces: &Pieces,
    engine: &mut Engine,
    sink: &mut dyn AlertSink,
    mut responder: Option<&mut Responder>,
    mut archive: Option<&mut Archive>,
    producer: &Producer,
    kafka: &KafkaConfig,
    alerts: &mut Vec<Alert>,
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    let mut events = pieces.events.as_slice();
    for piece in &pieces.pieces {
        let these = match piece {
            Piece::Rejected { record, reason } => {
                reject(delivery, record, reason, producer, kafka, summary)?;
                continue;
            }
            Piece::Events(n) => {
                let (these, rest) = events.split_at(*n as usize);
                events = rest;
                these
            }
        };
        for event in these {
            alerts.clear();
            engine.process(event, alerts);
            if delivery.rebuilding {
                continue;
            }
            if let Some(archive) = archive.as_deref_mut() {
                let (zone, network) = engine.placement();
                archive.event(event, zone, network)?;
            }
            // Decisions reach the outbox (synced) before the offset can be committed.
            if let Some(responder) = responder.as_deref_mut() {
                responder.respond(engine, alerts);
            }
            for alert in alerts.iter() {
                if alert.activity == Activity::Create {
                    summary.alerts += 1;
                }
                if let Some(archive) = archive.as_deref_mut() {
                    archive.alert(alert)?;
                }
                sink.emit(alert).map_err(RunError::Sink)?;
            }
        }
    }
    Ok(())
}

/// The most of a rejected record a dead letter carries: with its headers, well under the
/// 1 MB that Kafka brokers and librdkafka producers accept by default (`message.max.bytes`),
/// so an oversized record cannot make its own dead letter fail.
pub const MAX_DEAD_LETTER_BYTES: usize = 512 * 1024;

/// Counts a rejected record and sends it, redacted, with its reason and origin, to the
/// dead-letter topic (when one is configured, and not while rebuilding state: the previous
/// run sent it already).
fn reject(
    delivery: &Delivery,
    element: &[u8],
    reason: &str,
    producer: &Producer,
    kafka: &KafkaConfig,
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    summary.malformed += 1;
    if delivery.rebuilding {
        return Ok(());
    }
    // Raw secrets in a rejected record never reach logs or the dead-letter topic.
    let (mut record, mut reason) = crate::redact::redact(element, reason);
    if record.len() > MAX_DEAD_LETTER_BYTES {
        reason =
            format!("{reason} (the dead letter keeps its first {MAX_DEAD_LETTER_BYTES} bytes)")
                .into();
        record = match record {
            std::borrow::Cow::Borrowed(bytes) => bytes[..MAX_DEAD_LETTER_BYTES].into(),
            std::borrow::Cow::Owned(mut bytes) => {
                bytes.truncate(MAX_DEAD_LETTER_BYTES);
                bytes.into()
            }
        };
    }
    tracing::debug!(topic = %delivery.topic, partition = delivery.partition, offset = delivery.offset, reason = %reason, "Record rejected.");
    if let Some(topic) = &kafka.dead_letter_topic {
        let headers = dead_letter_headers(
            &reason,
            &delivery.topic,
            delivery.partition,
            delivery.offset,
        );
        producer
            .send(topic, None, &record, Some(headers))
            .map_err(RunError::Sink)?;
    }
    Ok(())
}

fn confirm_and_commit(
    sink: &mut dyn AlertSink,
    producer: &Producer,
    source: &mut KafkaSource,
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    sink.flush().map_err(RunError::Sink)?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(RunError::Sink)?;
    source.commit()?;
    summary.commits += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_keep_their_number_and_a_65537th_is_refused() {
        let mut homes = Homes::default();
        assert_eq!(homes.of("access", 3).unwrap(), 0);
        assert_eq!(homes.of("lifecycle", 3).unwrap(), 1);
        assert_eq!(
            homes.of("access", 3).unwrap(),
            0,
            "the same partition, the same number"
        );
        for partition in 0..i32::from(Home::MAX) - 1 {
            homes.of("wide", partition).unwrap();
        }
        let error = homes.of("wide", -1).unwrap_err().to_string();
        assert!(
            error.contains("65536 input partitions") && error.contains("\"wide\""),
            "{error}"
        );
        assert_eq!(
            homes.of("access", 3).unwrap(),
            0,
            "known ones still resolve"
        );
    }
}
