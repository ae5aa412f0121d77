//! Suppression: repeats of one (rule, credential) within the rule's window fold into a count.
//!
//! The first finding is emitted at once; later ones inside the window only bump a counter.
//! When event time passes the window's end (or the input ends), a window that folded repeats
//! emits one `Update` alert carrying the count. Windows close in (end, rule, credential) order,
//! all in event time, so the output is deterministic.

use std::collections::{BTreeSet, HashMap};

use super::Alert;
use crate::time::{Period, Timestamp};

struct Open {
    first: Alert,
    count: u32,
    last_time: i64,
    end: Timestamp,
}

/// Folds repeated alerts per (rule, credential).
#[derive(Default)]
pub struct Suppressor {
    open: HashMap<(String, String), Open>,
    closing: BTreeSet<(Timestamp, String, String)>,
    watermark: Option<Timestamp>,
    suppressed: u64,
}

impl Suppressor {
    pub fn new() -> Self {
        Suppressor::default()
    }

    /// Closes the windows that end at or before `now`, emitting their roll-ups.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let now = self.watermark.map_or(now, |mark| mark.max(now));
        self.watermark = Some(now);
        while let Some(first) = self.closing.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, rule, credential)) = self.closing.pop_first() {
                self.close(rule, credential, out);
            }
        }
    }

    /// Emits `alert` or folds it into an open window of `window`.
    pub fn offer(&mut self, alert: Alert, ts: Timestamp, window: Period, out: &mut Vec<Alert>) {
        if window <= Period::ZERO {
            out.push(alert);
            return;
        }
        let key = (alert.rule.clone(), alert.credential.clone());
        if let Some(open) = self.open.get_mut(&key) {
            if ts < open.end {
                open.count = open.count.saturating_add(1);
                open.last_time = open.last_time.max(alert.time);
                self.suppressed += 1;
                return;
            }
        }
        let end = ts.saturating_add(window);
        if let Some(previous) = self.open.remove(&key) {
            // Out-of-order input can reopen a window before the watermark closed it.
            self.closing.remove(&(previous.end, key.0.clone(), key.1.clone()));
            if previous.count > 1 {
                out.push(previous.first.update(previous.count, previous.last_time));
            }
        }
        self.closing.insert((end, key.0.clone(), key.1.clone()));
        out.push(alert.clone());
        self.open.insert(
            key,
            Open {
                last_time: alert.time,
                first: alert,
                count: 1,
                end,
            },
        );
    }

    /// Closes every window (end of input).
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        while let Some((_, rule, credential)) = self.closing.pop_first() {
            self.close(rule, credential, out);
        }
    }

    /// Alerts folded so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    fn close(&mut self, rule: String, credential: String, out: &mut Vec<Alert>) {
        if let Some(open) = self.open.remove(&(rule, credential)) {
            if open.count > 1 {
                out.push(open.first.update(open.count, open.last_time));
            }
        }
    }
}
