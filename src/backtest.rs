//! Backtest: archived events replayed through a rule set with fresh state, to judge a rule
//! change by the alerts it would have raised before it is enabled.
//!
//! Events are read from the archive in event time (ties in arrival order, `ingest_seq`) and
//! run through a new [`Engine`] exactly as `replay` runs them, so the counts equal those of a
//! replay of the same events in the same order. Alerts are counted per day (UTC, of the
//! triggering event) and rule: new alerts, and the repeats suppression folded into them.

use std::collections::BTreeMap;

use crate::alerts::{Activity, Alert};
use crate::archive::read::{events_from_batch, ReadError};
use crate::engine::Engine;
use crate::query::{Query, QueryError};
use crate::time::Timestamp;

/// Why a backtest failed.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("archived events: {0}")]
    Read(#[from] ReadError),
}

/// Alerts of one rule on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// New alerts (what an analyst would have been paged with).
    pub alerts: u64,
    /// Repeats folded into them by suppression.
    pub folded: u64,
}

/// What a backtest found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BacktestReport {
    pub events: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// (day, rule) → counts; days as `YYYY-MM-DD`.
    pub counts: BTreeMap<(String, String), DayCounts>,
}

impl BacktestReport {
    fn count(&mut self, alert: &Alert) {
        let day = Timestamp::from_micros(alert.time.saturating_mul(1000)).to_rfc3339();
        let day = day.get(..10).unwrap_or(&day).to_owned();
        let counts = self.counts.entry((day, alert.rule.clone())).or_default();
        match alert.activity {
            Activity::Create => counts.alerts += 1,
            Activity::Update => counts.folded += u64::from(alert.count.saturating_sub(1)),
        }
    }

    /// Totals per rule over the whole period.
    pub fn by_rule(&self) -> BTreeMap<&str, DayCounts> {
        let mut totals: BTreeMap<&str, DayCounts> = BTreeMap::new();
        for ((_, rule), counts) in &self.counts {
            let total = totals.entry(rule.as_str()).or_default();
            total.alerts += counts.alerts;
            total.folded += counts.folded;
        }
        totals
    }

    /// The report as CSV: `date,rule,alerts,folded`, by day then rule.
    pub fn to_csv(&self) -> String {
        let mut text = String::from("date,rule,alerts,folded\n");
        for ((day, rule), counts) in &self.counts {
            text.push_str(&format!(
                "{day},{rule},{},{}\n",
                counts.alerts, counts.folded
            ));
        }
        text
    }

    /// The human report: a day × rule table and totals per rule.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let span = match (self.first, self.last) {
            (Some(first), Some(last)) => format!("{first} .. {last}"),
            _ => "no events".to_owned(),
        };
        let _ = writeln!(text, "backtest: {} events ({span})", self.events);
        let width = self
            .counts
            .keys()
            .map(|(_, rule)| rule.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            text,
            "{:<10}  {:<width$}  {:>8}  {:>8}",
            "date", "rule", "alerts", "folded"
        );
        for ((day, rule), counts) in &self.counts {
            let _ = writeln!(
                text,
                "{day:<10}  {rule:<width$}  {:>8}  {:>8}",
                counts.alerts, counts.folded
            );
        }
        let _ = writeln!(text, "\ntotal per rule:");
        for (rule, counts) in self.by_rule() {
            let _ = writeln!(
                text,
                "{:<10}  {rule:<width$}  {:>8}  {:>8}",
                "", counts.alerts, counts.folded
            );
        }
        text
    }
}

/// Runs the archived events of `query`'s archive at or after `since` (and before `until`)
/// through `engine`, which should be fresh.
pub fn backtest(
    query: &Query,
    engine: &mut Engine,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<BacktestReport, BacktestError> {
    let mut filters = Vec::new();
    if let Some(since) = since {
        filters.push(format!("time >= TIMESTAMP '{}'", since.to_rfc3339()));
    }
    if let Some(until) = until {
        filters.push(format!("time < TIMESTAMP '{}'", until.to_rfc3339()));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filters.join(" AND "))
    };
    let sql = format!("SELECT * FROM events {filter} ORDER BY time, ingest_seq");
    let mut report = BacktestReport::default();
    let mut alerts = Vec::new();
    query.for_each_batch(&sql, |batch| -> Result<(), ReadError> {
        for event in events_from_batch(&batch)? {
            report.events += 1;
            report.first.get_or_insert(event.ts);
            report.last = Some(event.ts);
            alerts.clear();
            engine.process(&event, &mut alerts);
            for alert in &alerts {
                report.count(alert);
            }
        }
        Ok(())
    })??;
    alerts.clear();
    engine.finish(&mut alerts);
    for alert in &alerts {
        report.count(alert);
    }
    Ok(report)
}
