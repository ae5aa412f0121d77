//! Rule test cases: events in, expected alerts out.
//!
//! A case lists native events (JSON lines) and the 1-based indices of the events that must
//! raise an alert from this rule; an empty `expect` means the case must stay quiet. Each case
//! runs through a fresh engine holding only its rule, suppression included, so a case shows
//! exactly what a user would see.

use serde::Deserialize;
use toml::Spanned;

use super::{Rule, RuleSet};
use crate::alerts::Activity;
use crate::config::Config;
use crate::decode::{Decoder, NativeDecoder};
use crate::diagnostic::FileError;
use crate::engine::Engine;
use crate::event::Event;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    name: String,
    events: Spanned<String>,
    #[serde(default)]
    expect: Vec<Expect>,
}

/// One alert a case expects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// 1-based index of the event that triggers it.
    pub event: usize,
    /// The credential it is about (defaults to the triggering event's).
    #[serde(default)]
    pub credential: Option<String>,
    /// Text the alert's summary must contain.
    #[serde(default)]
    pub contains: Option<String>,
}

/// A validated test case.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    pub events: Vec<Event>,
    pub expect: Vec<Expect>,
}

impl TestCase {
    pub(super) fn parse(raw: RawCase, file: &str, text: &str) -> Result<TestCase, FileError> {
        let span = raw.events.span();
        let mut events = Vec::new();
        let mut decoder = NativeDecoder::new();
        for (index, line) in raw.events.get_ref().lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            decoder.decode(line.as_bytes(), &mut events).map_err(|e| {
                let (line_no, _) = crate::diagnostic::line_column(text, span.start);
                FileError {
                    file: file.to_owned(),
                    position: Some((line_no + index, 1)),
                    message: format!("test `{}`: event {}: {e}", raw.name, events.len() + 1),
                }
            })?;
        }
        if events.is_empty() {
            return Err(FileError::at(
                file,
                text,
                span,
                format!("test `{}`: no events", raw.name),
            ));
        }
        for expect in &raw.expect {
            if expect.event == 0 || expect.event > events.len() {
                return Err(FileError::at(
                    file,
                    text,
                    span,
                    format!(
                        "test `{}`: expect names event {}, but the case has events 1..={}",
                        raw.name,
                        expect.event,
                        events.len()
                    ),
                ));
            }
        }
        Ok(TestCase {
            name: raw.name,
            events,
            expect: raw.expect,
        })
    }

    /// Whether the case expects the rule to fire.
    pub fn fires(&self) -> bool {
        !self.expect.is_empty()
    }
}

/// Pass, or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    Pass,
    Fail(String),
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub rule: String,
    pub file: String,
    pub case: String,
    pub outcome: CaseOutcome,
}

/// Runs every case of every rule; `default_config` serves rules without a `test_config`.
pub fn run_cases(rules: &RuleSet, default_config: &Config) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for rule in rules.rules() {
        for case in &rule.tests {
            reports.push(CaseReport {
                rule: rule.id.clone(),
                file: rule.file.clone(),
                case: case.name.clone(),
                outcome: run_case(rule, case, default_config),
            });
        }
    }
    reports
}

fn run_case(rule: &Rule, case: &TestCase, default_config: &Config) -> CaseOutcome {
    let config = rule
        .test_config
        .as_deref()
        .cloned()
        .unwrap_or_else(|| default_config.clone());
    let mut single = rule.clone();
    single.enabled = true;
    let mut engine = Engine::new(config, RuleSet::single(single));
    let mut alerts = Vec::new();
    // (event index, credential, summary) of every new alert.
    let mut fired: Vec<(usize, String, String)> = Vec::new();
    for (index, event) in case.events.iter().enumerate() {
        alerts.clear();
        engine.process(event, &mut alerts);
        for alert in &alerts {
            if alert.activity == Activity::Create {
                fired.push((index + 1, alert.credential.clone(), alert.summary.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    let mut unmatched = fired.clone();
    for expect in &case.expect {
        let credential = expect
            .credential
            .clone()
            .unwrap_or_else(|| case.events[expect.event - 1].credential.clone());
        let position = unmatched.iter().position(|(index, cred, summary)| {
            *index == expect.event
                && *cred == credential
                && expect
                    .contains
                    .as_deref()
                    .is_none_or(|text| summary.contains(text))
        });
        match position {
            Some(position) => {
                unmatched.remove(position);
            }
            None => {
                let got: Vec<&str> = fired
                    .iter()
                    .filter(|(index, ..)| *index == expect.event)
                    .map(|(.., summary)| summary.as_str())
                    .collect();
                problems.push(match (&expect.contains, got.is_empty()) {
                    (_, true) => format!(
                        "expected an alert at event {} for {credential}, got none",
                        expect.event
                    ),
                    (Some(text), false) => format!(
                        "expected an alert at event {} containing {text:?}, got {:?}",
                        expect.event, got
                    ),
                    (None, false) => format!(
                        "expected an alert at event {} for {credential}, got {got:?}",
                        expect.event
                    ),
                });
            }
        }
    }
    for (index, credential, summary) in unmatched {
        problems.push(format!(
            "unexpected alert at event {index} for {credential}: {summary}"
        ));
    }
    if problems.is_empty() {
        CaseOutcome::Pass
    } else {
        CaseOutcome::Fail(problems.join("; "))
    }
}
