//! Suppression: repeats of one (rule, credential) within the rule's window fold into a count.
//!
//! Escalation: a repeat from a zone or network not yet seen in the window is not folded but
//! emitted as an alert of its own. The owner's own use of a leaked key must not hide the
//! attacker's first use from elsewhere inside one count.
//!
//! The first finding is emitted at once; later ones inside the window only bump a counter.
//! When event time passes the window's end (or the input ends), a window that folded repeats
//! emits one `Update` alert carrying the count. Windows close in (end, rule, credential) order,
//! all in event time, so the output is deterministic.

use std::collections::BTreeSet;

use hashbrown::{Equivalent, HashMap};

use super::Alert;
use crate::time::{Period, Timestamp};

struct Open {
    first: Alert,
    count: u32,
    last_time: i64,
    end: Timestamp,
    /// (zone, network) of every alert emitted in this window.
    places: Vec<(String, String)>,
}

impl Open {
    fn to_window(&self) -> Result<OpenWindow, String> {
        let mut first = Vec::new();
        ciborium::into_writer(&self.first, &mut first).map_err(|e| e.to_string())?;
        Ok(OpenWindow {
            first,
            count: self.count,
            last_time: self.last_time,
            end: self.end,
            places: self.places.clone(),
        })
    }

    /// The window's (rule, credential) key and its state.
    fn from_window(window: OpenWindow) -> Result<((String, String), Open), String> {
        let first: Alert =
            ciborium::from_reader(window.first.as_slice()).map_err(|e| e.to_string())?;
        let key = (first.rule.clone(), first.credential.clone());
        Ok((
            key,
            Open {
                first,
                count: window.count,
                last_time: window.last_time,
                end: window.end,
                places: window.places,
            },
        ))
    }
}

/// Where an alert's triggering call came from, as its evidence says; `None` when it says
/// nothing (lifecycle findings), which never escalates.
fn place(alert: &Alert) -> Option<(&str, &str)> {
    place_of(&alert.evidence.observed)
}

/// A window's (rule, credential) key, borrowed: finds the window without copying either.
/// Hashes as the owned `(String, String)` does (each part in order, as `str`).
#[derive(Hash)]
struct Key<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for Key<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// The (zone, network) an alert's or a finding's `observed` evidence names, if any.
pub(crate) fn place_of(observed: &serde_json::Value) -> Option<(&str, &str)> {
    let zone = observed.get("zone").and_then(|v| v.as_str());
    let network = observed.get("network").and_then(|v| v.as_str());
    if zone.is_none() && network.is_none() {
        return None;
    }
    Some((zone.unwrap_or_default(), network.unwrap_or_default()))
}

/// An open window as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenWindow {
    /// The window's first alert in CBOR: self-describing, unlike the checkpoint's encoding,
    /// so the alert's optional fields round-trip, and exact for floats, unlike JSON text.
    pub first: Vec<u8>,
    pub count: u32,
    pub last_time: i64,
    pub end: Timestamp,
    pub places: Vec<(String, String)>,
}

/// A [`Suppressor`]'s state, for checkpoints.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct SuppressorSnapshot {
    pub windows: Vec<OpenWindow>,
    pub watermark: Option<Timestamp>,
    pub suppressed: u64,
    pub escalated: u64,
}

/// Folds repeated alerts per (rule, credential).
pub struct Suppressor {
    /// Boxed: a window holds its whole first alert, and when the map grows it moves every
    /// entry; with values inline, growing past some 30,000 windows moved tens of MB into
    /// freshly faulted pages and held one event for up to 100 ms (docs/performance-log.md,
    /// section 3).
    open: HashMap<(String, String), Box<Open>, foldhash::fast::RandomState>,
    closing: BTreeSet<(Timestamp, String, String)>,
    watermark: Option<Timestamp>,
    suppressed: u64,
    escalated: u64,
    /// Windows open at most; past it the earliest-ending one closes early.
    max_open: usize,
    /// Windows closed early since the owner last took the count.
    closed_early: u64,
}

impl Default for Suppressor {
    fn default() -> Self {
        Suppressor {
            open: HashMap::default(),
            closing: BTreeSet::new(),
            watermark: None,
            suppressed: 0,
            escalated: 0,
            max_open: usize::MAX,
            closed_early: 0,
        }
    }
}

impl Suppressor {
    pub fn new() -> Self {
        Suppressor::default()
    }

    /// Keeps at most `max_open` windows open: a flood of findings on distinct credentials
    /// (a storm of unknown keys) cannot grow memory without bound. Past it, the window that
    /// would end first closes early, emitting its roll-up now.
    pub fn with_limit(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    /// Windows closed early because of the limit since the last call (the engine keeps the
    /// running total in its stats, which checkpoints carry).
    pub fn take_closed_early(&mut self) -> u64 {
        std::mem::take(&mut self.closed_early)
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

    /// Folds a finding of `rule` on `credential` at `ts` (`time`: its alert's time, in ms)
    /// into the open window it falls in, and returns true; or returns false, leaving
    /// everything as it was, when [`Suppressor::offer`] would emit the finding's alert (no
    /// open window, the window has ended, or a new zone or network escalates). Lets the engine
    /// skip building an alert that would only be counted.
    ///
    /// `place` is where the finding happened as its evidence tells: the (zone, network) of
    /// its `observed` object (see `place_of`), if any.
    pub fn fold(
        &mut self,
        rule: &str,
        credential: &str,
        ts: Timestamp,
        time: i64,
        place: Option<(&str, &str)>,
        window: Period,
    ) -> bool {
        if window <= Period::ZERO || self.open.is_empty() {
            return false;
        }
        let Some(open) = self.open.get_mut(&Key(rule, credential)) else {
            return false;
        };
        if ts >= open.end {
            return false;
        }
        if place.is_some_and(|(zone, network)| {
            !open.places.iter().any(|(z, n)| z == zone && n == network)
        }) {
            return false;
        }
        open.count = open.count.saturating_add(1);
        open.last_time = open.last_time.max(time);
        self.suppressed += 1;
        true
    }

    /// Emits `alert` or folds it into an open window of `window`.
    pub fn offer(&mut self, alert: Alert, ts: Timestamp, window: Period, out: &mut Vec<Alert>) {
        if window <= Period::ZERO {
            out.push(alert);
            return;
        }
        let at = place(&alert);
        if self.fold(&alert.rule, &alert.credential, ts, alert.time, at, window) {
            return;
        }
        let at = at.map(|(zone, network)| (zone.to_owned(), network.to_owned()));
        let key = (alert.rule.clone(), alert.credential.clone());
        if let Some(open) = self.open.get_mut(&key) {
            if ts < open.end {
                // Inside the window and not folded: it comes from a new zone or network.
                open.places.extend(at);
                self.escalated += 1;
                out.push(alert);
                return;
            }
        }
        let end = ts.saturating_add(window);
        if let Some(previous) = self.open.remove(&key) {
            // Out-of-order input can reopen a window before the watermark closed it.
            self.closing
                .remove(&(previous.end, key.0.clone(), key.1.clone()));
            if previous.count > 1 {
                out.push(previous.first.update(previous.count, previous.last_time));
            }
        }
        while self.open.len() >= self.max_open {
            let Some((_, rule, credential)) = self.closing.pop_first() else {
                break;
            };
            self.closed_early += 1;
            self.close(rule, credential, out);
        }
        self.closing.insert((end, key.0.clone(), key.1.clone()));
        out.push(alert.clone());
        self.open.insert(
            key,
            Box::new(Open {
                last_time: alert.time,
                places: at.into_iter().collect(),
                first: alert,
                count: 1,
                end,
            }),
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

    /// Repeats emitted because they came from a new zone or network.
    pub fn escalated(&self) -> u64 {
        self.escalated
    }

    /// The open windows and counters, in (end, rule, credential) order: what a checkpoint
    /// keeps so that a restart folds and rolls up exactly as an uninterrupted run would.
    pub fn snapshot(&self) -> Result<SuppressorSnapshot, String> {
        Ok(SuppressorSnapshot {
            // One group: every window.
            windows: self.windows_by(|_| 0)?.remove(&0).unwrap_or_default(),
            watermark: self.watermark,
            suppressed: self.suppressed,
            escalated: self.escalated,
        })
    }

    /// The open windows grouped by what `group` says of their credential, each group in
    /// (end, rule, credential) order: for shares of the state by input partition (see
    /// [`crate::state::Home`]).
    pub fn windows_by<K: Ord>(
        &self,
        mut group: impl FnMut(&str) -> K,
    ) -> Result<std::collections::BTreeMap<K, Vec<OpenWindow>>, String> {
        let mut groups: std::collections::BTreeMap<K, Vec<OpenWindow>> =
            std::collections::BTreeMap::new();
        for (_, rule, credential) in &self.closing {
            let Some(open) = self.open.get(&Key(rule, credential)) else {
                continue;
            };
            groups
                .entry(group(credential))
                .or_default()
                .push(open.to_window()?);
        }
        Ok(groups)
    }

    /// Opens the given windows (from a share of another instance's state, or of this one's),
    /// except those already open here. Returns how many were opened.
    pub fn absorb(&mut self, windows: Vec<OpenWindow>) -> Result<usize, String> {
        let mut opened = 0;
        for window in windows {
            let (key, open) = Open::from_window(window)?;
            if self.open.contains_key(&key) {
                continue;
            }
            self.closing
                .insert((open.end, key.0.clone(), key.1.clone()));
            self.open.insert(key, Box::new(open));
            opened += 1;
        }
        Ok(opened)
    }

    /// Drops, without their roll-ups, the windows of credentials `gone` picks: their
    /// partition moved to another instance, which rolls them up.
    pub fn forget(&mut self, mut gone: impl FnMut(&str) -> bool) {
        self.open.retain(|(_, credential), _| !gone(credential));
        let open = &self.open;
        self.closing
            .retain(|(_, rule, credential)| open.contains_key(&Key(rule, credential)));
    }

    /// A suppressor as it was when `snapshot` was taken, keeping this one's limit.
    pub fn restore(&self, snapshot: SuppressorSnapshot) -> Result<Suppressor, String> {
        let mut suppressor = Suppressor {
            watermark: snapshot.watermark,
            suppressed: snapshot.suppressed,
            escalated: snapshot.escalated,
            max_open: self.max_open,
            ..Suppressor::default()
        };
        suppressor.absorb(snapshot.windows)?;
        Ok(suppressor)
    }

    fn close(&mut self, rule: String, credential: String, out: &mut Vec<Alert>) {
        if let Some(open) = self.open.remove(&(rule, credential)) {
            if open.count > 1 {
                out.push(open.first.update(open.count, open.last_time));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Activity;
    use crate::config::Config;
    use crate::detect::Finding;
    use crate::event::{Event, Kind};
    use crate::rules::{RuleSet, RuleSource};

    fn alert(credential: &str, secs: i64) -> Alert {
        let text = "id = \"r\"\ntitle = \"T\"\ndescription = \"D\"\ndetector = \"zone_violation\"\nseverity = \"high\"\n";
        let rules = RuleSet::from_sources(
            vec![RuleSource {
                name: "r.toml".into(),
                text: text.into(),
                dir: None,
            }],
            &Config::builtin(),
        )
        .unwrap();
        let mut event = Event::new(Timestamp::from_secs(secs), Kind::Access, credential);
        event.event_id = format!("e{secs}");
        let finding = Finding {
            analysis: None,
            summary: "s".into(),
            expected: serde_json::json!({}),
            observed: serde_json::json!({}),
        };
        Alert::new(&rules.rules()[0], &event, None, finding)
    }

    fn alert_in(credential: &str, secs: i64, zone: Option<&str>) -> Alert {
        let mut alert = alert(credential, secs);
        if let Some(zone) = zone {
            alert.evidence.observed = serde_json::json!({ "zone": zone });
        }
        alert
    }

    proptest::proptest! {
        /// Folding first, and offering only what does not fold, emits and counts exactly what
        /// offering everything does.
        #[test]
        fn fold_then_offer_is_offer(
            steps in proptest::collection::vec(
                (0..2usize, 0i64..200, proptest::option::of(0..2usize)), 1..40),
        ) {
            let credentials = ["a", "b"];
            let zones = ["z1", "z2"];
            let (mut plain, mut folding) = (Suppressor::new(), Suppressor::new());
            let (mut plain_out, mut folding_out) = (Vec::new(), Vec::new());
            let window = Period::from_secs(60);
            for (credential, secs, zone) in steps {
                let credential = credentials[credential];
                let alert = alert_in(credential, secs, zone.map(|z| zones[z]));
                let ts = Timestamp::from_secs(secs);
                plain.advance(ts, &mut plain_out);
                plain.offer(alert.clone(), ts, window, &mut plain_out);
                folding.advance(ts, &mut folding_out);
                if !folding.fold(&alert.rule, credential, ts, alert.time, place(&alert), window) {
                    folding.offer(alert, ts, window, &mut folding_out);
                }
            }
            plain.finish(&mut plain_out);
            folding.finish(&mut folding_out);
            let keys = |out: &[Alert]| out.iter().map(|a| (a.id.clone(), a.count, a.time)).collect::<Vec<_>>();
            proptest::prop_assert_eq!(keys(&plain_out), keys(&folding_out));
            proptest::prop_assert_eq!(plain.suppressed(), folding.suppressed());
            proptest::prop_assert_eq!(plain.escalated(), folding.escalated());
        }
    }

    fn offer(s: &mut Suppressor, credential: &str, secs: i64, out: &mut Vec<Alert>) {
        s.advance(Timestamp::from_secs(secs), out);
        s.offer(
            alert(credential, secs),
            Timestamp::from_secs(secs),
            Period::from_secs(60),
            out,
        );
    }

    #[test]
    fn repeats_fold_into_one_update_when_the_window_closes() {
        let mut s = Suppressor::new();
        let mut out = Vec::new();
        offer(&mut s, "k", 0, &mut out);
        offer(&mut s, "k", 10, &mut out);
        offer(&mut s, "k", 20, &mut out);
        offer(&mut s, "other", 30, &mut out);
        assert_eq!(out.len(), 2, "one alert per credential so far");
        assert_eq!(s.suppressed(), 2);
        out.clear();
        s.advance(Timestamp::from_secs(61), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].activity, Activity::Update);
        assert_eq!(out[0].count, 3);
        assert_eq!(
            out[0].time, 20_000,
            "an update carries the last occurrence's time"
        );
        assert_eq!(out[0].finding_info.first_seen_time, 0);
        out.clear();
        s.finish(&mut out);
        assert!(out.is_empty(), "a window with one alert needs no roll-up");
    }

    #[test]
    fn a_repeat_after_the_window_is_a_new_alert() {
        let mut s = Suppressor::new();
        let mut out = Vec::new();
        offer(&mut s, "k", 0, &mut out);
        offer(&mut s, "k", 90, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|a| a.activity == Activity::Create));
        assert_ne!(out[0].id, out[1].id);
    }

    #[test]
    fn a_repeat_from_a_new_network_escalates() {
        let mut s = Suppressor::new();
        let mut out = Vec::new();
        let from = |credential: &str, secs: i64, network: &str| {
            let mut alert = alert(credential, secs);
            alert.evidence.observed = serde_json::json!({"zone": "prod", "network": network});
            alert
        };
        for (secs, network) in [
            (0, "10.0.1.0/24"),
            (10, "10.0.1.0/24"),
            (20, "203.0.113.0/24"),
            (30, "203.0.113.0/24"),
        ] {
            s.advance(Timestamp::from_secs(secs), &mut out);
            s.offer(
                from("k", secs, network),
                Timestamp::from_secs(secs),
                Period::from_secs(60),
                &mut out,
            );
        }
        let times: Vec<i64> = out.iter().map(|a| a.time).collect();
        assert_eq!(
            times,
            vec![0, 20_000],
            "the first alert and the first one from the new network"
        );
        assert_eq!((s.suppressed(), s.escalated()), (2, 1));
    }

    #[test]
    fn a_restored_suppressor_folds_and_rolls_up_as_the_original_would() {
        let mut original = Suppressor::new();
        let mut out = Vec::new();
        offer(&mut original, "k", 0, &mut out);
        offer(&mut original, "k", 10, &mut out);
        offer(&mut original, "other", 20, &mut out);
        let mut restored = Suppressor::new()
            .restore(original.snapshot().unwrap())
            .unwrap();
        assert_eq!(restored.snapshot().unwrap(), original.snapshot().unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for s in [(&mut original, &mut a), (&mut restored, &mut b)] {
            offer(s.0, "k", 30, s.1);
            s.0.advance(Timestamp::from_secs(200), s.1);
        }
        assert_eq!(
            a.len(),
            1,
            "k's roll-up; other's window held one alert: {a:?}"
        );
        assert_eq!(a, b);
        assert_eq!(a[0].count, 3);
    }

    #[test]
    fn past_the_limit_the_earliest_ending_window_closes_early_with_its_roll_up() {
        let mut s = Suppressor::new().with_limit(2);
        let mut out = Vec::new();
        offer(&mut s, "a", 0, &mut out);
        offer(&mut s, "a", 1, &mut out);
        offer(&mut s, "b", 2, &mut out);
        out.clear();
        offer(&mut s, "c", 3, &mut out);
        assert_eq!(s.take_closed_early(), 1);
        assert_eq!(out.len(), 2, "a's roll-up, then c's alert: {out:?}");
        assert_eq!((out[0].credential.as_str(), out[0].count), ("a", 2));
        assert_eq!(out[0].activity, Activity::Update);
        assert_eq!(out[1].credential, "c");
    }

    #[test]
    fn a_zero_window_suppresses_nothing() {
        let mut s = Suppressor::new();
        let mut out = Vec::new();
        for secs in 0..3 {
            s.offer(
                alert("k", secs),
                Timestamp::from_secs(secs),
                Period::ZERO,
                &mut out,
            );
        }
        assert_eq!(out.len(), 3);
    }
}
