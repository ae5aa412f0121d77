//! Scaling from one to two workers: the whole pipeline (decode, zones, state, the built-in
//! rules, suppression) over the demo's native traffic, once on one thread with one engine and
//! once on two threads, each with its own engine over half the credentials. The split is by a
//! hash of the credential id, which is what a Kafka topic keyed by credential gives two
//! consumers of one group (one partition each): every credential's events stay in order on
//! one worker, and workers share nothing.
//!
//! A third way uses two threads with one engine, as `replay --threads 2` does: one thread
//! decodes batches of lines, the other runs the engine over them. It keeps every relation
//! across credentials (one engine sees every event), and is bounded by the slower of the two
//! stages instead of by the shards' balance.
//!
//! And `replay` itself, of the same lines written to a file, with one thread and with two:
//! the whole path a user runs (reading, framing, dead letters, the sink), against the rest.
//!
//! Prints events/s for each, the speed-ups over one worker measured in the same run beside
//! the most the shards' balance allows, and whether the runs raised the same alerts (ids,
//! counts).
//!
//! Run: `cargo bench --bench scaling` (env `SCALING_ROUNDS`, default 5; `SCALING_CREDENTIALS`,
//! the demo's credential count, default 400: about 1.2M events).

mod common;

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use credwatch::alerts::{Alert, AlertSink};
use credwatch::config::Config;
use credwatch::decode::{Decoder, Format, NativeDecoder};
use credwatch::demo;
use credwatch::event::Event;
use credwatch::replay::{DeadLetters, Replay};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The lines of each of `workers` shards, split by the credential's hash (a fixed hash, so
/// the split is the same every run), each shard in input order.
fn shard(lines: &[Vec<u8>], workers: usize) -> Vec<Vec<&[u8]>> {
    let mut shards = vec![Vec::new(); workers];
    let mut events = Vec::new();
    for line in lines {
        events.clear();
        NativeDecoder::new()
            .decode(line, &mut events)
            .expect("valid event");
        let mut hasher = std::hash::DefaultHasher::new();
        events[0].credential.hash(&mut hasher);
        shards[(hasher.finish() % workers as u64) as usize].push(line.as_slice());
    }
    shards
}

/// One worker: decodes and processes its lines with its own engine; returns its alerts.
fn work(lines: &[&[u8]], config: &Config) -> Vec<Alert> {
    let mut engine = common::builtin_engine(config);
    let mut decoder = NativeDecoder::new();
    let mut events = Vec::with_capacity(1);
    let mut alerts = Vec::new();
    for line in lines {
        decoder.recycle(&mut events);
        decoder.decode(line, &mut events).expect("valid event");
        for event in &events {
            engine.process(event, &mut alerts);
        }
    }
    engine.finish(&mut alerts);
    alerts
}

/// Records per batch handed from the decoding thread to the engine's, as in `replay`: the
/// decoder's pool holds 256 events, so a returned batch refills it without dropping any.
const BATCH: usize = 256;

/// One engine over every line, with decoding on a second thread: batches of decoded events
/// go to the engine's thread over a bounded channel and come back, emptied, to be decoded
/// into again. Returns the seconds and the alerts.
fn pipelined(lines: &[Vec<u8>], config: &Config) -> (f64, Vec<Alert>) {
    let started = Instant::now();
    let alerts = std::thread::scope(|scope| {
        let (full, filled) = std::sync::mpsc::sync_channel::<Vec<Event>>(8);
        let (empty, emptied) = std::sync::mpsc::channel::<Vec<Event>>();
        scope.spawn(move || {
            let mut decoder = NativeDecoder::new();
            for chunk in lines.chunks(BATCH) {
                let mut batch = emptied.try_recv().unwrap_or_default();
                decoder.recycle(&mut batch);
                for line in chunk {
                    decoder.decode(line, &mut batch).expect("valid event");
                }
                if full.send(batch).is_err() {
                    return;
                }
            }
        });
        let mut engine = common::builtin_engine(config);
        let mut alerts = Vec::new();
        for batch in filled {
            for event in &batch {
                engine.process(event, &mut alerts);
            }
            let _ = empty.send(batch);
        }
        engine.finish(&mut alerts);
        alerts
    });
    (started.elapsed().as_secs_f64(), alerts)
}

/// Runs the shards on one thread each; returns the seconds from start to the last worker's
/// end, and every alert.
fn run(shards: &[Vec<&[u8]>], config: &Config) -> (f64, Vec<Alert>) {
    let started = Instant::now();
    let alerts = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter()
            .map(|lines| scope.spawn(move || work(lines, config)))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("worker"))
            .collect::<Vec<_>>()
    });
    (started.elapsed().as_secs_f64(), alerts)
}

fn fingerprint(alerts: &[Alert]) -> Vec<(String, u32)> {
    let mut keys: Vec<(String, u32)> = alerts.iter().map(|a| (a.id.clone(), a.count)).collect();
    keys.sort();
    keys
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What one round runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    OneWorker,
    TwoWorkers,
    Pipelined,
    /// `replay` of the same lines from a file, with one thread or two.
    Replay(bool),
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::OneWorker,
        Mode::TwoWorkers,
        Mode::Pipelined,
        Mode::Replay(false),
        Mode::Replay(true),
    ];

    fn label(self) -> &'static str {
        match self {
            Mode::OneWorker => "1 worker",
            Mode::TwoWorkers => "2 workers",
            Mode::Pipelined => "decode + engine",
            Mode::Replay(false) => "replay file, 1 thread",
            Mode::Replay(true) => "replay file, 2 threads",
        }
    }
}

/// An alert sink that keeps what it is given.
struct Keep(Vec<Alert>);

impl AlertSink for Keep {
    fn emit(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.0.push(alert.clone());
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `replay` of `path` (the lines as a JSON-lines file), decoding on a second thread or not;
/// returns the seconds and the alerts.
fn replay(path: &Path, config: &Config, two_threads: bool) -> (f64, Vec<Alert>) {
    let started = Instant::now();
    let mut engine = common::builtin_engine(config);
    let mut sink = Keep(Vec::new());
    let mut replay = Replay::new(&mut engine, &mut sink, DeadLetters::Discard, Format::Native)
        .with_decode_thread(two_threads);
    replay.input(&path.display().to_string()).expect("replay");
    let summary = replay.finish().expect("replay finished");
    assert_eq!(summary.counters.malformed, 0, "the demo's lines all decode");
    (started.elapsed().as_secs_f64(), sink.0)
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here.
    }
    let rounds = env_or("SCALING_ROUNDS", 5).max(1);
    let lines = common::demo_lines(env_or("SCALING_CREDENTIALS", 400));
    let config = Config::parse("demo", demo::DEMO_CONFIG).expect("demo config");
    let one = shard(&lines, 1);
    let two = shard(&lines, 2);
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    {
        let mut out = std::io::BufWriter::new(file.as_file());
        for line in &lines {
            out.write_all(line)
                .and_then(|()| out.write_all(b"\n"))
                .expect("write lines");
        }
        out.flush().expect("write lines");
    }
    println!(
        "scaling: {} events; shards of {} and {} events; {} cores available; {rounds} rounds",
        lines.len(),
        two[0].len(),
        two[1].len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
    let mut alerts: Vec<Vec<Alert>> = vec![Vec::new(); Mode::ALL.len()];
    for round in 0..rounds {
        // Rotate which goes first, so none always runs on a warmer machine.
        let mut order: Vec<usize> = (0..Mode::ALL.len()).collect();
        order.rotate_left(round % Mode::ALL.len());
        for index in order {
            let mode = Mode::ALL[index];
            let (secs, raised) = match mode {
                Mode::OneWorker => run(&one, &config),
                Mode::TwoWorkers => run(&two, &config),
                Mode::Pipelined => pipelined(&lines, &config),
                Mode::Replay(two_threads) => replay(file.path(), &config, two_threads),
            };
            let rate = lines.len() as f64 / secs;
            println!(
                "  round {round}: {:<22} {rate:>10.0} events/s",
                mode.label()
            );
            rates[index].push(rate);
            alerts[index] = raised;
        }
    }
    let rates: Vec<f64> = rates.into_iter().map(median).collect();
    let [single, double, piped, replay_one, replay_two] = rates[..] else {
        unreachable!("one rate per mode")
    };
    let same_as_one = |index: usize| {
        if fingerprint(&alerts[0]) == fingerprint(&alerts[index]) {
            "the same alerts as 1 worker"
        } else {
            "DIFFERENT alerts from 1 worker (a bug: one engine sees the same events in order)"
        }
    };
    println!("1 worker : {single:>10.0} events/s (median)");
    println!("2 workers: {double:>10.0} events/s (median)");
    println!(
        "decode on a second thread, one engine: {piped:>10.0} events/s (median), {:.2}x; {}",
        piped / single,
        same_as_one(2)
    );
    println!(
        "replay from a file, 1 thread: {replay_one:>10.0} events/s (median), {:.2}x of 1 worker; {}",
        replay_one / single,
        same_as_one(3)
    );
    println!(
        "replay from a file, 2 threads: {replay_two:>10.0} events/s (median), {:.2}x of 1 thread; {}",
        replay_two / replay_one,
        same_as_one(4)
    );
    let largest = two.iter().map(Vec::len).max().unwrap_or(1).max(1);
    println!(
        "speed-up : {:.2}x (the larger shard holds {:.0}% of the events: {:.2}x at most)",
        double / single,
        100.0 * largest as f64 / lines.len() as f64,
        lines.len() as f64 / largest as f64
    );
    let same = fingerprint(&alerts[0]) == fingerprint(&alerts[1]);
    println!(
        "alerts   : {} with 1 worker, {} with 2, {}",
        alerts[0].len(),
        alerts[1].len(),
        if same {
            "the same ids and counts"
        } else {
            "DIFFERENT (see BENCHMARKS.md: relations across credentials)"
        }
    );
}
