//! Replay: run files or stdin through the engine, alerts to a sink, rejects to dead letters.
//!
//! Inputs are read in the order given, each line by line; every record is decoded, and every
//! event goes through the engine in arrival order. Alerts go to the caller's sink as they are
//! raised; at the end suppression windows close and a [`ReplaySummary`] says what happened.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alerts::{Activity, Alert, AlertSink};
use crate::archive::{Archive, ArchiveError, ArchiveSummary};
use crate::checkpoint::{Checkpoint, CheckpointError, Positions, ReplayPosition};
use crate::dead_letter::DeadLetterWriter;
use crate::decode::{split_records, Decoder, Format};
use crate::engine::{Engine, EngineStats};
use crate::event::{Event, Kind};
use crate::respond::Responder;
use crate::source::{
    Framing, LineReader, Origin, ReadOutcome, MAX_DOCUMENT_BYTES, MAX_RECORD_BYTES,
};

/// Why a replay stopped early (bad input never does; only I/O failures do).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {input}: {source}")]
    Input { input: String, source: io::Error },
    #[error("cannot write alerts: {0}")]
    Output(io::Error),
    #[error("cannot write dead letters to {path}: {source}")]
    DeadLetter { path: String, source: io::Error },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{input} is {len} bytes, shorter than the checkpoint's position {offset} in it: was it replaced? (use another --checkpoint directory to start over)")]
    Shrunk {
        input: String,
        len: u64,
        offset: u64,
    },
}

/// A replay's counters, kept in checkpoints so that a resumed replay's summary covers the
/// whole run.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplayCounters {
    pub records: u64,
    /// Valid records that carry no credential activity (a console login, a person's kubectl).
    pub ignored: u64,
    pub malformed: u64,
    /// Malformed records per first word(s) of the reason, for the summary.
    pub malformed_reasons: BTreeMap<String, u64>,
    pub alerts: u64,
    pub updates: u64,
}

/// What a replay saw and did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub counters: ReplayCounters,
    pub engine: EngineStats,
    pub elapsed: Duration,
    /// The revocation counters, when a webhook is configured.
    pub respond: Option<String>,
    /// What was archived, and where.
    pub archive: Option<(PathBuf, ArchiveSummary)>,
    /// Checkpoints written, and the position a replay resumed from.
    pub checkpoints: u64,
    pub resumed: Option<ResumedFrom>,
    /// Stopped by a signal before the end of its inputs (after a checkpoint).
    pub interrupted: bool,
}

/// Where a replay resumed, from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedFrom {
    pub input: String,
    pub offset: u64,
    pub credentials: usize,
}

impl ReplaySummary {
    /// The human summary printed on stderr.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.engine.events as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(
            text,
            "credwatch replay: {} records, {} events ({} access, {} issue, {} revoke, {} leak) in {:.2}s ({:.0} events/s)",
            self.counters.records,
            self.engine.events,
            self.engine.by_kind[Kind::Access.index()],
            self.engine.by_kind[Kind::Issue.index()],
            self.engine.by_kind[Kind::Revoke.index()],
            self.engine.by_kind[Kind::Leak.index()],
            secs,
            rate
        );
        if let Some(resumed) = &self.resumed {
            let _ = writeln!(
                text,
                "resumed from the checkpoint at {} byte {} ({} credentials restored); counts cover the whole replay",
                resumed.input, resumed.offset, resumed.credentials
            );
        }
        if self.interrupted {
            let _ = writeln!(
                text,
                "interrupted: stopped at a checkpoint; run the same command to resume"
            );
        } else if self.checkpoints > 0 {
            let _ = writeln!(text, "checkpoints written: {}", self.checkpoints);
        }
        if self.counters.ignored > 0 {
            let _ = writeln!(
                text,
                "records without credential activity (ignored): {}",
                self.counters.ignored
            );
        }
        let _ = writeln!(text, "malformed records: {}", self.counters.malformed);
        let mut reasons: Vec<(&String, &u64)> = self.counters.malformed_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, count) in reasons.iter().take(10) {
            let _ = writeln!(text, "  {count:>8}  {reason}");
        }
        if reasons.len() > 10 {
            let _ = writeln!(
                text,
                "  ({} more kinds of reason; see the dead-letter file)",
                reasons.len() - 10
            );
        }
        if self.engine.evicted > 0 || self.engine.windows_closed_early > 0 {
            let _ = writeln!(
                text,
                "state bounds reached: {} credentials evicted ({} leaked or revoked), {} suppression windows closed early",
                self.engine.evicted, self.engine.evicted_precious, self.engine.windows_closed_early
            );
        }
        if self.engine.names_dropped > 0 {
            let _ = writeln!(
                text,
                "names compacted: {} interned names no state used any more were dropped",
                self.engine.names_dropped
            );
        }
        if self.engine.late_events > 0 || self.engine.unknown_zone_names > 0 {
            let _ = writeln!(
                text,
                "late events: {}, unknown zone names in issuance: {}",
                self.engine.late_events, self.engine.unknown_zone_names
            );
        }
        let _ = writeln!(
            text,
            "alerts: {} (+{} roll-ups of suppressed repeats)",
            self.counters.alerts, self.counters.updates
        );
        if let Some(respond) = &self.respond {
            text.push_str(respond);
        }
        if let Some((dir, archive)) = &self.archive {
            text.push_str(&archive.render(dir));
        }
        let width = self
            .engine
            .rules
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            text,
            "  {:<width$}  {:>8}  {:>10}  {:>8}",
            "rule", "alerts", "suppressed", "excepted"
        );
        for (rule, counts) in &self.engine.rules {
            let _ = writeln!(
                text,
                "  {rule:<width$}  {:>8}  {:>10}  {:>8}",
                counts.alerts, counts.suppressed, counts.excepted
            );
        }
        text.push_str(&render_exceptions(&self.engine.exceptions));
        text
    }
}

/// The exceptions' lines of a summary: findings each one turned into no alert, and which
/// expired during the input (by event time).
pub fn render_exceptions(
    exceptions: &std::collections::BTreeMap<String, crate::engine::ExceptionCounts>,
) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if exceptions.is_empty() {
        return text;
    }
    let width = exceptions.keys().map(String::len).max().unwrap_or(9).max(9);
    let _ = writeln!(
        text,
        "  {:<width$}  {:>10}  status",
        "exception", "suppressed"
    );
    for (id, counts) in exceptions {
        let status = match counts.expired_at {
            Some(at) => format!("expired (seen at {at}); no longer applies"),
            None => "active".to_owned(),
        };
        let _ = writeln!(text, "  {id:<width$}  {:>10}  {status}", counts.suppressed);
    }
    text
}

/// Where rejected records go.
pub enum DeadLetters {
    /// Counted only.
    Discard,
    File {
        path: PathBuf,
        writer: DeadLetterWriter<io::BufWriter<File>>,
    },
}

impl DeadLetters {
    /// Writes dead letters to `path`, after what it holds when `append` (a resumed replay),
    /// else replacing it.
    pub fn to_file(path: PathBuf, append: bool) -> Result<DeadLetters, ReplayError> {
        let file = File::options()
            .write(true)
            .create(true)
            .append(append)
            .truncate(!append)
            .open(&path);
        let file = file.map_err(|source| ReplayError::DeadLetter {
            path: path.display().to_string(),
            source,
        })?;
        Ok(DeadLetters::File {
            path,
            writer: DeadLetterWriter::new(io::BufWriter::new(file)),
        })
    }

    fn write(
        &mut self,
        origin: &Origin,
        reason: &str,
        record: &[u8],
        full_len: Option<u64>,
    ) -> Result<(), ReplayError> {
        match self {
            DeadLetters::Discard => Ok(()),
            DeadLetters::File { path, writer } => writer
                .write(origin, reason, record, full_len)
                .map_err(|source| ReplayError::DeadLetter {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }

    fn flush(&mut self) -> Result<(), ReplayError> {
        match self {
            DeadLetters::Discard => Ok(()),
            DeadLetters::File { path, writer } => {
                writer.flush().map_err(|source| ReplayError::DeadLetter {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// How long the end of a replay waits for revocations still being delivered; what is not
/// delivered by then stays in the outbox for the next start.
const RESPOND_WAIT: Duration = Duration::from_secs(30);

/// How much of an input is read to tell JSON lines from one JSON document.
const PEEK_BYTES: usize = 64 * 1024;

/// Drives inputs through an engine.
pub struct Replay<'a> {
    engine: &'a mut Engine,
    responder: Option<Responder>,
    archive: Option<Archive>,
    progress: Option<indicatif::ProgressBar>,
    sink: &'a mut dyn AlertSink,
    dead_letters: DeadLetters,
    format: Format,
    summary: ReplaySummary,
    alerts: Vec<Alert>,
    checkpoints: Option<Checkpoints>,
    /// Decode JSON lines on a thread of their own, ahead of the engine.
    decode_ahead: bool,
}

/// Periodic checkpoints of a replay (see [`crate::checkpoint`]).
struct Checkpoints {
    dir: PathBuf,
    interval: Duration,
    inputs: Vec<String>,
    last: Instant,
    /// The input being read, by index.
    current: usize,
    /// Where the replay resumed: an input index and a byte offset and line in it.
    resume: Option<(usize, u64, u64)>,
    stop: Arc<AtomicBool>,
}

impl<'a> Replay<'a> {
    pub fn new(
        engine: &'a mut Engine,
        sink: &'a mut dyn AlertSink,
        dead_letters: DeadLetters,
        format: Format,
    ) -> Self {
        Replay {
            engine,
            responder: None,
            archive: None,
            progress: None,
            sink,
            dead_letters,
            format,
            summary: ReplaySummary::default(),
            alerts: Vec::new(),
            checkpoints: None,
            decode_ahead: false,
        }
    }

    /// Checkpoints the replay of `inputs` into `dir` every `interval`, at the end, and when
    /// `stop` is set (then stopping); resumes from the checkpoint already in `dir`, if any.
    /// Inputs must be files (stdin cannot be resumed) and the same ones, in the same order,
    /// as when the checkpoint was taken.
    pub fn with_checkpoints(
        mut self,
        dir: PathBuf,
        interval: Duration,
        inputs: &[String],
        stop: Arc<AtomicBool>,
    ) -> Result<Self, ReplayError> {
        let mut resume = None;
        if let Some(checkpoint) = Checkpoint::read(&dir)? {
            let position = checkpoint.positions.into_replay()?;
            if position.inputs != inputs {
                return Err(CheckpointError::Inputs {
                    then: position.inputs,
                    now: inputs.to_vec(),
                }
                .into());
            }
            let credentials = checkpoint.engine.store.credentials.len();
            self.engine.restore(checkpoint.engine)?;
            self.summary.counters = position.counters;
            self.summary.resumed = Some(ResumedFrom {
                input: inputs
                    .get(position.input)
                    .cloned()
                    .unwrap_or_else(|| "(end of input)".to_owned()),
                offset: position.offset,
                credentials,
            });
            resume = Some((position.input, position.offset, position.line));
        }
        self.checkpoints = Some(Checkpoints {
            dir,
            interval,
            inputs: inputs.to_vec(),
            last: Instant::now(),
            current: 0,
            resume,
            stop,
        });
        Ok(self)
    }

    /// Replays `inputs` in order (from the checkpoint's position when resuming). Returns early,
    /// with `interrupted` set in the summary, when the stop flag of
    /// [`Replay::with_checkpoints`] is raised.
    pub fn inputs(&mut self, inputs: &[String]) -> Result<(), ReplayError> {
        for (index, input) in inputs.iter().enumerate() {
            let start = match self.checkpoints.as_mut() {
                None => None,
                Some(checkpoints) => {
                    checkpoints.current = index;
                    match checkpoints.resume {
                        Some((at, _, _)) if index < at => continue,
                        Some((at, offset, line)) if index == at && offset > 0 => {
                            Some((offset, line))
                        }
                        _ => None,
                    }
                }
            };
            match start {
                Some((offset, line)) => self.resume_input(input, offset, line)?,
                None => self.input(input)?,
            }
            if self.summary.interrupted {
                return Ok(());
            }
            self.checkpoint_if_due(index + 1, 0, 0)?;
        }
        Ok(())
    }

    /// Continues a file of JSON lines at byte `offset`, after `line` lines.
    fn resume_input(&mut self, input: &str, offset: u64, line: u64) -> Result<(), ReplayError> {
        use std::io::Seek as _;
        let input_error = |source| ReplayError::Input {
            input: input.to_owned(),
            source,
        };
        let mut file = File::open(input).map_err(input_error)?;
        let len = file.metadata().map_err(input_error)?.len();
        if len < offset {
            return Err(ReplayError::Shrunk {
                input: input.to_owned(),
                len,
                offset,
            });
        }
        file.seek(io::SeekFrom::Start(offset))
            .map_err(input_error)?;
        let started = Instant::now();
        let decoder = self
            .format
            .decoder_with(&self.engine.config().secret_hasher);
        let reader = LineReader::resumed(BufReader::with_capacity(1 << 16, file), offset, line);
        let result = self.read_lines(input, reader, decoder);
        self.summary.elapsed += started.elapsed();
        result
    }

    /// Writes a checkpoint at (`input`, `offset`, `line`) when checkpoints are on and the
    /// interval has passed or a stop was asked for; on a stop, marks the replay interrupted.
    fn checkpoint_if_due(
        &mut self,
        input: usize,
        offset: u64,
        line: u64,
    ) -> Result<(), ReplayError> {
        let Some(checkpoints) = self.checkpoints.as_ref() else {
            return Ok(());
        };
        let stop = checkpoints.stop.load(Ordering::Relaxed);
        if !stop && checkpoints.last.elapsed() < checkpoints.interval {
            return Ok(());
        }
        self.checkpoint(input, offset, line)?;
        if stop {
            self.summary.interrupted = true;
        }
        Ok(())
    }

    /// Delivers everything emitted so far, then writes the checkpoint.
    fn checkpoint(&mut self, input: usize, offset: u64, line: u64) -> Result<(), ReplayError> {
        let Some(checkpoints) = self.checkpoints.as_ref() else {
            return Ok(());
        };
        self.sink.flush().map_err(ReplayError::Output)?;
        self.dead_letters.flush()?;
        if let Some(archive) = self.archive.as_mut() {
            archive.checkpoint()?;
        }
        let checkpoint = Checkpoint {
            positions: Positions::Replay(ReplayPosition {
                inputs: checkpoints.inputs.clone(),
                input,
                offset,
                line,
                counters: self.summary.counters.clone(),
            }),
            engine: self.engine.snapshot()?,
        };
        let started = Instant::now();
        let written = checkpoint.write(&checkpoints.dir)?;
        tracing::debug!(
            input,
            offset,
            bytes = written.bytes,
            credentials = written.credentials,
            millis = started.elapsed().as_millis() as u64,
            "Checkpoint written."
        );
        self.summary.checkpoints += 1;
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.last = Instant::now();
        }
        Ok(())
    }

    /// Decodes JSON lines on a second thread while the engine runs the events decoded
    /// before them. What the replay does is the same either way (the same alerts, dead
    /// letters, archive and checkpoints, in the same order); only the time differs. Whole
    /// JSON documents are decoded on the engine's thread regardless.
    pub fn with_decode_thread(mut self, on: bool) -> Self {
        self.decode_ahead = on;
        self
    }

    /// Shows progress (records, events, alerts) on a spinner; for terminals.
    pub fn with_progress(mut self, progress: indicatif::ProgressBar) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Archives every event and alert, and at the end the credentials' state.
    pub fn with_archive(mut self, archive: Archive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Sends revocation decisions of `revoke` rules to `responder`.
    pub fn with_responder(mut self, responder: Responder) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Replays a file, or stdin when `input` is `-`.
    pub fn input(&mut self, input: &str) -> Result<(), ReplayError> {
        if input == "-" {
            // Not `stdin().lock()`: a lock cannot move to the decoding thread.
            self.reader(input, BufReader::with_capacity(1 << 16, io::stdin()))
        } else {
            let file = File::open(input).map_err(|source| ReplayError::Input {
                input: input.to_owned(),
                source,
            })?;
            self.reader(input, BufReader::with_capacity(1 << 16, file))
        }
    }

    /// Replays records from any reader; `name` labels it in dead letters. The framing is
    /// detected from the first 64 KiB: JSON lines, or one JSON document (a pretty-printed
    /// array or object, a CloudTrail file) whose elements are the records.
    pub fn reader(
        &mut self,
        name: &str,
        mut reader: impl BufRead + Send + 'static,
    ) -> Result<(), ReplayError> {
        let started = Instant::now();
        let input_error = |source| ReplayError::Input {
            input: name.to_owned(),
            source,
        };
        let mut head = Vec::with_capacity(PEEK_BYTES);
        (&mut reader)
            .take(PEEK_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(input_error)?;
        let framing = Framing::detect(&head);
        let input = io::Cursor::new(head).chain(reader);
        let mut decoder = self
            .format
            .decoder_with(&self.engine.config().secret_hasher);
        let result = match framing {
            Framing::Lines => self.read_lines(name, LineReader::new(input), decoder),
            Framing::Document => self.document(name, input, &mut *decoder),
        };
        self.summary.elapsed += started.elapsed();
        result
    }

    /// Reads and decodes JSON lines a batch at a time and runs each batch: on this thread, or
    /// with [`Replay::with_decode_thread`] on a thread of its own that reads ahead while this
    /// one runs the engine.
    fn read_lines<R: BufRead + Send + 'static>(
        &mut self,
        name: &str,
        mut lines: LineReader<R>,
        mut decoder: Box<dyn Decoder + Send>,
    ) -> Result<(), ReplayError> {
        let input: Arc<str> = Arc::from(name);
        if !self.decode_ahead {
            let mut record = Vec::with_capacity(4096);
            let mut batch = Batch::default();
            loop {
                batch.recycle(&mut *decoder);
                read_ahead(&mut lines, &mut *decoder, &input, &mut record, &mut batch);
                if self.apply(&batch)? == Flow::Stop || batch.end {
                    return batch.ended(name);
                }
            }
        }
        // Batches go to this thread over a bounded channel (the reader stays at most a few
        // batches ahead) and come back to be decoded into again. When this side stops early
        // (an interruption, an error), dropping the receiver ends the reader at its next send;
        // it is not waited for, as it may be blocked reading stdin.
        let (full, filled) = std::sync::mpsc::sync_channel::<Batch>(AHEAD_BATCHES);
        let (empty, emptied) = std::sync::mpsc::channel::<Batch>();
        let reader_input = Arc::clone(&input);
        let reader = std::thread::Builder::new()
            .name("credwatch-decode".to_owned())
            .spawn(move || {
                let mut record = Vec::with_capacity(4096);
                loop {
                    let mut batch = emptied.try_recv().unwrap_or_default();
                    batch.recycle(&mut *decoder);
                    read_ahead(
                        &mut lines,
                        &mut *decoder,
                        &reader_input,
                        &mut record,
                        &mut batch,
                    );
                    let end = batch.end;
                    if full.send(batch).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(|source| ReplayError::Input {
                input: name.to_owned(),
                source,
            })?;
        for mut batch in filled.iter() {
            if self.apply(&batch)? == Flow::Stop || batch.end {
                return batch.ended(name);
            }
            let _ = empty.send(batch);
        }
        // The reader hung up without an end: it panicked.
        match reader.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the decoding thread sends a batch marked as the end"),
        }
    }

    /// Runs a batch's records in order: events through the engine, rejects to dead letters,
    /// and after each line a checkpoint when one is due. Stops after the line at which an
    /// interruption was asked for.
    fn apply(&mut self, batch: &Batch) -> Result<Flow, ReplayError> {
        let mut events = batch.events.as_slice();
        for entry in &batch.entries {
            match entry {
                Entry::Events(0) => {
                    self.count_record();
                    self.summary.counters.ignored += 1;
                }
                Entry::Events(n) => {
                    self.count_record();
                    let (these, rest) = events.split_at(*n as usize);
                    events = rest;
                    self.process_events(these)?;
                }
                Entry::Rejected(rejected) => {
                    self.count_record();
                    let Rejected {
                        origin,
                        reason,
                        record,
                        full_len,
                    } = &**rejected;
                    self.reject(origin, reason, record, *full_len)?;
                }
                Entry::LineEnd { offset, line } => {
                    if let Some(current) = self.checkpoints.as_ref().map(|c| c.current) {
                        self.checkpoint_if_due(current, *offset, *line)?;
                        if self.summary.interrupted {
                            return Ok(Flow::Stop);
                        }
                    }
                }
            }
        }
        Ok(Flow::Go)
    }

    /// Counts a record read, and every 8,192 shows the counts on the progress spinner.
    fn count_record(&mut self) {
        self.summary.counters.records += 1;
        if self.summary.counters.records.is_multiple_of(8192) {
            if let Some(progress) = &self.progress {
                progress.set_message(format!(
                    "{} records, {} events, {} alerts, {} malformed",
                    self.summary.counters.records,
                    self.engine.stats().events,
                    self.summary.counters.alerts,
                    self.summary.counters.malformed
                ));
                progress.tick();
            }
        }
    }

    fn document(
        &mut self,
        name: &str,
        reader: impl Read,
        decoder: &mut dyn Decoder,
    ) -> Result<(), ReplayError> {
        let mut document = Vec::new();
        reader
            .take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut document)
            .map_err(|source| ReplayError::Input {
                input: name.to_owned(),
                source,
            })?;
        let input: Arc<str> = Arc::from(name);
        if document.len() > MAX_DOCUMENT_BYTES {
            let origin = Origin {
                input,
                line: 1,
                offset: 0,
            };
            self.summary.counters.records += 1;
            let reason = format!("document exceeds the {MAX_DOCUMENT_BYTES}-byte limit");
            let kept = &document[..MAX_RECORD_BYTES];
            return self.reject(&origin, &reason, kept, Some(document.len() as u64));
        }
        let at = At {
            input: &input,
            line: 1,
            offset: 0,
            document: true,
        };
        // One element at a time: a document may hold many thousands.
        let mut batch = Batch::default();
        for element in split_records(&document) {
            batch.recycle(decoder);
            decode_element(&at, &document, element, decoder, &mut batch);
            self.apply(&batch)?;
        }
        Ok(())
    }

    fn reject(
        &mut self,
        origin: &Origin,
        reason: &str,
        record: &[u8],
        full_len: Option<u64>,
    ) -> Result<(), ReplayError> {
        // Raw secrets in a rejected record never reach the summary, logs or dead letters.
        let (clean, reason) = crate::redact::redact(record, reason);
        let (record, reason) = (clean.as_ref(), reason.as_ref());
        self.summary.counters.malformed += 1;
        *self
            .summary
            .counters
            .malformed_reasons
            .entry(reason_class(reason))
            .or_default() += 1;
        tracing::debug!(%origin, reason, "Record rejected.");
        self.dead_letters.write(origin, reason, record, full_len)
    }

    fn process_events(&mut self, events: &[Event]) -> Result<(), ReplayError> {
        for event in events {
            self.alerts.clear();
            self.engine.process(event, &mut self.alerts);
            if let Some(archive) = self.archive.as_mut() {
                let (zone, network) = self.engine.placement();
                archive.event(event, zone, network)?;
            }
            self.respond()?;
        }
        Ok(())
    }

    /// Revocation decisions for the alerts just raised, and confirmed revocations back into
    /// state; then every alert to the sink.
    fn respond(&mut self) -> Result<(), ReplayError> {
        if let Some(responder) = self.responder.as_mut() {
            responder.respond(self.engine, &mut self.alerts);
        }
        emit(
            &mut *self.sink,
            self.archive.as_mut(),
            &self.alerts,
            &mut self.summary,
        )?;
        if let Some(responder) = self.responder.as_ref() {
            // A broker behind slows the replay down instead of queueing without limit.
            responder.wait_for_room(self.checkpoints.as_ref().map(|c| &*c.stop));
        }
        Ok(())
    }

    /// Closes suppression windows, flushes sinks and returns the summary.
    pub fn finish(mut self) -> Result<ReplaySummary, ReplayError> {
        let started = Instant::now();
        if let Some(progress) = self.progress.take() {
            progress.finish_and_clear();
        }
        self.alerts.clear();
        // An interrupted replay keeps its windows open, as its checkpoint has them: closing
        // them would emit roll-ups that the resumed replay emits again with other counts.
        if !self.summary.interrupted {
            self.engine.finish(&mut self.alerts);
        }
        emit(
            &mut *self.sink,
            self.archive.as_mut(),
            &self.alerts,
            &mut self.summary,
        )?;
        if let Some(responder) = self.responder.take() {
            let stats = responder.finish(RESPOND_WAIT);
            self.summary.respond = Some(stats.render());
        }
        self.sink.flush().map_err(ReplayError::Output)?;
        self.dead_letters.flush()?;
        if let Some(inputs) = self
            .checkpoints
            .as_ref()
            .filter(|_| !self.summary.interrupted)
            .map(|c| c.inputs.len())
        {
            // At the end of every input, windows closed: a rerun reads nothing more.
            self.checkpoint(inputs, 0, 0)?;
        }
        if let Some(mut archive) = self.archive.take() {
            archive.export_credentials(self.engine.state())?;
            let dir = archive.dir().to_owned();
            self.summary.archive = Some((dir, archive.finish()?));
        }
        self.summary.engine = self.engine.stats().clone();
        self.summary.elapsed += started.elapsed();
        Ok(self.summary)
    }
}

/// Lines per batch handed from the reading side to the engine's, at most; a batch also ends
/// once it holds this many events. The native decoder pools 256 events, so a batch handed
/// back refills its pool without dropping any. (Measured by `cargo bench --bench scaling`:
/// batches of 256 with a pool of 256 gave 1.69-1.72 times the events/s of one thread, a
/// pool of 64 only 1.13: the dropped events' buffers were allocated again.)
const BATCH_LINES: usize = 256;

/// Batches the decoding thread may have read ahead of the engine.
const AHEAD_BATCHES: usize = 4;

/// Records read and decoded, in input order, with what became of each.
#[derive(Default)]
struct Batch {
    /// The events of the batch's records, in order.
    events: Vec<Event>,
    entries: Vec<Entry>,
    /// The input ended after this batch (with `error`, if reading it failed).
    end: bool,
    error: Option<io::Error>,
}

impl Batch {
    /// Empties the batch for the next one, its events back to `decoder` for reuse.
    fn recycle(&mut self, decoder: &mut dyn Decoder) {
        decoder.recycle(&mut self.events);
        self.entries.clear();
        self.end = false;
        self.error = None;
    }

    /// The input's read error, if the batch ended with one.
    fn ended(&mut self, name: &str) -> Result<(), ReplayError> {
        match self.error.take() {
            Some(source) => Err(ReplayError::Input {
                input: name.to_owned(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// What became of one record (an element of a line or document) or where a line ended.
enum Entry {
    /// Decoded into the batch's next `n` events; none: valid but irrelevant.
    Events(u32),
    /// Rejected: too long or not decodable.
    Rejected(Box<Rejected>),
    /// The end of a line, and the reader's position after it (for checkpoints).
    LineEnd { offset: u64, line: u64 },
}

struct Rejected {
    origin: Origin,
    reason: String,
    /// The record, or its first `MAX_RECORD_BYTES` when it was longer (`full_len`).
    record: Vec<u8>,
    full_len: Option<u64>,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// Reads and decodes lines into `batch` (emptied by the caller) until it holds
/// [`BATCH_LINES`] lines or as many events, or the input ends. `record` is the line buffer,
/// kept from batch to batch.
fn read_ahead<R: BufRead>(
    lines: &mut LineReader<R>,
    decoder: &mut dyn Decoder,
    input: &Arc<str>,
    record: &mut Vec<u8>,
    batch: &mut Batch,
) {
    for _ in 0..BATCH_LINES {
        if batch.events.len() >= BATCH_LINES {
            break;
        }
        let outcome = match lines.next_record(record) {
            Ok(outcome) => outcome,
            Err(error) => {
                batch.error = Some(error);
                batch.end = true;
                return;
            }
        };
        let (line, offset) = (lines.line(), lines.record_offset());
        match outcome {
            ReadOutcome::End => {
                batch.end = true;
                return;
            }
            ReadOutcome::TooLong { len } => {
                batch.entries.push(Entry::Rejected(Box::new(Rejected {
                    origin: Origin {
                        input: Arc::clone(input),
                        line,
                        offset,
                    },
                    reason: format!(
                        "record of {len} bytes exceeds the {MAX_RECORD_BYTES}-byte limit"
                    ),
                    record: record.clone(),
                    full_len: Some(len),
                })))
            }
            ReadOutcome::Record if record.iter().all(u8::is_ascii_whitespace) => {}
            ReadOutcome::Record => {
                let at = At {
                    input,
                    line,
                    offset,
                    document: false,
                };
                for element in split_records(record) {
                    decode_element(&at, record, element, decoder, batch);
                }
            }
        }
        batch.entries.push(Entry::LineEnd {
            offset: lines.offset(),
            line: lines.line(),
        });
    }
}

/// Where a record starts: what a rejected element's [`Origin`] is made of (only then).
struct At<'a> {
    input: &'a Arc<str>,
    line: u64,
    offset: u64,
    /// The record is a whole document, whose elements are on lines of their own.
    document: bool,
}

/// Decodes one element of `record` into `batch`, or records why it was rejected, with the
/// element's own line and offset.
fn decode_element(
    at: &At,
    record: &[u8],
    element: &[u8],
    decoder: &mut dyn Decoder,
    batch: &mut Batch,
) {
    let before = batch.events.len();
    match decoder.decode(element, &mut batch.events) {
        Ok(()) => batch
            .entries
            .push(Entry::Events((batch.events.len() - before) as u32)),
        Err(error) => {
            let offset = element.as_ptr() as usize - record.as_ptr() as usize;
            let line = if at.document {
                at.line + record[..offset].iter().filter(|&&b| b == b'\n').count() as u64
            } else {
                at.line
            };
            batch.entries.push(Entry::Rejected(Box::new(Rejected {
                origin: Origin {
                    input: Arc::clone(at.input),
                    line,
                    offset: at.offset + offset as u64,
                },
                reason: error.reason,
                record: element.to_vec(),
                full_len: None,
            })));
        }
    }
}

fn emit(
    sink: &mut dyn AlertSink,
    mut archive: Option<&mut Archive>,
    alerts: &[Alert],
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    for alert in alerts {
        if let Some(archive) = archive.as_deref_mut() {
            archive.alert(alert)?;
        }
        match alert.activity {
            Activity::Create => summary.counters.alerts += 1,
            Activity::Update => summary.counters.updates += 1,
        }
        sink.emit(alert).map_err(ReplayError::Output)?;
    }
    Ok(())
}

/// Groups reasons for the summary: the reason without serde's position and list of
/// expected fields, so one kind of mistake is one line however often it occurs.
fn reason_class(reason: &str) -> String {
    if reason.starts_with("record of ") {
        return "record too large".to_owned();
    }
    let mut class = reason;
    for cut in [" at line ", ", expected one of"] {
        if let Some(i) = class.find(cut) {
            class = &class[..i];
        }
    }
    class.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::alerts::JsonLinesSink;
    use crate::config::Config;
    use crate::rules::RuleSet;

    const CONFIG: &str = "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n";

    /// `lines` access events of 1,000 credentials nobody issued (so alerts keep coming), with a
    /// bad line every 97.
    fn input(lines: usize) -> String {
        (0..lines)
            .map(|i| {
                if i % 97 == 50 {
                    "not json\n".to_owned()
                } else {
                    format!(
                        "{{\"ts\":\"2026-03-01T{:02}:{:02}:{:02}Z\",\"kind\":\"access\",\"credential\":\"AKIA{}\",\"source_ip\":\"10.{}.{}.1\",\"endpoint\":\"s3:GetObject\"}}\n",
                        i / 3600,
                        i / 60 % 60,
                        i % 60,
                        i % 1000,
                        i % 200,
                        i / 200 % 250
                    )
                }
            })
            .collect()
    }

    /// Replays `path` with checkpoints in `dir`, the stop flag set from the start when `stop`;
    /// returns the summary and the alerts' JSON lines.
    fn replay(path: &Path, dir: &Path, decode_ahead: bool, stop: bool) -> (ReplaySummary, String) {
        let config = Config::parse("test", CONFIG).unwrap();
        let rules = RuleSet::builtin(&config).unwrap();
        let mut engine = Engine::new(config, rules);
        let mut out = Vec::new();
        let inputs = [path.display().to_string()];
        let summary = {
            let mut sink = JsonLinesSink::new(&mut out);
            let mut replay =
                Replay::new(&mut engine, &mut sink, DeadLetters::Discard, Format::Native)
                    .with_decode_thread(decode_ahead)
                    .with_checkpoints(
                        dir.to_owned(),
                        Duration::from_secs(3600),
                        &inputs,
                        Arc::new(AtomicBool::new(stop)),
                    )
                    .unwrap();
            replay.inputs(&inputs).unwrap();
            replay.finish().unwrap()
        };
        (summary, String::from_utf8(out).unwrap())
    }

    /// A stop asked for (SIGINT) ends the replay at the first line's checkpoint, with the
    /// decoding thread hundreds of lines ahead; resuming reads the rest, and the two parts
    /// together give what one uninterrupted replay gives, with or without the thread.
    #[test]
    fn a_stop_ends_at_a_line_and_the_resumed_replay_completes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, input(5_000)).unwrap();
        let (whole, whole_alerts) = replay(&path, &dir.path().join("whole"), false, false);
        assert_eq!(whole.counters.records, 5_000);
        assert_eq!(whole.counters.malformed, 52);
        assert!(whole_alerts.lines().count() > 100, "{whole_alerts}");
        for decode_ahead in [false, true] {
            let checkpoints = dir.path().join(format!("stopped-{decode_ahead}"));
            let (stopped, first) = replay(&path, &checkpoints, decode_ahead, true);
            assert!(stopped.interrupted);
            assert_eq!(stopped.counters.records, 1, "stopped after the first line");
            let position = Checkpoint::read(&checkpoints)
                .unwrap()
                .unwrap()
                .positions
                .into_replay()
                .unwrap();
            assert_eq!((position.input, position.line), (0, 1));
            let (resumed, rest) = replay(&path, &checkpoints, decode_ahead, false);
            assert!(!resumed.interrupted);
            assert_eq!(resumed.counters.records, 5_000, "counts cover the whole");
            assert_eq!(resumed.counters.malformed, 52);
            assert_eq!(first + &rest, whole_alerts, "decode ahead: {decode_ahead}");
        }
    }

    #[test]
    fn reasons_are_grouped() {
        assert_eq!(
            reason_class("invalid native event: expected value at line 1 column 1"),
            "invalid native event: expected value"
        );
        assert_eq!(
            reason_class(
                "invalid native event: unknown field `x`, expected one of `ts` at line 1 column 5"
            ),
            "invalid native event: unknown field `x`"
        );
        assert_eq!(
            reason_class("record of 9 bytes exceeds the 4-byte limit"),
            "record too large"
        );
    }
}
