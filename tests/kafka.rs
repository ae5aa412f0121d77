//! `credwatch run` and `credwatch send` against a real Kafka-compatible broker (tansu on
//! loopback, started by scripts/test-broker, address in CREDWATCH_TEST_BROKERS). Without it
//! these tests print why they skip; `scripts/test` always provides one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

use credwatch::checkpoint::PartitionCheckpoint;
use credwatch::state::{StateStore, StoreSnapshot};

use crate::util::{credwatch, repo, stderr, success};

fn brokers() -> Option<String> {
    match std::env::var("CREDWATCH_TEST_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ => {
            println!("skipped: CREDWATCH_TEST_BROKERS is not set (scripts/test starts a broker and sets it)");
            None
        }
    }
}

/// A name no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// A message read back: key, value and headers.
#[derive(Debug, Clone)]
struct Read {
    key: Option<String>,
    value: String,
    headers: BTreeMap<String, String>,
}

/// Everything in `topic` up to its current end.
fn read_topic(brokers: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in &partitions {
        list.add_partition_offset(topic, *partition, Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(*partition, high);
    }
    consumer.assign(&list).unwrap();
    // Read to the high watermarks, then on until a second passes without a message: a
    // broker may report a watermark below the end of the last batch.
    let mut next: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_message = Instant::now();
    while Instant::now() < deadline {
        let behind = next.iter().any(|(p, n)| *n < ends[p]);
        if !behind && last_message.elapsed() > Duration::from_secs(1) {
            break;
        }
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            last_message = Instant::now();
            next.insert(message.partition(), message.offset() + 1);
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                headers,
            });
        }
    }
    out
}

/// The current end offset of partition 0 of `topic` (a cheap progress probe).
fn high_watermark(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("probe"))
        .create()
        .expect("probe");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .map_or(0, |(_, high)| high)
}

/// Starts `credwatch run --config config` in the background and waits until its first alert
/// is on `alerts` (at most a minute).
fn spawn_until_first_alert(
    brokers: &str,
    config: &Path,
    alerts: &str,
    stderr: Stdio,
) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while high_watermark(brokers, alerts) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A config for `credwatch run`: the zones of `base` plus a [kafka] section.
fn run_config(
    dir: &Path,
    base: &str,
    brokers: &str,
    input: &str,
    alerts: &str,
    dead: &str,
) -> std::path::PathBuf {
    let base = std::fs::read_to_string(base).unwrap();
    let text = format!(
        "{base}\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{}\"\nalerts_topic = \"{alerts}\"\ndead_letter_topic = \"{dead}\"\ncommit_interval = \"200ms\"\n\n[[kafka.inputs]]\ntopic = \"{input}\"\nformat = \"native\"\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
        unique("group")
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `replay --output json` of the same input: the alerts an uninterrupted run must produce.
fn expected_alerts(config: &Path, input: &Path) -> Vec<serde_json::Value> {
    let out = success(
        &credwatch()
            .args(["replay", "--output", "json", "--config"])
            .arg(config)
            .arg(input)
            .output()
            .unwrap(),
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn creates(alerts: &[serde_json::Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter(|a| a["activity_id"] == 1)
        .map(|a| serde_json::to_string(a).unwrap())
        .collect()
}

/// Fresh input, alerts and dead-letter topics, the scenario file sent to the input, and a
/// `run` config over them with the scenario's zones.
struct Setup {
    input: String,
    alerts: String,
    dead: String,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn scenario_on_kafka(brokers: &str) -> Setup {
    let Topics {
        input,
        alerts,
        dead,
        dir,
        config,
        ..
    } = topics(brokers, 1);
    let sent = credwatch()
        .args(["send", "--brokers", brokers, "--topic", &input])
        .arg(repo("tests/data/scenario.jsonl"))
        .output()
        .unwrap();
    success(&sent);
    assert!(stderr(&sent).contains("29 records"), "{}", stderr(&sent));
    Setup {
        input,
        alerts,
        dead,
        config,
        _dir: dir,
    }
}

/// With decoding on a second thread (`--threads 2`) and without (`--threads 1`, the default).
#[test]
fn run_reads_a_scenario_from_kafka_and_produces_exactly_the_expected_alerts() {
    let Some(brokers) = brokers() else { return };
    for threads in ["1", "2"] {
        scenario_through_run(&brokers, threads);
    }
}

fn scenario_through_run(brokers: &str, threads: &str) {
    let brokers = brokers.to_owned();
    let Setup {
        input,
        alerts,
        dead,
        config,
        _dir,
    } = scenario_on_kafka(&brokers);
    let scenario = repo("tests/data/scenario.jsonl");
    let output = credwatch()
        .args([
            "run",
            "--exit-when-idle",
            "3s",
            "--threads",
            threads,
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    success(&output);

    let produced: Vec<Read> = read_topic(&brokers, &alerts);
    let got: Vec<serde_json::Value> = produced
        .iter()
        .map(|r| serde_json::from_str(&r.value).unwrap())
        .collect();
    for (read, alert) in produced.iter().zip(&got) {
        assert_eq!(
            read.key.as_deref(),
            alert["credential"].as_str(),
            "alerts are keyed by credential"
        );
    }
    let expected = expected_alerts(&repo("tests/data/scenario.toml"), &scenario);
    assert_eq!(creates(&got), creates(&expected), "--threads {threads}");
    assert!(creates(&got).len() >= 10);

    let letters = read_topic(&brokers, &dead);
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0].value, "this line is not JSON");
    assert!(letters[0].headers["credwatch-reason"].starts_with("invalid native event"));
    assert_eq!(letters[0].headers["credwatch-source-topic"], input);
    assert_eq!(letters[0].headers["credwatch-source-partition"], "0");
    assert_eq!(letters[0].headers["credwatch-source-offset"], "16");
}

#[test]
fn an_oversized_record_goes_to_the_dead_letter_topic_and_the_run_goes_on() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let Some(brokers) = brokers() else { return };
    let (input, alerts, dead) = (unique("events"), unique("alerts"), unique("dead"));
    create_topics(&brokers, &[(&input, 1), (&alerts, 1), (&dead, 1)]);
    // 1.5 MiB in one record, over credwatch's 1 MiB record limit, between two good events.
    let event = |credential: &str| {
        format!(
            r#"{{"ts":"2026-03-02T10:00:00Z","kind":"access","credential":"{credential}","source_ip":"10.0.1.5"}}"#
        )
    };
    let oversized = format!(
        r#"{{"ts":"2026-03-02T10:00:01Z","kind":"access","credential":"AKIAHUGE","user_agent":"{}"}}"#,
        "x".repeat(3 << 19)
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "4000000")
        .create()
        .expect("producer");
    for payload in [event("AKIABEFORE"), oversized.clone(), event("AKIAAFTER")] {
        producer
            .send(BaseRecord::<(), str>::to(&input).payload(&payload))
            .map_err(|(error, _)| error)
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("produced");

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.toml");
    std::fs::write(
        &base,
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n",
    )
    .unwrap();
    let config = run_config(
        dir.path(),
        base.to_str().unwrap(),
        &brokers,
        &input,
        &alerts,
        &dead,
    );
    let output = credwatch()
        .args(["run", "--exit-when-idle", "3s", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let summary = success(&output);
    let summary = format!("{summary}{}", stderr(&output));
    assert!(
        summary.contains("3 messages") && summary.contains("2 events, 1 malformed"),
        "{summary}"
    );

    let letters = read_topic(&brokers, &dead);
    assert_eq!(
        letters.len(),
        1,
        "{:?}",
        letters.iter().map(|l| &l.headers).collect::<Vec<_>>()
    );
    let letter = &letters[0];
    let reason = &letter.headers["credwatch-reason"];
    assert!(
        reason.starts_with(&format!(
            "record of {} bytes exceeds the 1048576-byte limit",
            oversized.len()
        )),
        "{reason}"
    );
    assert!(reason.contains("keeps its first 524288 bytes"), "{reason}");
    assert_eq!(letter.value.len(), credwatch::run::MAX_DEAD_LETTER_BYTES);
    assert!(oversized.starts_with(&letter.value));
    assert_eq!(letter.headers["credwatch-source-offset"], "1");
}

/// The smallest synthetic day (100 credentials, about 300k events) on a fresh input topic,
/// the alerts a replay of it raises, and a `run` config over it.
struct DemoStream {
    dir: tempfile::TempDir,
    input: String,
    events: std::path::PathBuf,
    demo_config: std::path::PathBuf,
    expected: BTreeSet<String>,
    alerts: String,
    config: std::path::PathBuf,
}

fn demo_stream(brokers: &str) -> DemoStream {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("day.jsonl");
    let demo_config = dir.path().join("demo.toml");
    std::fs::write(&demo_config, credwatch::demo::DEMO_CONFIG).unwrap();
    success(
        &credwatch()
            .args(["demo", "--credentials", "100", "--write-events"])
            .arg(&events)
            .output()
            .unwrap(),
    );
    let expected = creates(&expected_alerts(&demo_config, &events));
    assert!(expected.len() >= 10, "{}", expected.len());

    let (input, alerts, dead) = (unique("events"), unique("alerts"), unique("dead"));
    create_topics(brokers, &[(&input, 1), (&alerts, 1), (&dead, 1)]);
    success(
        &credwatch()
            .args(["send", "--brokers", brokers, "--topic", &input])
            .arg(&events)
            .output()
            .unwrap(),
    );
    let config = run_config(
        dir.path(),
        demo_config.to_str().unwrap(),
        brokers,
        &input,
        &alerts,
        &dead,
    );
    DemoStream {
        dir,
        input,
        events,
        demo_config,
        expected,
        alerts,
        config,
    }
}

/// Every alert on the topic; asserts that alerts repeated under one id are identical.
fn distinct_alerts(brokers: &str, topic: &str) -> (Vec<serde_json::Value>, usize) {
    let produced: Vec<serde_json::Value> = read_topic(brokers, topic)
        .iter()
        .map(|r| serde_json::from_str(&r.value).unwrap())
        .collect();
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for alert in &produced {
        let body = serde_json::to_string(alert).unwrap();
        let id = alert["id"].as_str().unwrap().to_owned();
        if let Some(previous) = by_id.insert(id.clone(), body.clone()) {
            assert_eq!(previous, body, "repeat of {id} differs");
        }
    }
    (produced, by_id.len())
}

/// Snapshots merged into one store, as one share: equal content compares equal whatever the
/// order names were interned in.
fn canonical(snapshots: impl IntoIterator<Item = StoreSnapshot>) -> StoreSnapshot {
    let store = StateStore::new();
    for snapshot in snapshots {
        store.absorb(snapshot, 0).unwrap();
    }
    store.shares(&[0]).remove(&0).unwrap()
}

/// The "(N re-read to rebuild state)" count of a run summary.
fn rebuilt(summary: &str) -> u64 {
    summary
        .split(" re-read to rebuild state")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rebuild count in: {summary}"))
}

#[test]
fn a_run_killed_after_a_checkpoint_restores_it_and_resumes_without_rebuilding() {
    let Some(brokers) = brokers() else { return };
    let stream = demo_stream(&brokers);
    let checkpoint = stream.dir.path().join("checkpoint");
    let run = |extra: &[&str]| {
        let mut command = credwatch();
        command
            .args(["run", "--checkpoint"])
            .arg(&checkpoint)
            .args(["--checkpoint-interval", "100ms", "--config"])
            .arg(&stream.config)
            .args(extra);
        command
    };

    // First run: killed without warning once it has alerted and checkpointed.
    let mut child = run(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (high_watermark(&brokers, &stream.alerts) == 0
        || !PartitionCheckpoint::path(&checkpoint, &stream.input, 0).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_restart = read_topic(&brokers, &stream.alerts).len();
    assert!(before_restart > 0, "nothing was alerted before the kill");

    // Second run: restores the checkpoint and resumes at its offsets: nothing re-read.
    let second = run(&["--exit-when-idle", "3s"]).output().unwrap();
    success(&second);
    let summary = stderr(&second);
    assert!(
        summary.contains("credentials from the checkpoints of 1 partition;"),
        "{summary}"
    );
    assert_eq!(rebuilt(&summary), 0, "{summary}");
    let (produced, distinct) = distinct_alerts(&brokers, &stream.alerts);
    assert_eq!(
        creates(&produced),
        stream.expected,
        "every expected alert, and no other, is on the topic"
    );

    // The state at the end is the state of a replay of the same day.
    let replayed = stream.dir.path().join("replayed");
    success(
        &credwatch()
            .args(["replay", "--output", "none", "--config"])
            .arg(&stream.demo_config)
            .arg("--checkpoint")
            .arg(&replayed)
            .arg(&stream.events)
            .output()
            .unwrap(),
    );
    let replayed = credwatch::checkpoint::Checkpoint::read(&replayed)
        .unwrap()
        .expect("a checkpoint");
    let partitions = PartitionCheckpoint::read_all(&checkpoint).unwrap();
    assert_eq!(partitions.len(), 1);
    assert_eq!(
        canonical(partitions.into_iter().map(|(p, _)| p.share.store)),
        canonical([replayed.engine.store]),
        "the partition's state is the replay's"
    );
    println!(
        "{before_restart} alerts before the kill, {} messages in all, {distinct} distinct alerts",
        produced.len()
    );
}

#[test]
fn sigkill_mid_stream_then_restart_loses_no_alert_and_repeats_are_identical() {
    let Some(brokers) = brokers() else { return };
    let DemoStream {
        expected,
        alerts,
        config,
        dir: _dir,
        ..
    } = demo_stream(&brokers);

    // First run: killed without warning as soon as its first alert is out. The stream is
    // time-ordered and that alert comes early (a key used six weeks before the day).
    let mut child = spawn_until_first_alert(&brokers, &config, &alerts, Stdio::null());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before_restart = read_topic(&brokers, &alerts).len();
    assert!(
        before_restart > 0,
        "the first run produced nothing before the kill"
    );

    // Second run: rebuilds state from the input, resumes emitting at the committed offsets,
    // and stops when the input is drained.
    let second = credwatch()
        .args(["run", "--exit-when-idle", "3s", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    success(&second);
    let summary = stderr(&second);
    let rebuilt = rebuilt(&summary);
    assert!(rebuilt > 0, "the kill came before any commit: {summary}");
    let (produced, distinct) = distinct_alerts(&brokers, &alerts);
    assert_eq!(
        creates(&produced),
        expected,
        "every expected alert, and no other, is on the topic"
    );
    println!(
        "{rebuilt} messages rebuilt after the restart; {} alerts before the kill, {} messages in all, {distinct} distinct alerts",
        before_restart,
        produced.len(),
    );
}

#[test]
fn run_without_a_kafka_section_is_a_clear_error() {
    let output = credwatch()
        .args(["run", "--config"])
        .arg(repo("tests/data/scenario.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("has no [kafka] section"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn demo_through_kafka_scores_like_the_in_memory_demo() {
    let Some(brokers) = brokers() else { return };
    let table = |output: &str| -> Vec<String> {
        output
            .lines()
            .skip_while(|l| !l.starts_with("injected scenario"))
            .map(|l| l.to_owned())
            .collect()
    };
    let in_memory = success(
        &credwatch()
            .args(["demo", "--credentials", "100"])
            .output()
            .unwrap(),
    );
    let output = credwatch()
        .args(["demo", "--credentials", "100", "--kafka", &brokers])
        .output()
        .unwrap();
    let through_kafka = success(&output);
    assert!(
        through_kafka.contains("through Kafka at"),
        "{through_kafka}"
    );
    assert!(through_kafka.contains("caught 12 of 12"), "{through_kafka}");
    assert_eq!(table(&in_memory), table(&through_kafka));
}

#[test]
fn sigterm_flushes_commits_and_exits_zero() {
    let Some(brokers) = brokers() else { return };
    let Setup {
        alerts,
        config,
        _dir,
        ..
    } = scenario_on_kafka(&brokers);

    let child = spawn_until_first_alert(&brokers, &config, &alerts, Stdio::piped());
    // The 29 records take milliseconds once the first alert is out; leave time for a commit.
    std::thread::sleep(Duration::from_secs(2));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("credwatch run: 29 messages"));

    // Everything was committed: a second run rebuilds state from the whole partition at
    // assignment and emits nothing new.
    let before = read_topic(&brokers, &alerts).len();
    let second = credwatch()
        .args(["run", "--exit-when-idle", "3s", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    success(&second);
    assert!(
        stderr(&second).contains("29 messages (29 re-read to rebuild state)"),
        "{}",
        stderr(&second)
    );
    assert_eq!(read_topic(&brokers, &alerts).len(), before);
}

#[test]
fn run_archives_each_message_once_across_restarts() {
    let Some(brokers) = brokers() else { return };
    let Setup { config, _dir, .. } = scenario_on_kafka(&brokers);
    let archive = _dir.path().join("archive");
    let count = || {
        let out = success(
            &credwatch()
                .args(["query", "--format", "csv", "--archive"])
                .arg(&archive)
                .arg("SELECT count(*) AS n FROM events")
                .output()
                .unwrap(),
        );
        out.lines().nth(1).unwrap().parse::<usize>().unwrap()
    };
    for _ in 0..2 {
        // The second run re-reads the topic only to rebuild state: nothing new is archived.
        let output = credwatch()
            .args(["run", "--exit-when-idle", "3s", "--config"])
            .arg(&config)
            .arg("--archive")
            .arg(&archive)
            .output()
            .unwrap();
        success(&output);
        assert!(stderr(&output).contains("archive "), "{}", stderr(&output));
        assert_eq!(count(), crate::archive::valid_scenario_events());
    }
    let alerts = success(
        &credwatch()
            .args(["query", "--format", "csv", "--archive"])
            .arg(&archive)
            .arg("SELECT count(*) AS n FROM alerts WHERE activity = 'create'")
            .output()
            .unwrap(),
    );
    let expected = expected_alerts(
        &repo("tests/data/scenario.toml"),
        &repo("tests/data/scenario.jsonl"),
    );
    assert_eq!(
        alerts.lines().nth(1).unwrap().parse::<usize>().unwrap(),
        creates(&expected).len()
    );
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    credwatch::api::resident_bytes(Some(pid)).unwrap_or(0) / 1024
}

/// The issue's acceptance test for backpressure: `run` with revocations on while nobody
/// listens at the webhook for a minute (CREDWATCH_OUTAGE_SECS overrides). Meanwhile the
/// revocation queue stays at its bound, consumption pauses, memory stays flat; after the
/// receiver comes up, every revocation decided is delivered, exactly once per key.
#[test]
fn with_the_webhook_down_for_a_minute_consumption_pauses_and_every_revocation_arrives_after() {
    use credwatch::respond::receiver::{Receiver, RunningReceiver};

    let Some(brokers) = brokers() else { return };
    const SECRET: &str = "whsec_backpressure_0123456789";
    const MAX_QUEUED: f64 = 20.0;
    let keys = 400;
    let outage = Duration::from_secs(
        std::env::var("CREDWATCH_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let dir = tempfile::tempdir().unwrap();
    let (input, alerts, dead) = (unique("events"), unique("alerts"), unique("dead"));
    create_topics(&brokers, &[(&input, 1), (&alerts, 1), (&dead, 1)]);
    // Each prod key is issued, then used from the internet: one revocation per key.
    let mut lines = String::new();
    for i in 0..keys {
        lines.push_str(&format!(
            "{{\"ts\":\"2026-03-01T00:00:00Z\",\"kind\":\"issue\",\"credential\":\"AKIAOUTAGE{i:010}\",\"allowed_zones\":[\"prod\"]}}\n"
        ));
    }
    for i in 0..keys {
        let ts = credwatch::time::Timestamp::from_secs(1_772_323_260 + i as i64).to_rfc3339();
        lines.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"kind\":\"access\",\"credential\":\"AKIAOUTAGE{i:010}\",\"source_ip\":\"203.0.113.9\",\"endpoint\":\"s3:GetObject\"}}\n"
        ));
    }
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines).unwrap();
    success(
        &credwatch()
            .args(["send", "--brokers", &brokers, "--topic", &input])
            .arg(&events)
            .output()
            .unwrap(),
    );
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("zone-violation-revoke.toml"),
        "id = \"zone-violation-revoke\"\ntitle = \"Credential used outside its trust zones\"\ndescription = \"Revoke keys used outside their zones.\"\ndetector = \"zone_violation\"\nseverity = \"critical\"\naction = \"revoke\"\nsuppress = \"1h\"\n",
    )
    .unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // Nobody listens on the webhook's port until the outage ends.
    let (webhook_port, api_port) = (free_port(), free_port());
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("token"), "token-0123456789abcdef").unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{}\"\nalerts_topic = \"{alerts}\"\ndead_letter_topic = \"{dead}\"\ncommit_interval = \"200ms\"\n\n[[kafka.inputs]]\ntopic = \"{input}\"\nformat = \"native\"\n\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n[respond.webhook]\nurl = \"http://127.0.0.1:{webhook_port}/revoke\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\ntimeout = \"1s\"\nbackoff = \"50ms\"\nmax_backoff = \"500ms\"\nmax_queued = {MAX_QUEUED}\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken_file = \"token\"\n",
            unique("group")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Drained meanwhile: a full pipe would block the process.
    let mut pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
        text
    });
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    let sample = || crate::api::metrics(&client, &base);
    let value = |m: &BTreeMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0);

    // Wait for the first pause, then watch through the outage.
    let deadline = Instant::now() + Duration::from_secs(60);
    let paused_at = loop {
        if let Ok(response) = client.get(format!("{base}/metrics")).send() {
            if response.status().is_success() {
                let m = sample();
                if value(&m, "credwatch_consumption_paused") == 1.0 {
                    break m;
                }
            }
        }
        assert!(Instant::now() < deadline, "consumption never paused");
        std::thread::sleep(Duration::from_millis(100));
    };
    let messages_at_pause = value(&paused_at, "credwatch_messages_total");
    let outage_started = Instant::now();
    let (mut max_queued, mut rss_first, mut rss_max) = (0.0f64, 0, 0);
    let mut last = paused_at;
    while outage_started.elapsed() < outage {
        std::thread::sleep(Duration::from_millis(500));
        last = sample();
        max_queued = max_queued.max(value(&last, "credwatch_revocations_queued"));
        let rss = rss_kib(pid);
        if rss_first == 0 {
            rss_first = rss;
        }
        rss_max = rss_max.max(rss);
    }
    println!(
        "outage {}s: {} of {} messages consumed when paused, {} at the end; queue at most {max_queued} (bound {MAX_QUEUED}); RSS {rss_first} KiB at the start, at most {rss_max} KiB",
        outage.as_secs(),
        messages_at_pause,
        2 * keys,
        value(&last, "credwatch_messages_total"),
    );
    // One message holds one record here, raising at most one revocation: the queue can
    // pass its bound by at most that one before consumption pauses.
    assert!(max_queued <= MAX_QUEUED + 1.0, "queue grew to {max_queued}");
    assert_eq!(value(&last, "credwatch_consumption_paused"), 1.0);
    assert!(
        value(&last, "credwatch_messages_total") <= messages_at_pause + 1.0,
        "consumption went on during the outage"
    );
    assert!(value(&last, "credwatch_messages_total") < (2 * keys) as f64);
    assert!(
        rss_max <= rss_first + 16 * 1024,
        "resident memory grew from {rss_first} KiB to {rss_max} KiB while paused"
    );
    assert_eq!(
        value(&last, "credwatch_revocations_total{outcome=\"delivered\"}"),
        0.0
    );

    // The receiver comes back: everything decided is delivered, consumption finishes.
    let listener = std::net::TcpListener::bind(("127.0.0.1", webhook_port)).unwrap();
    let running = RunningReceiver::serve(listener, Receiver::new(SECRET.as_bytes(), 300)).unwrap();
    let back = Instant::now();
    let done = loop {
        let m = sample();
        let finished = running.receiver.revoked().len() == keys
            && value(&m, "credwatch_messages_total") == (2 * keys) as f64;
        if finished || back.elapsed() > Duration::from_secs(60) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "after the outage: {} revocations delivered and the input consumed in {:.1}s",
        running.receiver.revoked().len(),
        back.elapsed().as_secs_f64()
    );
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let stderr_text = stderr_reader.join().unwrap();
    assert!(exit.success(), "{stderr_text}");

    let revoked: BTreeSet<String> = running.receiver.revoked().into_iter().collect();
    let decided: BTreeSet<String> = read_topic(&brokers, &alerts)
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.value).unwrap())
        .filter(|a| a["activity_id"] == 1 && a["rule"] == "zone-violation-revoke")
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        decided.len(),
        keys,
        "one revocation alert per key\n{stderr_text}"
    );
    assert_eq!(revoked, decided, "every decided revocation was delivered");
    let log = running.receiver.log();
    assert_eq!(log.len(), keys, "one request per revocation: {}", log.len());
    assert!(log.iter().all(|r| r.status == 200));
    assert_eq!(value(&done, "credwatch_messages_total"), (2 * keys) as f64);
    assert!(value(&done, "credwatch_backpressure_pauses_total") >= 1.0);
    assert!(
        stderr_text.contains(&format!("revocations: {keys} decided, {keys} delivered")),
        "{stderr_text}"
    );
    let outbox_left = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(outbox_left, 0, "delivered revocations leave the outbox");
}

/// Eager rebalances revoke every partition and assign them again. A partition this instance
/// had processed, given back, resumes where its state stops instead of being applied twice
/// from its beginning: across another member joining and leaving, the first member processes
/// each message exactly once and raises exactly the alerts of an uninterrupted run.
/// Fresh input (with `partitions` partitions), alerts and dead-letter topics, and a `run`
/// config over them with the scenario's zones.
struct Topics {
    input: String,
    alerts: String,
    dead: String,
    dir: tempfile::TempDir,
    base: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn topics(brokers: &str, partitions: i32) -> Topics {
    let (input, alerts, dead) = (unique("events"), unique("alerts"), unique("dead"));
    create_topics(brokers, &[(&input, partitions), (&alerts, 1), (&dead, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let base = repo("tests/data/scenario.toml");
    let config = run_config(
        dir.path(),
        base.to_str().unwrap(),
        brokers,
        &input,
        &alerts,
        &dead,
    );
    Topics {
        input,
        alerts,
        dead,
        dir,
        base,
        config,
    }
}

#[test]
fn a_partition_taken_away_and_given_back_resumes_where_the_state_stops() {
    let Some(brokers) = brokers() else { return };
    let Topics {
        input,
        alerts,
        dir: _dir,
        base,
        config,
        ..
    } = topics(&brokers, 2);
    let scenario = repo("tests/data/scenario.jsonl");
    success(
        &credwatch()
            .args(["send", "--brokers", &brokers, "--topic", &input])
            .arg(&scenario)
            .output()
            .unwrap(),
    );
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_credwatch"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "credwatch=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let drain = |child: &mut std::process::Child| {
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
            text
        })
    };
    let terminate = |child: &std::process::Child| {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let expected = creates(&expected_alerts(&base, &scenario));
    let produced = || {
        read_topic(&brokers, &alerts)
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.value).unwrap())
            .collect::<Vec<_>>()
    };

    let mut first = start();
    let first_log = drain(&mut first);
    let deadline = Instant::now() + Duration::from_secs(60);
    while creates(&produced()) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(creates(&produced()), expected, "the first member caught up");
    // A second member joins (every partition is revoked and split) and leaves again (every
    // partition is revoked and given back to the first).
    let mut second = start();
    let second_log = drain(&mut second);
    std::thread::sleep(Duration::from_secs(10));
    terminate(&second);
    assert!(second.wait().unwrap().success());
    let second_log = second_log.join().unwrap();
    std::thread::sleep(Duration::from_secs(10));
    terminate(&first);
    assert!(first.wait().unwrap().success());
    let first_log = first_log.join().unwrap();

    assert!(
        second_log.contains("Partition assigned"),
        "the second member took part: {second_log}"
    );
    assert!(
        first_log.matches("Partition revoked").count() >= 2,
        "the first member lost its partitions: {first_log}"
    );
    assert!(
        first_log.contains("resumed_at=Some"),
        "partitions came back to where the state stops: {first_log}"
    );
    assert!(
        first_log.contains("credwatch run: 29 messages (0 re-read to rebuild state)"),
        "each message processed once by the first member: {first_log}"
    );
    let got = produced();
    assert_eq!(creates(&got), expected);
}

/// A `credwatch run` whose stderr is collected as it comes, so a test can wait for a line.
struct Member {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(config: &Path, checkpoint: &Path) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
            .args(["run", "--checkpoint-interval", "200ms", "--checkpoint"])
            .arg(checkpoint)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "credwatch=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let shared = std::sync::Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut log = shared.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Member {
            child,
            log,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most a minute) until the log holds `text` `times` times.
    fn wait_for(&self, text: &str, times: usize) {
        crate::util::wait_for_text(|| self.log(), text, times);
    }

    /// SIGTERM, then the whole log once the process exited cleanly.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "{}", self.log());
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }
}

impl Drop for Member {
    /// A test that fails half-way leaves no member running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The "N messages" count of a run summary.
fn messages(summary: &str) -> u64 {
    summary
        .split("credwatch run: ")
        .nth(1)
        .and_then(|tail| tail.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no message count in: {summary}"))
}

#[test]
fn a_partition_moved_to_another_member_takes_its_state_along_through_the_shared_checkpoints() {
    state_moves_with_a_partition(None);
}

#[test]
fn with_cooperative_rebalancing_a_moved_partition_takes_its_state_along_too() {
    state_moves_with_a_partition(Some("cooperative-sticky"));
}

/// Two members share a checkpoint directory: the second joins, takes one of the two
/// partitions with its state from the first member's file, and leaves, the partition going
/// back with the state it checkpointed. `strategy` is librdkafka's
/// `partition.assignment.strategy` (default: range, an eager protocol).
fn state_moves_with_a_partition(strategy: Option<&str>) {
    let Some(brokers) = brokers() else { return };
    let Topics {
        input,
        alerts,
        dir,
        base,
        config,
        ..
    } = topics(&brokers, 2);
    if let Some(strategy) = strategy {
        // [kafka.properties] is the config's last table.
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\"partition.assignment.strategy\" = \"{strategy}\"\n"
        ));
        std::fs::write(&config, text).unwrap();
    }
    let checkpoint = dir.path().join("shared-checkpoints");

    // 40 prod credentials, issued and armed (8 uses over 16 minutes from their /24) in phase
    // 1; in phase 2 each is used from its own network and from the internet, in phase 3
    // from corp. What phases 2 and 3 raise depends on the baselines of phase 1: without
    // them the keys would be unknown, learning, or allowed nowhere.
    let at = |minutes: i64| {
        credwatch::time::Timestamp::from_secs(1_772_409_600 + minutes * 60).to_rfc3339()
    };
    let access = |credential: usize, minutes: i64, ip: String| {
        format!(
            r#"{{"ts":"{}","kind":"access","credential":"AKIAHANDOFF00000{credential:04}","principal":"svc-{credential}","source_ip":"{ip}","endpoint":"s3:GetObject","user_agent":"aws-cli/2.15.0"}}"#,
            at(minutes)
        )
    };
    let mut phases: [Vec<String>; 3] = Default::default();
    for credential in 0..40 {
        phases[0].push(format!(
            r#"{{"ts":"{}","kind":"issue","credential":"AKIAHANDOFF00000{credential:04}","principal":"iam-pipeline","owner":"svc-{credential}","allowed_zones":["prod"]}}"#,
            at(0)
        ));
        for step in 1..=8 {
            phases[0].push(access(credential, step * 2, format!("10.0.{credential}.5")));
        }
        phases[1].push(access(credential, 60, format!("10.0.{credential}.5")));
        phases[1].push(access(credential, 61, format!("203.0.113.{credential}")));
        phases[2].push(access(credential, 120, format!("192.168.1.{credential}")));
    }
    let files: Vec<std::path::PathBuf> = phases
        .iter()
        .enumerate()
        .map(|(index, lines)| {
            let path = dir.path().join(format!("phase-{index}.jsonl"));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            path
        })
        .collect();
    let send = |file: &Path| {
        success(
            &credwatch()
                .args(["send", "--brokers", &brokers, "--topic", &input])
                .arg(file)
                .output()
                .unwrap(),
        )
    };
    let expected_through = |phase: usize| {
        let all = dir.path().join(format!("through-{phase}.jsonl"));
        let text: String = phases[..=phase]
            .iter()
            .map(|lines| lines.join("\n") + "\n")
            .collect();
        std::fs::write(&all, text).unwrap();
        creates(&expected_alerts(&base, &all))
    };
    let produced = || {
        read_topic(&brokers, &alerts)
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.value).unwrap())
            .collect::<Vec<_>>()
    };
    let wait_for_alerts = |expected: &BTreeSet<String>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while creates(&produced()) != *expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(creates(&produced()), *expected);
    };
    // Phase 1: the first member owns both partitions and checkpoints each, up to the end
    // (offsets count messages: the two files' next offsets add up to all of phase 1).
    send(&files[0]);
    let first = Member::start(&config, &checkpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let offsets: Vec<i64> = (0..2)
            .map(|p| {
                PartitionCheckpoint::read(&checkpoint, &input, p)
                    .unwrap()
                    .map_or(0, |c| c.offset)
            })
            .collect();
        if offsets.iter().sum::<i64>() == phases[0].len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "phase 1 not checkpointed: {offsets:?} of {} messages",
            phases[0].len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let partitions = PartitionCheckpoint::read_all(&checkpoint).unwrap();
    let by_partition: Vec<usize> = partitions
        .iter()
        .map(|(p, _)| p.share.store.credentials.len())
        .collect();
    assert_eq!(by_partition.iter().sum::<usize>(), 40, "{by_partition:?}");
    assert!(
        by_partition.iter().all(|n| *n > 0),
        "both partitions hold keys: {by_partition:?}"
    );
    wait_for_alerts(&expected_through(0));

    // A second member joins: one partition moves to it, state and all.
    let second = Member::start(&config, &checkpoint);
    second.wait_for("State restored from the partition's checkpoint.", 1);
    first.wait_for("Partition released; its state went with it.", 1);

    // Phase 2 is split between the members.
    send(&files[1]);
    wait_for_alerts(&expected_through(1));

    // The second member leaves: its partition comes back with the state it checkpointed.
    let second_log = second.stop();
    first.wait_for("State restored from the partition's checkpoint.", 1);
    send(&files[2]);
    wait_for_alerts(&expected_through(2));
    let first_log = first.stop();

    let first_summary = first_log
        .lines()
        .filter(|l| l.starts_with("credwatch run:"))
        .collect::<String>();
    let second_summary = second_log
        .lines()
        .filter(|l| l.starts_with("credwatch run:"))
        .collect::<String>();
    assert_eq!(rebuilt(&first_log), 0, "{first_log}");
    assert_eq!(rebuilt(&second_log), 0, "{second_log}");
    assert_eq!(
        messages(&first_summary) + messages(&second_summary),
        phases.iter().map(Vec::len).sum::<usize>() as u64,
        "each message processed once, by one member: {first_summary} / {second_summary}"
    );
    assert!(
        by_partition.iter().any(|n| second_log.contains(&format!(
            "restored {n} credentials from the checkpoints of 1 partition;"
        ))),
        "the second member restored one partition's keys ({by_partition:?}): {second_log}"
    );
    assert!(
        first_log.contains("released 1 partition to other members"),
        "{first_log}"
    );
    // Its own shutdown revokes its two partitions; before that, an eager protocol revoked
    // both when the second member joined and one when it left, a cooperative one only the
    // partition that moved.
    let revoked = first_log.matches("Partition revoked.").count();
    if strategy.is_some() {
        assert_eq!(
            revoked, 3,
            "a cooperative rebalance revokes only what moves: {first_log}"
        );
    } else {
        assert!(
            revoked >= 5,
            "an eager rebalance revokes everything: {first_log}"
        );
    }
    assert!(
        first_log.contains("from the checkpoints of 1 partition;"),
        "took the partition back: {first_log}"
    );
    // The files left describe every credential once, with the last phase applied.
    let state = canonical(
        PartitionCheckpoint::read_all(&checkpoint)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.share.store),
    );
    assert_eq!(state.credentials.len(), 40);
    assert!(
        state.credentials.iter().all(|(_, s)| s.accesses == 11),
        "8 + 2 + 1 uses each"
    );
}
