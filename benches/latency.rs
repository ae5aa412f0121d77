//! Detection latency through Kafka: from the moment an event is produced to the moment its
//! alert is handed to the alert producer, at fixed offered rates, with hdrhistogram.
//!
//! Needs a broker: `eval "$(scripts/test-broker start)"` then `cargo bench --bench latency`
//! (it reads CREDWATCH_TEST_BROKERS). `LATENCY_RATES=10000,50000,100000` (events/s offered)
//! and `LATENCY_SECS=10` (per rate) change the plan; `LATENCY_THREADS=2` runs credwatch with
//! decoding on a second thread (`run --threads 2`; default 1, as in `run`).
//!
//! For each rate, in one process and on one clock:
//! 1. baseline: a bare rdkafka consumer that does no work reads a paced stream; its latency is
//!    production to receipt, the floor any consumer of this broker sees;
//! 2. credwatch: `credwatch::run::run` (the code of `credwatch run`: Kafka source, decode,
//!    engine with the built-in rules, alerts produced to a topic) reads an identical paced
//!    stream; its latency is production to the alert reaching the alert sink.
//!
//! The stream: 1,000 issued prod credentials used from prod addresses, and every 50th event a
//! credential nobody issued, used once (each raises one `unknown-credential` alert, which is
//! what is timed: 2% of events). Events are produced in 1 ms ticks by a producer thread with
//! `linger.ms = 5` (LATENCY_LINGER_MS; with 0, tansu's per-request cost dominates and the
//! bare consumer's own p50 goes from 20 ms to 500 ms); the offered rate is what that thread
//! achieved. Everything shares the 2 cores with the broker, as a one-box deployment would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;

use credwatch::alerts::{Activity, Alert, AlertSink, Fanout, KafkaAlertSink, Producer};
use credwatch::config::{Config, KafkaConfig, KafkaInput};
use credwatch::decode::Format;
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;
use credwatch::run::{run, RunOptions};
use credwatch::time::Period;

const KNOWN: usize = 1000;
const ALERT_EVERY: u64 = 50;

/// Send instants of the timed events, by the unknown credential they use.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;

/// The event producer's `linger.ms` (LATENCY_LINGER_MS, default 5): how long it waits to
/// fill a batch; part of the measured latency.
fn linger_ms() -> String {
    std::env::var("LATENCY_LINGER_MS").unwrap_or_else(|_| "5".into())
}

/// Whether credwatch decodes on a second thread (LATENCY_THREADS=2).
fn decode_thread() -> bool {
    std::env::var("LATENCY_THREADS").is_ok_and(|t| t.trim() == "2")
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn kafka_config(brokers: &str, input: &str, alerts: Option<String>) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers.to_owned(),
        group_id: format!("bench-latency-{}", stamp()),
        inputs: vec![KafkaInput {
            topic: input.to_owned(),
            format: Format::Native,
        }],
        alerts_topic: alerts,
        dead_letter_topic: None,
        // LATENCY_COMMIT_SECS (default 1): every commit flushes the alert producer and
        // commits synchronously, which holds the loop for a broker round trip or two.
        commit_interval: Period::from_secs(
            std::env::var("LATENCY_COMMIT_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
        ),
        allowed_lateness: Period::from_secs(60),
        properties: consumer_properties(),
    }
}

/// Consumer settings of both phases: `fetch.wait.max.ms` (LATENCY_FETCH_WAIT_MS, default 1)
/// is how long tansu holds every fetch. tansu 0.6 sleeps out the rest of that time even when
/// the fetch found data (tansu-storage, src/service/fetch.rs: the `sleep` comes before the
/// loop's test of the bytes found), so a message waits on average one and a half holds:
/// with 10 ms the floor's p50 was 20 ms, with librdkafka's default of 500 ms it dominates
/// everything. A Kafka broker answers as soon as data is there and needs no such setting.
fn consumer_properties() -> std::collections::BTreeMap<String, String> {
    let wait = std::env::var("LATENCY_FETCH_WAIT_MS").unwrap_or_else(|_| "1".into());
    [("fetch.wait.max.ms".to_owned(), wait)].into()
}

/// Before timing: the issuances of the known credentials, then one use of `AKIAPROBE`
/// (unknown: it alerts), whose arrival at the far end says the pipeline is flowing.
fn warm_up(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str) {
    for i in 0..KNOWN {
        let line = format!(
            r#"{{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"AKIAKNOWN{i:011}","allowed_zones":["prod"]}}"#
        );
        send(producer, topic, &line);
    }
    send(
        producer,
        topic,
        r#"{"ts":"2026-03-01T00:00:00Z","kind":"access","credential":"AKIAPROBE","source_ip":"10.0.0.1"}"#,
    );
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, line: &str) {
    let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).payload(line).key("k");
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// Produces `rate` events/s for `secs` in 1 ms ticks; returns the events sent and the
/// achieved rate. Timed events' send instants go to `sent`.
fn produce(
    brokers: &str,
    topic: &str,
    rate: u64,
    secs: u64,
    sent: &Sent,
    ready: &AtomicBool,
) -> (u64, f64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", linger_ms())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    warm_up(&producer, topic);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the probe never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = rate * secs;
    let started = Instant::now();
    let mut n = 0u64;
    while n < total {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due.min(total) {
            let minute = n / 1_000_000;
            let ts = format!("2026-03-01T{:02}:{:02}:00Z", 1 + minute / 60, minute % 60);
            if n.is_multiple_of(ALERT_EVERY) {
                let credential = format!("AKIAUNKNOWN{n:09}");
                let line = format!(
                    r#"{{"ts":"{ts}","kind":"access","credential":"{credential}","source_ip":"10.0.{}.{}","endpoint":"s3:GetObject"}}"#,
                    n % 200,
                    n % 250
                );
                sent.lock()
                    .expect("sent")
                    .insert(credential, Instant::now());
                send(&producer, topic, &line);
            } else {
                let line = format!(
                    r#"{{"ts":"{ts}","kind":"access","credential":"AKIAKNOWN{:011}","source_ip":"10.0.{}.{}","endpoint":"s3:GetObject"}}"#,
                    n % KNOWN as u64,
                    n % 200,
                    n % 250
                );
                send(&producer, topic, &line);
            }
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let achieved = n as f64 / started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(60)).expect("flush");
    (n, achieved)
}

/// [`produce`] on its own thread.
fn spawn_producer(
    brokers: &str,
    topic: &str,
    rate: u64,
    secs: u64,
    sent: &Sent,
    ready: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, f64)> {
    let (brokers, topic, sent, ready) = (
        brokers.to_owned(),
        topic.to_owned(),
        Arc::clone(sent),
        Arc::clone(ready),
    );
    std::thread::spawn(move || produce(&brokers, &topic, rate, secs, &sent, &ready))
}

/// Records the latency of each timed alert.
struct Timing {
    ready: Arc<AtomicBool>,
    sent: Sent,
    latency: Arc<Mutex<Histogram<u64>>>,
    seen: Arc<AtomicU64>,
}

impl AlertSink for Timing {
    fn emit(&mut self, alert: &Alert) -> std::io::Result<()> {
        if alert.credential == "AKIAPROBE" {
            self.ready.store(true, Ordering::Relaxed);
        }
        if alert.activity == Activity::Create && alert.rule == "unknown-credential" {
            let now = Instant::now();
            if let Some(at) = self.sent.lock().expect("sent").remove(&alert.credential) {
                let micros = now.duration_since(at).as_micros() as u64;
                let _ = self.latency.lock().expect("latency").record(micros.max(1));
                self.seen.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Figures {
    offered: f64,
    latency: Histogram<u64>,
    timed: u64,
    expected: u64,
}

fn credwatch_phase(brokers: &str, rate: u64, secs: u64) -> Figures {
    let input = format!("bench-latency-in-{}", stamp());
    let alerts = format!("bench-latency-alerts-{}", stamp());
    let kafka = kafka_config(brokers, &input, Some(alerts.clone()));
    credwatch::send::ensure_topic(&kafka, &input, 1).expect("topic");
    credwatch::send::ensure_topic(&kafka, &alerts, 1).expect("topic");
    let config = Config::parse(
        "bench",
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n",
    )
    .expect("config");
    let rules = RuleSet::builtin(&config).expect("rules");
    let mut engine = Engine::new(config, rules);
    let sent: Sent = Arc::default();
    let latency = Arc::new(Mutex::new(histogram()));
    let seen = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    let mut sink = Fanout::default();
    sink.push(Box::new(Timing {
        ready: Arc::clone(&ready),
        sent: Arc::clone(&sent),
        latency: Arc::clone(&latency),
        seen: Arc::clone(&seen),
    }));
    sink.push(Box::new(KafkaAlertSink::new(
        Producer::connect(&kafka).expect("alert producer"),
        alerts,
    )));
    let shutdown = Arc::new(AtomicBool::new(false));
    let expected = (rate * secs).div_ceil(ALERT_EVERY);
    let producer = spawn_producer(brokers, &input, rate, secs, &sent, &ready);
    let stopper = {
        let (seen, shutdown) = (Arc::clone(&seen), Arc::clone(&shutdown));
        let deadline = Instant::now() + Duration::from_secs(secs * 4 + 60);
        std::thread::spawn(move || {
            while seen.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            shutdown.store(true, Ordering::Relaxed);
        })
    };
    let options = RunOptions {
        decode_thread: decode_thread(),
        ..RunOptions::default()
    };
    run(
        &mut engine,
        &kafka,
        &mut sink,
        None,
        None,
        &options,
        &shutdown,
    )
    .expect("run");
    let (_, offered) = producer.join().expect("producer");
    stopper.join().expect("stopper");
    let latency = latency.lock().expect("latency").clone();
    Figures {
        offered,
        timed: seen.load(Ordering::Relaxed),
        latency,
        expected,
    }
}

fn baseline_phase(brokers: &str, rate: u64, secs: u64) -> Figures {
    let input = format!("bench-latency-base-{}", stamp());
    let kafka = kafka_config(brokers, &input, None);
    credwatch::send::ensure_topic(&kafka, &input, 1).expect("topic");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            &consumer_properties()["fetch.wait.max.ms"],
        )
        .create()
        .expect("consumer");
    consumer.subscribe(&[&input]).expect("subscribe");
    let sent: Sent = Arc::default();
    let ready = Arc::new(AtomicBool::new(false));
    let producer = spawn_producer(brokers, &input, rate, secs, &sent, &ready);
    let expected = (rate * secs).div_ceil(ALERT_EVERY);
    let mut latency = histogram();
    let mut timed = 0;
    let deadline = Instant::now() + Duration::from_secs(secs * 4 + 60);
    let mut scratch = Vec::new();
    while timed < expected && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = Instant::now();
        let payload = message.payload().unwrap_or_default();
        if !ready.load(Ordering::Relaxed) && payload.windows(9).any(|w| w == b"AKIAPROBE") {
            ready.store(true, Ordering::Relaxed);
        }
        // The credential of a timed event, found the way a bare consumer would: no parse.
        if let Some(start) = payload.windows(11).position(|w| w == b"AKIAUNKNOWN") {
            scratch.clear();
            scratch.extend_from_slice(&payload[start..start + 20]);
            let credential = String::from_utf8_lossy(&scratch).into_owned();
            if let Some(at) = sent.lock().expect("sent").remove(&credential) {
                let _ = latency.record((now.duration_since(at).as_micros() as u64).max(1));
                timed += 1;
            }
        }
    }
    let (_, offered) = producer.join().expect("producer");
    Figures {
        offered,
        latency,
        timed,
        expected,
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn report(name: &str, figures: &Figures) {
    let h = &figures.latency;
    println!(
        "  {name:<26} offered {:>7.0} ev/s  timed {:>6}/{:<6}  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  max {:>8.2} ms",
        figures.offered,
        figures.timed,
        figures.expected,
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    );
}

fn main() {
    let Ok(brokers) = std::env::var("CREDWATCH_TEST_BROKERS") else {
        eprintln!("latency: set CREDWATCH_TEST_BROKERS (eval \"$(scripts/test-broker start)\")");
        return;
    };
    let rates: Vec<u64> = std::env::var("LATENCY_RATES")
        .unwrap_or_else(|_| "10000,50000,100000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let secs: u64 = std::env::var("LATENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!(
        "latency: broker {brokers}, {secs} s per rate, 1 of every {ALERT_EVERY} events timed, fetch.wait.max.ms = {}, producer linger.ms = {}, credwatch --threads {}",
        consumer_properties()["fetch.wait.max.ms"],
        linger_ms(),
        if decode_thread() { 2 } else { 1 }
    );
    for rate in rates {
        println!("rate {rate} events/s:");
        let base = baseline_phase(&brokers, rate, secs);
        report("bare consumer (receipt)", &base);
        let credwatch = credwatch_phase(&brokers, rate, secs);
        report("credwatch (alert out)", &credwatch);
        let ratio = |q: f64| {
            credwatch.latency.value_at_quantile(q) as f64
                / base.latency.value_at_quantile(q).max(1) as f64
        };
        println!(
            "  credwatch / bare consumer: p50 {:.2}x, p99 {:.2}x, p99.9 {:.2}x",
            ratio(0.5),
            ratio(0.99),
            ratio(0.999)
        );
    }
}
