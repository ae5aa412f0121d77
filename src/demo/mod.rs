//! Demo: the embedded default job. A synthetic organisation's day, with one injected misuse per
//! detector, run through the full pipeline (native JSON encode → decode → zones → state →
//! detect → alerts), then scored: each scenario caught or missed with its detection delay, and
//! the alerts raised on benign credentials.

mod generate;
mod scenarios;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

pub use generate::{generate, Generated};
pub use scenarios::Scenario;
pub use world::World;

use crate::alerts::{Activity, Alert, AlertSink};
use crate::config::Config;
use crate::decode::{Decoder, NativeDecoder};
use crate::engine::Engine;
use crate::engine::ExceptionCounts;
use crate::rules::{Exception, ExceptionSet, RuleSet};
use crate::time::{Period, Timestamp};

/// The demo's configuration: zones of the synthetic organisation.
pub const DEMO_CONFIG: &str = include_str!("config.toml");

/// The demo's exceptions: the Terraform CI bot's, and an expired one.
pub const DEMO_EXCEPTIONS: &str = include_str!("exceptions.toml");

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seed: u64,
    pub credentials: usize,
    /// Also write the generated events as native JSON lines here.
    pub write_events: Option<PathBuf>,
    /// Send the events through this Kafka cluster and detect on the consumer side.
    pub kafka: Option<String>,
}

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// Event time from the start of the misuse to the first alert of the expected detector.
    pub delay: Option<Period>,
    /// Rules that fired on the victim at or after the start.
    pub rules: BTreeSet<String>,
}

/// The demo's outcome.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// `in memory`, or `through Kafka at BROKERS`.
    pub transport: String,
    pub seed: u64,
    pub credentials: usize,
    pub events: u64,
    pub alerts: u64,
    pub elapsed: Duration,
    pub results: Vec<ScenarioResult>,
    pub benign_credentials: usize,
    /// Benign credentials with at least one alert.
    pub benign_alerted: BTreeSet<String>,
    /// Alerts on benign credentials per rule.
    pub benign_by_rule: BTreeMap<String, u64>,
    /// Each exception and what it did.
    pub exceptions: Vec<(Exception, ExceptionCounts)>,
    /// New alerts on the Terraform CI bot's key (its exception should keep this at zero).
    pub ci_bot_alerts: u64,
}

impl DemoReport {
    pub fn all_caught(&self) -> bool {
        self.results.iter().all(|r| r.delay.is_some())
    }

    pub fn benign_alert_rate(&self) -> f64 {
        if self.benign_credentials == 0 {
            0.0
        } else {
            self.benign_alerted.len() as f64 / self.benign_credentials as f64
        }
    }

    /// The summary table.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(
            text,
            "credwatch demo: seed {}, {} credentials, one day ({}), {} events {}, {} alerts, {:.2}s ({:.0} events/s)\n",
            self.seed,
            self.credentials,
            &world::DAY[..10],
            self.events,
            self.transport,
            self.alerts,
            secs,
            self.events as f64 / secs.max(1e-9)
        );
        let _ = writeln!(
            text,
            "{:<38} {:<18} {:<26} {:<7} {:>9}  rules fired on the victim",
            "injected scenario", "detector", "credential", "caught", "delay"
        );
        for result in &self.results {
            let _ = writeln!(
                text,
                "{:<38} {:<18} {:<26} {:<7} {:>9}  {}",
                result.scenario.name,
                result.scenario.detector.as_str(),
                result.scenario.credential,
                if result.delay.is_some() {
                    "yes"
                } else {
                    "MISSED"
                },
                result
                    .delay
                    .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64())),
                result.rules.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let caught = self.results.iter().filter(|r| r.delay.is_some()).count();
        let _ = writeln!(
            text,
            "\ncaught {caught} of {} injected scenarios",
            self.results.len()
        );
        let _ = writeln!(
            text,
            "benign credentials with alerts: {} of {} ({:.2}%)",
            self.benign_alerted.len(),
            self.benign_credentials,
            self.benign_alert_rate() * 100.0
        );
        for (rule, count) in &self.benign_by_rule {
            let _ = writeln!(text, "  {rule}: {count} alerts");
        }
        let _ = writeln!(
            text,
            "\n{:<18} {:<14} {:<20} {:>10}  {:<8} scope",
            "exception", "owner", "expires", "suppressed", "status"
        );
        for (exception, counts) in &self.exceptions {
            let _ = writeln!(
                text,
                "{:<18} {:<14} {:<20} {:>10}  {:<8} {}",
                exception.id,
                exception.owner,
                exception.expires.to_rfc3339(),
                counts.suppressed,
                if counts.expired_at.is_some() {
                    "expired"
                } else {
                    "active"
                },
                exception.scope
            );
        }
        let _ = writeln!(
            text,
            "CI bot {}: {} alerts (its new-endpoint findings are counted against terraform-ci-bot)",
            world::CI_BOT,
            self.ci_bot_alerts
        );
        text
    }
}

/// (credential, rule, detector, triggering event time) of every new alert.
type Raised = Vec<(String, String, crate::alerts::Text, Timestamp)>;

/// Records new alerts for scoring and passes every alert on to an optional sink.
struct Recorder<'a> {
    raised: Raised,
    sink: Option<&'a mut dyn AlertSink>,
}

impl AlertSink for Recorder<'_> {
    fn emit(&mut self, alert: &Alert) -> std::io::Result<()> {
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.emit(alert)?;
        }
        if alert.activity == Activity::Create {
            self.raised.push((
                alert.credential.clone(),
                alert.rule.clone(),
                alert.detector.clone(),
                alert.evidence.event.ts,
            ));
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.sink.as_deref_mut() {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }
}

/// Generates the day, runs it through the pipeline (in memory, or through Kafka when
/// `options.kafka` names brokers), and scores it. Alerts go to `sink` too when given.
pub fn run(options: &DemoOptions, sink: Option<&mut dyn AlertSink>) -> Result<DemoReport> {
    let started = Instant::now();
    let config = Config::parse("demo config", DEMO_CONFIG)?;
    let exceptions = ExceptionSet::parse(
        &[("demo exceptions".to_owned(), DEMO_EXCEPTIONS.to_owned())],
        &config,
        &RuleSet::builtin(&config)?.ids(),
    )
    .map_err(crate::rules::RuleErrors)?;
    let rules = RuleSet::builtin(&config)?.with_exceptions(exceptions);
    let mut engine = Engine::new(config, rules);

    let mut world = World::generate(options.seed, options.credentials);
    let scenarios = scenarios::inject(&mut world);
    world.sort();

    let mut events_out = match &options.write_events {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create {}", path.display())
            })?))
        }
        None => None,
    };
    let mut recorder = Recorder {
        raised: Vec::new(),
        sink,
    };
    // Every event as a native JSON line, in time order.
    let mut lines = world.plan.iter().enumerate().map(|(sequence, planned)| {
        let event = world.render(planned, sequence as u64);
        serde_json::to_vec(&event).map(|line| (event.credential, line))
    });
    match &options.kafka {
        None => {
            let mut decoder = NativeDecoder::new();
            let mut decoded = Vec::with_capacity(1);
            let mut alerts = Vec::new();
            for item in &mut lines {
                let (_, line) = item?;
                if let Some(out) = events_out.as_mut() {
                    out.write_all(&line)?;
                    out.write_all(b"\n")?;
                }
                decoder.recycle(&mut decoded);
                decoder.decode(&line, &mut decoded).map_err(|e| {
                    anyhow::anyhow!("the demo generated an event its own decoder rejects: {e}")
                })?;
                for event in &decoded {
                    engine.process(event, &mut alerts);
                    for alert in alerts.drain(..) {
                        recorder.emit(&alert)?;
                    }
                }
            }
        }
        Some(brokers) => through_kafka(
            brokers,
            options.seed,
            &mut lines,
            &mut events_out,
            &mut engine,
            &mut recorder,
        )?,
    }
    let mut alerts = Vec::new();
    engine.finish(&mut alerts);
    for alert in &alerts {
        recorder.emit(alert)?;
    }
    recorder.flush()?;
    if let Some(mut out) = events_out {
        out.flush()?;
    }
    let raised = recorder.raised;

    let victims: BTreeSet<&str> = scenarios.iter().map(|s| s.credential.as_str()).collect();
    let results = scenarios
        .iter()
        .map(|scenario| {
            let on_victim = raised.iter().filter(|(credential, .., ts)| {
                *credential == scenario.credential && *ts >= scenario.start
            });
            let rules = on_victim
                .clone()
                .map(|(_, rule, ..)| rule.clone())
                .collect();
            let delay = on_victim
                .filter(|(_, _, detector, _)| *detector == scenario.detector.as_str())
                .map(|(.., ts)| ts.since(scenario.start))
                .min();
            ScenarioResult {
                scenario: scenario.clone(),
                delay,
                rules,
            }
        })
        .collect();
    let ci_bot_alerts = raised
        .iter()
        .filter(|(credential, ..)| credential == world::CI_BOT)
        .count() as u64;
    let exceptions = engine
        .rules()
        .exceptions()
        .all()
        .iter()
        .map(|exception| {
            let counts = engine
                .stats()
                .exceptions
                .get(&exception.id)
                .cloned()
                .unwrap_or_default();
            (exception.clone(), counts)
        })
        .collect();
    let mut benign_alerted = BTreeSet::new();
    let mut benign_by_rule = BTreeMap::new();
    for (credential, rule, ..) in &raised {
        if !victims.contains(credential.as_str()) {
            benign_alerted.insert(credential.clone());
            *benign_by_rule.entry(rule.clone()).or_insert(0) += 1;
        }
    }
    Ok(DemoReport {
        transport: match &options.kafka {
            Some(brokers) => format!("through Kafka at {brokers}"),
            None => "in memory".to_owned(),
        },
        seed: options.seed,
        credentials: world.credentials.len(),
        events: world.plan.len() as u64,
        alerts: raised.len() as u64,
        elapsed: started.elapsed(),
        results,
        benign_credentials: world.credentials.len() - victims.len(),
        benign_alerted,
        benign_by_rule,
        exceptions,
        ci_bot_alerts,
    })
}

/// Produces the day into a new single-partition topic and consumes it with `credwatch run`'s
/// loop, so the demo exercises the real Kafka path end to end.
fn through_kafka(
    brokers: &str,
    seed: u64,
    lines: &mut dyn Iterator<Item = serde_json::Result<(String, Vec<u8>)>>,
    events_out: &mut Option<BufWriter<File>>,
    engine: &mut Engine,
    recorder: &mut Recorder<'_>,
) -> Result<()> {
    use std::sync::atomic::AtomicBool;

    use crate::alerts::Producer;
    use crate::config::{KafkaConfig, KafkaInput};
    use crate::decode::Format;
    use crate::run::{self, RunOptions};

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("credwatch-demo-{seed}-{stamp}");
    let kafka = KafkaConfig {
        brokers: brokers.to_owned(),
        group_id: format!("{topic}-group"),
        inputs: vec![KafkaInput {
            topic: topic.clone(),
            format: Format::Native,
        }],
        alerts_topic: None,
        dead_letter_topic: None,
        commit_interval: Period::from_secs(1),
        allowed_lateness: Period::ZERO,
        properties: Default::default(),
    };
    // One partition keeps the day in time order, as the in-memory run sees it.
    crate::send::ensure_topic(&kafka, &topic, 1)?;
    let producer =
        Producer::connect(&kafka).with_context(|| format!("cannot connect to {brokers}"))?;
    let mut sent = 0u64;
    for item in lines {
        let (credential, line) = item?;
        if let Some(out) = events_out.as_mut() {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
        producer.send(&topic, Some(credential.as_bytes()), &line, None)?;
        sent += 1;
    }
    producer.flush(std::time::Duration::from_secs(120))?;
    let options = RunOptions {
        api: None,
        exit_when_idle: Some(std::time::Duration::from_secs(30)),
        stop_after_messages: Some(sent),
        ..RunOptions::default()
    };
    let summary = run::run(
        engine,
        &kafka,
        recorder,
        None,
        None,
        &options,
        &AtomicBool::new(false),
    )?;
    if summary.messages < sent {
        anyhow::bail!(
            "the demo sent {sent} events to {topic} but read back only {}",
            summary.messages
        );
    }
    Ok(())
}
