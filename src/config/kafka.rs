//! `[kafka]`: where `credwatch run` reads events and writes alerts and dead letters.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::decode::Format;
use crate::time::Period;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    brokers: String,
    #[serde(default = "default_group")]
    group_id: String,
    #[serde(default)]
    inputs: Vec<RawInput>,
    #[serde(default)]
    alerts_topic: Option<String>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default = "default_commit_interval")]
    commit_interval: Period,
    #[serde(default)]
    allowed_lateness: Period,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    topic: String,
    #[serde(default)]
    format: Format,
}

fn default_group() -> String {
    "credwatch".to_owned()
}

fn default_commit_interval() -> Period {
    Period::from_secs(1)
}

/// One input topic and the format of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaInput {
    pub topic: String,
    pub format: Format,
}

/// Validated `[kafka]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group: instances with the same group split the input partitions.
    pub group_id: String,
    pub inputs: Vec<KafkaInput>,
    /// Alerts are produced here (keyed by credential id), if set.
    pub alerts_topic: Option<String>,
    /// Malformed records are produced here with the reason and origin in headers, if set.
    pub dead_letter_topic: Option<String>,
    /// How often offsets are committed (after every sink confirmed delivery).
    pub commit_interval: Period,
    /// How far event time may run behind the newest event seen before windows close.
    pub allowed_lateness: Period,
    /// librdkafka properties passed through to every client (SASL, SSL, timeouts, ...).
    pub properties: BTreeMap<String, String>,
}

/// Properties credwatch sets itself; overriding them would break its delivery guarantee.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];

impl RawKafka {
    pub(super) fn validate(self) -> Result<KafkaConfig, String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers: give at least one host:port".into());
        }
        if self.inputs.is_empty() {
            return Err(
                "inputs: list at least one input topic ([[kafka.inputs]] topic = \"...\")".into(),
            );
        }
        if let Some(input) = self
            .inputs
            .iter()
            .find(|i| i.format == Format::Auto && i.topic.is_empty())
        {
            return Err(format!(
                "inputs: empty topic name (format {})",
                input.format
            ));
        }
        if let Some(key) = self
            .properties
            .keys()
            .find(|k| MANAGED.contains(&k.as_str()))
        {
            return Err(format!(
                "properties: `{key}` is set by credwatch (use `brokers`/`group_id`; offsets are committed only after alerts are delivered)"
            ));
        }
        if self.commit_interval <= Period::ZERO {
            return Err("commit_interval: must be longer than 0s".into());
        }
        Ok(KafkaConfig {
            brokers: self.brokers,
            group_id: self.group_id,
            inputs: self
                .inputs
                .into_iter()
                .map(|i| KafkaInput {
                    topic: i.topic,
                    format: i.format,
                })
                .collect(),
            alerts_topic: self.alerts_topic.filter(|t| !t.is_empty()),
            dead_letter_topic: self.dead_letter_topic.filter(|t| !t.is_empty()),
            commit_interval: self.commit_interval,
            allowed_lateness: self.allowed_lateness,
            properties: self.properties,
        })
    }
}
