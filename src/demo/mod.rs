//! Demo: the embedded default job. A synthetic organisation's day, with one injected misuse per
//! detector, run through the full pipeline (native JSON encode → decode → zones → state →
//! detect → alerts), then scored: each scenario caught or missed with its detection delay, and
//! the alerts raised on benign credentials.

mod scenarios;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

pub use scenarios::Scenario;
pub use world::World;

use crate::alerts::{Activity, AlertSink};
use crate::config::Config;
use crate::decode::{Decoder, NativeDecoder};
use crate::engine::Engine;
use crate::rules::RuleSet;
use crate::time::{Period, Timestamp};

/// The demo's configuration: zones of the synthetic organisation.
pub const DEMO_CONFIG: &str = include_str!("config.toml");

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seed: u64,
    pub credentials: usize,
    /// Also write the generated events as native JSON lines here.
    pub write_events: Option<PathBuf>,
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
            "credwatch demo: seed {}, {} credentials, one day ({}), {} events, {} alerts, {:.2}s ({:.0} events/s)\n",
            self.seed,
            self.credentials,
            &world::DAY[..10],
            self.events,
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
        text
    }
}

/// Generates the day, runs it through the pipeline, and scores it. Alerts go to `sink` too
/// when given.
pub fn run(options: &DemoOptions, mut sink: Option<&mut dyn AlertSink>) -> Result<DemoReport> {
    let started = Instant::now();
    let config = Config::parse("demo config", DEMO_CONFIG)?;
    let rules = RuleSet::builtin(&config)?;
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
    let mut decoder = NativeDecoder;
    let mut line = Vec::with_capacity(512);
    let mut decoded = Vec::with_capacity(1);
    let mut alerts = Vec::new();
    // (credential, rule, detector, time) of every new alert.
    let mut raised: Vec<(String, String, &'static str, Timestamp)> = Vec::new();
    let mut record = |alerts: &mut Vec<crate::alerts::Alert>,
                      sink: &mut Option<&mut dyn AlertSink>|
     -> Result<()> {
        for alert in alerts.drain(..) {
            if let Some(sink) = sink.as_deref_mut() {
                sink.emit(&alert)?;
            }
            if alert.activity == Activity::Create {
                raised.push((
                    alert.credential,
                    alert.rule,
                    alert.detector,
                    alert.evidence.event.ts,
                ));
            }
        }
        Ok(())
    };
    for (sequence, planned) in world.plan.iter().enumerate() {
        let event = world.render(planned, sequence as u64);
        line.clear();
        serde_json::to_writer(&mut line, &event)?;
        if let Some(out) = events_out.as_mut() {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
        decoded.clear();
        decoder.decode(&line, &mut decoded).map_err(|e| {
            anyhow::anyhow!("the demo generated an event its own decoder rejects: {e}")
        })?;
        for event in &decoded {
            engine.process(event, &mut alerts);
            record(&mut alerts, &mut sink)?;
        }
    }
    engine.finish(&mut alerts);
    record(&mut alerts, &mut sink)?;
    if let Some(sink) = sink {
        sink.flush()?;
    }
    if let Some(mut out) = events_out {
        out.flush()?;
    }

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
    let mut benign_alerted = BTreeSet::new();
    let mut benign_by_rule = BTreeMap::new();
    for (credential, rule, ..) in &raised {
        if !victims.contains(credential.as_str()) {
            benign_alerted.insert(credential.clone());
            *benign_by_rule.entry(rule.clone()).or_insert(0) += 1;
        }
    }
    Ok(DemoReport {
        seed: options.seed,
        credentials: world.credentials.len(),
        events: world.plan.len() as u64,
        alerts: raised.len() as u64,
        elapsed: started.elapsed(),
        results,
        benign_credentials: world.credentials.len() - victims.len(),
        benign_alerted,
        benign_by_rule,
    })
}
