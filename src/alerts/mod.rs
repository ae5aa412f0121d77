//! Alerts: findings turned into OCSF Detection Findings, folded and delivered.
//!
//! An [`Alert`] is shaped after the OCSF Detection Finding class (class_uid 2004) so a SIEM
//! can ingest it as is, with credwatch's own `rule`, `detector`, `credential`, `severity` and
//! `evidence` at top level. Its id is derived from (rule, credential, triggering event id), so
//! re-processing the same input after a restart yields the same alert, never a different one.
//! [`Suppressor`] folds repeats per (rule, credential) within the rule's window; sinks write
//! alerts out.

mod kafka_sink;
mod sink;
mod suppress;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use kafka_sink::{dead_letter_headers, KafkaAlertSink, Producer};
pub use sink::{AlertSink, Fanout, JsonLinesSink, TextSink};
pub(crate) use suppress::place_of;
pub use suppress::{OpenWindow, Suppressor, SuppressorSnapshot};

/// A string that is nearly always a constant, but owned when read back (from a checkpoint).
pub type Text = Cow<'static, str>;

use crate::decode::hex_prefix;
use crate::detect::{Anomaly, Finding};
use crate::event::Event;
use crate::rules::{Action, Rule, Severity};

/// OCSF activity: a new finding, or the roll-up of repeats folded into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Activity {
    #[default]
    Create,
    Update,
}

impl Activity {
    fn ocsf_id(self) -> u8 {
        match self {
            Activity::Create => 1,
            Activity::Update => 2,
        }
    }
}

/// An alert as emitted (field order is the JSON field order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic: hash of rule, credential and triggering event id.
    pub id: String,
    pub rule: String,
    pub detector: Text,
    pub credential: String,
    pub severity: Severity,
    pub action: Action,
    /// Occurrences this alert stands for (more than 1 on an `Update`).
    pub count: u32,
    pub summary: String,
    #[serde(skip)]
    pub activity: Activity,
    // OCSF Detection Finding fields.
    pub class_uid: u32,
    pub class_name: Text,
    pub category_uid: u32,
    pub category_name: Text,
    pub activity_id: u8,
    pub activity_name: Text,
    pub type_uid: u32,
    pub severity_id: u8,
    pub severity_caption: Text,
    pub status_id: u8,
    pub status: Text,
    /// Event time of the triggering event, milliseconds since the epoch.
    pub time: i64,
    pub time_dt: String,
    pub message: String,
    pub finding_info: FindingInfo,
    pub metadata: Metadata,
    pub resources: Vec<Resource>,
    pub evidence: Evidence,
    /// OCSF `anomaly_analyses`: for baseline detectors, the anomaly and the baseline it departs
    /// from (absent for rules that judge a fact, such as use after revocation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomaly_analyses: Vec<AnomalyAnalysis>,
}

/// OCSF Anomaly Analysis: the target analysed (the credential), what was anomalous and the
/// baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyAnalysis {
    pub analysis_targets: Vec<AnalysisTarget>,
    pub anomalies: Vec<Anomaly>,
    pub baselines: Vec<Anomaly>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisTarget {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Text,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingInfo {
    pub uid: String,
    pub title: String,
    pub desc: String,
    pub types: Vec<String>,
    pub first_seen_time: i64,
    pub last_seen_time: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: Text,
    pub product: Product,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub name: Text,
    pub vendor_name: Text,
    pub version: Text,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub uid: String,
    #[serde(rename = "type")]
    pub kind: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub name: String,
}

/// Why the alert fired: the rule, what the baseline expected, what was seen, and the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub rule_title: String,
    pub expected: serde_json::Value,
    pub observed: serde_json::Value,
    pub event: Event,
}

/// Who raises an alert: a rule, or credwatch itself.
struct Raised<'a> {
    rule: &'a str,
    detector: &'static str,
    title: &'a str,
    severity: Severity,
    action: Action,
}

const OCSF_VERSION: &str = "1.3.0";
const DETECTION_FINDING: u32 = 2004;

impl Alert {
    /// A new alert from a rule's finding on `event`.
    pub fn new(rule: &Rule, event: &Event, owner: Option<String>, finding: Finding) -> Alert {
        Alert::raise(
            Raised {
                rule: &rule.id,
                detector: rule.kind.as_str(),
                title: &rule.title,
                severity: rule.severity,
                action: rule.action,
            },
            event,
            owner,
            finding,
        )
    }

    /// An alert credwatch raises about itself on `event` (for example when it starts evicting
    /// state): detector `credwatch`, action `alert`.
    pub fn about_credwatch(
        rule: &str,
        title: &str,
        severity: Severity,
        event: &Event,
        finding: Finding,
    ) -> Alert {
        Alert::raise(
            Raised {
                rule,
                detector: "credwatch",
                title,
                severity,
                action: Action::Alert,
            },
            event,
            None,
            finding,
        )
    }

    fn raise(raised: Raised<'_>, event: &Event, owner: Option<String>, finding: Finding) -> Alert {
        let Raised {
            rule: rule_id,
            detector,
            title,
            severity,
            action,
        } = raised;
        let id = alert_id(rule_id, &event.credential, &event.event_id);
        let time = event.ts.millis();
        let anomaly_analyses = finding
            .analysis
            .map(|analysis| {
                vec![AnomalyAnalysis {
                    analysis_targets: vec![AnalysisTarget {
                        name: event.credential.clone(),
                        kind: "Credential".into(),
                    }],
                    anomalies: vec![analysis.anomaly],
                    baselines: vec![analysis.baseline],
                }]
            })
            .unwrap_or_default();
        Alert {
            id: id.clone(),
            rule: rule_id.to_owned(),
            detector: detector.into(),
            credential: event.credential.clone(),
            severity,
            action,
            count: 1,
            message: format!("{}: {}", title, finding.summary),
            summary: finding.summary.clone(),
            activity: Activity::Create,
            class_uid: DETECTION_FINDING,
            class_name: "Detection Finding".into(),
            category_uid: 2,
            category_name: "Findings".into(),
            activity_id: Activity::Create.ocsf_id(),
            activity_name: "Create".into(),
            type_uid: DETECTION_FINDING * 100 + Activity::Create.ocsf_id() as u32,
            severity_id: severity.ocsf_id(),
            severity_caption: severity.caption().into(),
            status_id: 1,
            status: "New".into(),
            time,
            time_dt: event.ts.to_rfc3339(),
            finding_info: FindingInfo {
                uid: id,
                title: title.to_owned(),
                desc: finding.summary,
                types: vec![if detector == "credwatch" {
                    format!("credwatch/{rule_id}")
                } else {
                    format!("credential-misuse/{detector}")
                }],
                first_seen_time: time,
                last_seen_time: time,
            },
            metadata: Metadata {
                version: OCSF_VERSION.into(),
                product: Product {
                    name: "credwatch".into(),
                    vendor_name: "credwatch".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
            },
            resources: vec![Resource {
                uid: event.credential.clone(),
                kind: "credential".into(),
                owner: owner.map(|name| Owner { name }),
            }],
            evidence: Evidence {
                rule_title: title.to_owned(),
                expected: finding.expected,
                observed: finding.observed,
                event: event.clone(),
            },
            anomaly_analyses,
        }
    }

    /// The roll-up of `count` occurrences folded into `self` up to `last_time` (ms).
    pub fn update(&self, count: u32, last_time: i64) -> Alert {
        let mut update = self.clone();
        update.id = hex_prefix(
            &Sha256::digest(format!("{}\0update", self.id).as_bytes()),
            16,
        );
        update.activity = Activity::Update;
        update.activity_id = Activity::Update.ocsf_id();
        update.activity_name = "Update".into();
        update.type_uid = DETECTION_FINDING * 100 + Activity::Update.ocsf_id() as u32;
        update.count = count;
        update.time = last_time;
        update.time_dt =
            crate::time::Timestamp::from_micros(last_time.saturating_mul(1000)).to_rfc3339();
        update.finding_info.last_seen_time = last_time;
        update.summary = format!(
            "{} occurrences folded into alert {}; first: {}",
            count, self.id, self.summary
        );
        update.message = format!("{} ({} occurrences)", self.message, count);
        update
    }

    /// An alert credwatch raises about itself (for example the revocation rate limit),
    /// triggered by `self`; its id derives from `self`'s, so it is as deterministic.
    pub fn system(&self, rule: &str, title: &str, severity: Severity, summary: String) -> Alert {
        let mut alert = self.clone();
        alert.id = alert_id(rule, &self.credential, &self.id);
        alert.rule = rule.to_owned();
        alert.detector = "credwatch".into();
        alert.severity = severity;
        alert.severity_id = severity.ocsf_id();
        alert.severity_caption = severity.caption().into();
        alert.action = Action::Alert;
        alert.message = format!("{title}: {summary}");
        alert.summary = summary.clone();
        alert.finding_info.uid = alert.id.clone();
        alert.finding_info.title = title.to_owned();
        alert.finding_info.desc = summary;
        alert.finding_info.types = vec![format!("credwatch/{rule}")];
        alert.evidence.rule_title = title.to_owned();
        alert
    }

    /// The JSON line written by `--output json` (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"serialization_error\":\"{e}\"}}"))
    }
}

/// Deterministic alert id: the first 128 bits of SHA-256 over rule, credential and event id.
pub fn alert_id(rule: &str, credential: &str, event_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [rule, credential, event_id] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex_prefix(&hasher.finalize(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_separate_their_parts() {
        assert_eq!(alert_id("r", "k", "e"), alert_id("r", "k", "e"));
        assert_ne!(alert_id("r", "k", "e"), alert_id("r", "ke", ""));
        assert_eq!(alert_id("r", "k", "e").len(), 32);
    }
}
