//! Prometheus text exposition of what credwatch counts: events by format and kind, malformed
//! records, alerts by rule and severity, revocations by outcome, consumer lag per partition,
//! processing latency quantiles (hdrhistogram), credentials tracked and state bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::decode::Format;
use crate::engine::EngineStats;
use crate::event::Kind;

/// What the run loop publishes for `/metrics`, about once a second.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub engine: EngineStats,
    pub messages: u64,
    pub malformed: u64,
    /// Severity of each rule, to label alert counters.
    pub severities: BTreeMap<String, &'static str>,
    /// Revocations by outcome (`delivered`, `refused`, ...).
    pub revocations: BTreeMap<&'static str, u64>,
    /// Revocations decided and waiting for delivery (the in-memory queue), when responding.
    pub revocations_queued: Option<u64>,
    /// Times consumption paused for a full revocation queue.
    pub backpressure_pauses: u64,
    /// Whether consumption is paused right now.
    pub paused: bool,
    /// Messages behind the end of each partition: (topic, partition, lag).
    pub lag: Vec<(String, i32, i64)>,
    /// Per-message processing time (decode, engine, sinks), microseconds.
    pub latency: Histogram<u64>,
    /// Set when rendering (the loop leaves them 0).
    pub credentials: usize,
    pub state_bytes: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            engine: EngineStats::default(),
            messages: 0,
            malformed: 0,
            severities: BTreeMap::new(),
            revocations: BTreeMap::new(),
            revocations_queued: None,
            backpressure_pauses: 0,
            paused: false,
            lag: Vec::new(),
            latency: new_latency_histogram(),
            credentials: 0,
            state_bytes: 0,
        }
    }
}

/// Resident memory (VmRSS) of process `pid`, or of this process, in bytes; `None` where
/// `/proc` does not say (not Linux).
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |pid| format!("/proc/{pid}/status"),
    );
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}

/// Microseconds from 1 µs to 60 s, three significant figures.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        family(
            "credwatch_events_total",
            "counter",
            "Events processed, by input format and kind.",
        );
        let mut lines = String::new();
        for (index, format) in Format::ALL.iter().enumerate() {
            for kind in Kind::ALL {
                let count = self.engine.by_format[index][kind.index()];
                if count > 0 {
                    let _ = writeln!(
                        lines,
                        "credwatch_events_total{{format=\"{}\",kind=\"{}\"}} {count}",
                        format.as_str(),
                        kind.as_str()
                    );
                }
            }
        }
        out.push_str(&lines);
        let simple = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        simple(
            &mut out,
            "credwatch_messages_total",
            "counter",
            "Input messages consumed.",
            self.messages.to_string(),
        );
        simple(
            &mut out,
            "credwatch_malformed_records_total",
            "counter",
            "Records that could not be decoded (sent to dead letters).",
            self.malformed.to_string(),
        );
        simple(
            &mut out,
            "credwatch_out_of_order_events_total",
            "counter",
            "Events older than the watermark.",
            self.engine.out_of_order.to_string(),
        );
        simple(
            &mut out,
            "credwatch_credentials_evicted_total",
            "counter",
            "Credentials evicted past [state] max_credentials (longest idle first).",
            self.engine.evicted.to_string(),
        );
        simple(
            &mut out,
            "credwatch_suppression_windows_closed_early_total",
            "counter",
            "Suppression windows closed early past [state] max_suppression_windows.",
            self.engine.windows_closed_early.to_string(),
        );
        simple(
            &mut out,
            "credwatch_names_dropped_total",
            "counter",
            "Interned endpoint, principal and user-agent names no state used any more, dropped by compaction.",
            self.engine.names_dropped.to_string(),
        );
        let _ = writeln!(out, "# HELP credwatch_alerts_total Alerts raised, by rule and severity.\n# TYPE credwatch_alerts_total counter");
        for (rule, counts) in &self.engine.rules {
            let severity = self.severities.get(rule).copied().unwrap_or("unknown");
            let _ = writeln!(
                out,
                "credwatch_alerts_total{{rule=\"{}\",severity=\"{severity}\"}} {}",
                escape(rule),
                counts.alerts
            );
        }
        let _ = writeln!(out, "# HELP credwatch_alerts_suppressed_total Findings folded into an earlier alert.\n# TYPE credwatch_alerts_suppressed_total counter");
        for (rule, counts) in &self.engine.rules {
            let _ = writeln!(
                out,
                "credwatch_alerts_suppressed_total{{rule=\"{}\"}} {}",
                escape(rule),
                counts.suppressed
            );
        }
        let _ = writeln!(out, "# HELP credwatch_alerts_excepted_total Findings an exception turned into no alert, by rule.\n# TYPE credwatch_alerts_excepted_total counter");
        for (rule, counts) in &self.engine.rules {
            let _ = writeln!(
                out,
                "credwatch_alerts_excepted_total{{rule=\"{}\"}} {}",
                escape(rule),
                counts.excepted
            );
        }
        if !self.engine.exceptions.is_empty() {
            let _ = writeln!(out, "# HELP credwatch_exception_suppressed_total Findings each exception turned into no alert.\n# TYPE credwatch_exception_suppressed_total counter");
            for (id, counts) in &self.engine.exceptions {
                let _ = writeln!(
                    out,
                    "credwatch_exception_suppressed_total{{exception=\"{}\"}} {}",
                    escape(id),
                    counts.suppressed
                );
            }
            let _ = writeln!(out, "# HELP credwatch_exception_expired 1 once event time has passed the exception's expiry (it no longer applies).\n# TYPE credwatch_exception_expired gauge");
            for (id, counts) in &self.engine.exceptions {
                let _ = writeln!(
                    out,
                    "credwatch_exception_expired{{exception=\"{}\"}} {}",
                    escape(id),
                    u8::from(counts.expired_at.is_some())
                );
            }
        }
        let _ = writeln!(out, "# HELP credwatch_revocations_total Revocations by outcome.\n# TYPE credwatch_revocations_total counter");
        for (outcome, count) in &self.revocations {
            let _ = writeln!(
                out,
                "credwatch_revocations_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        if let Some(queued) = self.revocations_queued {
            let _ = writeln!(out, "# HELP credwatch_revocations_queued Revocations decided and waiting in memory for delivery.\n# TYPE credwatch_revocations_queued gauge\ncredwatch_revocations_queued {queued}");
        }
        let _ = writeln!(out, "# HELP credwatch_backpressure_pauses_total Times consumption paused because the revocation queue was full.\n# TYPE credwatch_backpressure_pauses_total counter\ncredwatch_backpressure_pauses_total {}", self.backpressure_pauses);
        let _ = writeln!(out, "# HELP credwatch_consumption_paused Whether consumption is paused for backpressure (1) or not (0).\n# TYPE credwatch_consumption_paused gauge\ncredwatch_consumption_paused {}", u8::from(self.paused));
        let _ = writeln!(out, "# HELP credwatch_consumer_lag Messages between the consumer's position and the end of the partition.\n# TYPE credwatch_consumer_lag gauge");
        for (topic, partition, lag) in &self.lag {
            let _ = writeln!(
                out,
                "credwatch_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
                escape(topic)
            );
        }
        let _ = writeln!(out, "# HELP credwatch_processing_seconds Per-message processing time.\n# TYPE credwatch_processing_seconds summary");
        for quantile in [0.5, 0.9, 0.99, 0.999] {
            let micros = self.latency.value_at_quantile(quantile);
            let _ = writeln!(
                out,
                "credwatch_processing_seconds{{quantile=\"{quantile}\"}} {:.6}",
                micros as f64 / 1e6
            );
        }
        let sum: f64 = self
            .latency
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum();
        let _ = writeln!(out, "credwatch_processing_seconds_sum {:.6}", sum / 1e6);
        let _ = writeln!(
            out,
            "credwatch_processing_seconds_count {}",
            self.latency.len()
        );
        simple(
            &mut out,
            "credwatch_credentials_tracked",
            "gauge",
            "Credentials with state in memory.",
            self.credentials.to_string(),
        );
        simple(
            &mut out,
            "credwatch_state_bytes",
            "gauge",
            "Approximate bytes of credential state.",
            self.state_bytes.to_string(),
        );
        if let Some(bytes) = resident_bytes(None) {
            simple(
                &mut out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory of the credwatch process.",
                bytes.to_string(),
            );
        }
        out
    }
}
