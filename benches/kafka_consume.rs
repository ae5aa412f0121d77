//! Consumption from Kafka, on the same topic in the same run:
//! - a bare BaseConsumer and a bare StreamConsumer that do no work: the measurement behind
//!   `credwatch run`'s choice of consumer (see src/source/kafka.rs), and the limit;
//! - `credwatch::run::run` (the code of `credwatch run`: decode, engine with the built-in
//!   rules, alerts to a sink) over the same messages, with decoding on the loop's thread
//!   (`--threads 1`) and on a second one (`--threads 2`): its ratio to the bare BaseConsumer
//!   is what issue 7 tracks (goal: at least 0.8).
//!
//! Needs a broker: `eval "$(scripts/test-broker start)"` then
//! `cargo bench --bench kafka_consume` (it reads CREDWATCH_TEST_BROKERS). It produces 200,000
//! native events once, then consumes them all three times with each (fresh group each time,
//! alternating), timing from the first message to the last, and reports messages per second
//! and the ratios of the medians.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

use credwatch::alerts::Producer;
use credwatch::config::KafkaConfig;
use credwatch::time::Period;

const MESSAGES: u64 = 200_000;

fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    config
}

fn base(brokers: &str, topic: &str, group: &str) -> Duration {
    let consumer: BaseConsumer = consumer_config(brokers, group).create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let mut started = None;
    while seen < MESSAGES {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            started.get_or_insert_with(Instant::now);
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    assert!(bytes > 0);
    started.map_or(Duration::ZERO, |s| s.elapsed())
}

fn stream(brokers: &str, topic: &str, group: &str) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let consumer: StreamConsumer = consumer_config(brokers, group).create().expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut seen = 0u64;
        let mut bytes = 0usize;
        let mut started = None;
        while seen < MESSAGES {
            if let Ok(message) = consumer.recv().await {
                started.get_or_insert_with(Instant::now);
                bytes += message.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
        }
        assert!(bytes > 0);
        started.map_or(Duration::ZERO, |s| s.elapsed())
    })
}

fn credwatch_run(brokers: &str, topic: &str, group: &str, decode_thread: bool) -> Duration {
    use credwatch::config::{Config, KafkaInput};
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        group_id: group.to_owned(),
        inputs: vec![KafkaInput {
            topic: topic.to_owned(),
            format: credwatch::decode::Format::Native,
        }],
        alerts_topic: None,
        dead_letter_topic: None,
        commit_interval: Period::from_secs(1),
        allowed_lateness: Period::ZERO,
        properties: Default::default(),
    };
    let config = Config::parse(
        "bench",
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n",
    )
    .expect("config");
    let rules = credwatch::rules::RuleSet::builtin(&config).expect("rules");
    let mut engine = credwatch::engine::Engine::new(config, rules);
    let options = credwatch::run::RunOptions {
        stop_after_messages: Some(MESSAGES),
        decode_thread,
        ..Default::default()
    };
    let mut sink = credwatch::alerts::Fanout::default();
    let summary = credwatch::run::run(
        &mut engine,
        &kafka,
        &mut sink,
        None,
        None,
        &options,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .expect("run");
    assert_eq!(summary.messages, MESSAGES);
    assert_eq!(summary.engine.events, MESSAGES);
    summary.consuming
}

fn main() {
    let Ok(brokers) = std::env::var("CREDWATCH_TEST_BROKERS") else {
        eprintln!(
            "kafka_consume: set CREDWATCH_TEST_BROKERS (eval \"$(scripts/test-broker start)\")"
        );
        return;
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("bench-consume-{stamp}");
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        group_id: "bench".into(),
        inputs: Vec::new(),
        alerts_topic: None,
        dead_letter_topic: None,
        commit_interval: Period::from_secs(1),
        allowed_lateness: Period::ZERO,
        properties: Default::default(),
    };
    credwatch::send::ensure_topic(&kafka, &topic, 1).expect("topic");
    let producer = Producer::connect(&kafka).expect("producer");
    for i in 0..MESSAGES {
        let line = format!(
            r#"{{"ts":"2026-03-01T00:00:00Z","kind":"access","credential":"AKIA{:016}","source_ip":"10.0.{}.{}","endpoint":"s3:GetObject"}}"#,
            i % 5000,
            i % 250,
            i % 200
        );
        producer
            .send(
                &topic,
                Some(format!("{}", i % 5000).as_bytes()),
                line.as_bytes(),
                None,
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    println!("kafka_consume: {MESSAGES} messages on {topic} at {brokers}");
    let (mut base_rates, mut stream_rates, mut run_rates, mut run2_rates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let b = base(&brokers, &topic, &format!("bench-base-{stamp}-{round}"));
        let s = stream(&brokers, &topic, &format!("bench-stream-{stamp}-{round}"));
        let r = credwatch_run(
            &brokers,
            &topic,
            &format!("bench-run-{stamp}-{round}"),
            false,
        );
        let r2 = credwatch_run(
            &brokers,
            &topic,
            &format!("bench-run2-{stamp}-{round}"),
            true,
        );
        let rate = |d: Duration| MESSAGES as f64 / d.as_secs_f64();
        let (b_rate, s_rate, r_rate, r2_rate) = (rate(b), rate(s), rate(r), rate(r2));
        println!("round {round}: BaseConsumer {b_rate:>10.0} msg/s   StreamConsumer {s_rate:>10.0} msg/s   credwatch run --threads 1 {r_rate:>10.0} msg/s   --threads 2 {r2_rate:>10.0} msg/s");
        base_rates.push(b_rate);
        stream_rates.push(s_rate);
        run_rates.push(r_rate);
        run2_rates.push(r2_rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (b, s, r, r2) = (
        median(&mut base_rates),
        median(&mut stream_rates),
        median(&mut run_rates),
        median(&mut run2_rates),
    );
    println!(
        "median: BaseConsumer {b:.0} msg/s, StreamConsumer {s:.0} msg/s (BaseConsumer / StreamConsumer {:.2}), credwatch run --threads 1 {r:.0} msg/s (/ BaseConsumer {:.2}), --threads 2 {r2:.0} msg/s (/ BaseConsumer {:.2})",
        b / s,
        r / b,
        r2 / b
    );
}
