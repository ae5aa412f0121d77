//! Respond: ask a revocation broker to kill credentials that rules with `action = "revoke"`
//! flagged, safely enough that a security team dares to turn it on.
//!
//! [`Responder::decide`] runs on the engine's thread for every alert: guards first (only new
//! alerts of revoke rules, at or above `min_severity`, never a protected credential, never
//! more than the rate limit; dry-run records instead of sending), then the decision goes to the
//! durable [`Outbox`] (synced before any attempt) and to a worker thread that posts it with
//! retries. A confirmed revocation comes back through [`Responder::confirmed`] so the caller
//! can mark the credential revoked in state; later use then fires `use_after_revoke`.
//!
//! Backpressure: decided revocations wait in memory for the worker, at most
//! `max_queued` of them. The input loops ask [`Responder::backpressure`] before taking more
//! input and stop consuming while it says so (`run` pauses its Kafka partitions and keeps
//! polling the group, `replay` waits), so a broker that is slow or down slows consumption
//! instead of growing a queue; nothing is dropped, and with `max_attempts` unset (the default)
//! the worker keeps retrying until the broker is back.
//!
//! When the rate limit trips, revoking stops for the rest of the run (a mass revocation is far
//! more likely a detection bug or an attack on credwatch than a real mass compromise), a
//! critical alert says so, and alerting goes on.

mod outbox;
pub mod receiver;
pub mod signature;
mod webhook;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use outbox::Outbox;
pub use webhook::{Attempt, Outcome, WebhookClient};

use crate::alerts::{Activity, Alert, Evidence};
use crate::config::WebhookConfig;
use crate::engine::Engine;
use crate::event::Event;
use crate::rules::{Action, Severity};
use crate::time::Timestamp;

/// The JSON body posted to the broker (field order is the JSON order).
#[derive(Debug, Clone, Serialize)]
pub struct RevocationRequest<'a> {
    /// The alert id: the broker drops a request whose key it has seen.
    pub idempotency_key: &'a str,
    pub credential: &'a str,
    pub principal: Option<&'a str>,
    pub rule: &'a str,
    pub severity: Severity,
    pub reason: &'a str,
    pub detected_at: &'a str,
    pub event: &'a Event,
    pub evidence: &'a Evidence,
}

/// Counters for everything decided, sent, refused or held back.
#[derive(Debug, Default)]
pub struct RespondStats {
    pub decided: AtomicU64,
    pub delivered: AtomicU64,
    pub refused: AtomicU64,
    pub pending: AtomicU64,
    /// Decided and not yet finished (delivered, refused or left pending): the in-memory queue.
    pub queued: AtomicU64,
    /// Times input consumption paused because `queued` reached `max_queued`.
    pub backpressure_pauses: AtomicU64,
    pub attempts: AtomicU64,
    pub dry_run: AtomicU64,
    pub protected: AtomicU64,
    pub below_severity: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl RespondStats {
    pub fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "revocations: {} decided, {} delivered, {} refused, {} pending in the outbox, {} attempts, input paused {} times for a full queue; held back: {} dry-run, {} protected, {} below min severity, {} over the rate limit\n",
            get(&self.decided),
            get(&self.delivered),
            get(&self.refused),
            get(&self.pending),
            get(&self.attempts),
            get(&self.backpressure_pauses),
            get(&self.dry_run),
            get(&self.protected),
            get(&self.below_severity),
            get(&self.rate_limited)
        )
    }
}

struct Job {
    key: String,
    credential: String,
    at: Timestamp,
    body: Vec<u8>,
}

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("cannot open the outbox {path}: {source}")]
    Outbox {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the webhook client: {0}")]
    Client(reqwest::Error),
}

/// Decides revocations and hands them to the delivery worker.
pub struct Responder {
    config: WebhookConfig,
    outbox: Outbox,
    stats: Arc<RespondStats>,
    jobs: Option<Sender<Job>>,
    confirmations: Receiver<(String, Timestamp)>,
    worker: Option<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    recent: VecDeque<Timestamp>,
    tripped: bool,
    /// Every key this responder queued: the outbox's pending ones resent at start, then each
    /// decided. The outbox alone cannot tell a decision already delivered in this run (its
    /// file is gone) from a new one, so a replay after a crash that decides again what the
    /// restart just resent would send it twice.
    queued_keys: HashSet<String>,
}

impl Responder {
    /// Opens the outbox and starts the worker; revocations left by a previous run are queued
    /// first.
    pub fn start(config: WebhookConfig) -> Result<Responder, RespondError> {
        let outbox = Outbox::open(&config.outbox).map_err(|source| RespondError::Outbox {
            path: config.outbox.display().to_string(),
            source,
        })?;
        let client = WebhookClient::new(&config).map_err(RespondError::Client)?;
        let stats = Arc::new(RespondStats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let (jobs, queue) = mpsc::channel::<Job>();
        let (confirm, confirmations) = mpsc::channel();
        let pending = outbox.pending().map_err(|source| RespondError::Outbox {
            path: config.outbox.display().to_string(),
            source,
        })?;
        // Every job queued counts in stats.queued until the worker has finished it.
        let mut queued_keys = HashSet::new();
        for (key, body) in pending {
            queued_keys.insert(key.clone());
            let (credential, at) = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .map(|v| {
                    let credential = v["credential"].as_str().unwrap_or_default().to_owned();
                    let at = v["event"]["ts"]
                        .as_str()
                        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
                        .unwrap_or(Timestamp::from_micros(0));
                    (credential, at)
                })
                .unwrap_or((String::new(), Timestamp::from_micros(0)));
            tracing::info!(%key, "Resending a revocation left in the outbox.");
            stats.queued.fetch_add(1, Ordering::SeqCst);
            let _ = jobs.send(Job {
                key,
                credential,
                at,
                body,
            });
        }
        let worker = {
            let (outbox, stats, stopping) =
                (outbox.clone(), Arc::clone(&stats), Arc::clone(&stopping));
            std::thread::Builder::new()
                .name("credwatch-respond".into())
                .spawn(move || {
                    for job in queue {
                        let stop = || stopping.load(Ordering::Relaxed);
                        let outcome = client.deliver(&job.key, &job.body, &stop);
                        match &outcome {
                            Outcome::Delivered { attempts } => {
                                stats.attempts.fetch_add(u64::from(*attempts), Ordering::Relaxed);
                                stats.delivered.fetch_add(1, Ordering::Relaxed);
                                if let Err(error) = outbox.remove(&job.key) {
                                    tracing::error!(key = %job.key, %error, "Cannot remove a delivered revocation from the outbox.");
                                }
                                let _ = confirm.send((job.credential.clone(), job.at));
                            }
                            Outcome::Refused { attempts, reason } => {
                                stats.attempts.fetch_add(u64::from(*attempts), Ordering::Relaxed);
                                stats.refused.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(key = %job.key, %reason, "Revocation refused by the broker; moved to outbox/refused.");
                                if let Err(error) = outbox.refuse(&job.key, reason) {
                                    tracing::error!(key = %job.key, %error, "Cannot move a refused revocation aside.");
                                }
                            }
                            Outcome::Pending { attempts, reason } => {
                                stats.attempts.fetch_add(u64::from(*attempts), Ordering::Relaxed);
                                stats.pending.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(key = %job.key, %reason, "Revocation not delivered; kept in the outbox for the next start.");
                            }
                        }
                        stats.queued.fetch_sub(1, Ordering::SeqCst);
                    }
                })
                .map_err(|e| RespondError::Outbox {
                    path: "worker thread".into(),
                    source: e,
                })?
        };
        Ok(Responder {
            config,
            outbox,
            stats,
            jobs: Some(jobs),
            confirmations,
            worker: Some(worker),
            stopping,
            recent: VecDeque::new(),
            tripped: false,
            queued_keys,
        })
    }

    pub fn stats(&self) -> &RespondStats {
        &self.stats
    }

    /// Decides on one alert; a critical alert about the rate limit may be appended to `out`.
    pub fn decide(&mut self, alert: &Alert, out: &mut Vec<Alert>) {
        if alert.action != Action::Revoke || alert.activity != Activity::Create {
            return;
        }
        if alert.severity < self.config.min_severity {
            self.stats.below_severity.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.config.is_protected(&alert.credential) {
            self.stats.protected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(credential = %alert.credential, alert = %alert.id, "Protected credential: not revoked.");
            return;
        }
        if self.tripped {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let at = alert.evidence.event.ts;
        if let Some(limit) = self.config.rate_limit {
            while self
                .recent
                .front()
                .is_some_and(|first| at.since(*first) >= limit.per)
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= limit.max as usize {
                self.tripped = true;
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                tracing::error!(max = limit.max, per = %limit.per, "Revocation rate limit reached: revoking stops.");
                out.push(alert.system(
                    "revocation-rate-limit",
                    "Automatic revocation stopped: rate limit reached",
                    Severity::Critical,
                    format!(
                        "more than {} revocations within {}; revoking stops until credwatch restarts, alerts go on (last decision: {} for {})",
                        limit.max, limit.per, alert.rule, alert.credential
                    ),
                ));
                return;
            }
            self.recent.push_back(at);
        }
        if !self.config.dry_run && self.queued_keys.contains(&alert.id) {
            return; // Already decided or resent by this responder (a replay of the same input).
        }
        let request = RevocationRequest {
            idempotency_key: &alert.id,
            credential: &alert.credential,
            principal: alert
                .resources
                .first()
                .and_then(|r| r.owner.as_ref())
                .map(|o| o.name.as_str()),
            rule: &alert.rule,
            severity: alert.severity,
            reason: &alert.summary,
            detected_at: &alert.time_dt,
            event: &alert.evidence.event,
            evidence: &alert.evidence,
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "Cannot serialize a revocation request.");
                return;
            }
        };
        if self.config.dry_run {
            self.stats.dry_run.fetch_add(1, Ordering::Relaxed);
            tracing::info!(credential = %alert.credential, alert = %alert.id, "Dry run: revocation recorded, not sent.");
            if let Err(error) = append_dry_run(&self.config.outbox, &body) {
                tracing::error!(%error, "Cannot record a dry-run revocation.");
            }
            return;
        }
        match self.outbox.put(&alert.id, &body) {
            Ok(false) => return, // Already decided and pending (a replay of the same input).
            Ok(true) => {}
            Err(error) => {
                tracing::error!(%error, key = %alert.id, "Cannot write the outbox: revocation not sent.");
                return;
            }
        }
        self.stats.decided.fetch_add(1, Ordering::Relaxed);
        self.queued_keys.insert(alert.id.clone());
        if let Some(jobs) = &self.jobs {
            self.stats.queued.fetch_add(1, Ordering::SeqCst);
            let _ = jobs.send(Job {
                key: alert.id.clone(),
                credential: alert.credential.clone(),
                at,
                body,
            });
        }
    }

    /// Revocations decided and not yet finished by the worker.
    pub fn queued(&self) -> u64 {
        self.stats.queued.load(Ordering::SeqCst)
    }

    /// Revocations that can still be queued before [`Responder::backpressure`] holds.
    pub fn room(&self) -> u64 {
        (self.config.max_queued as u64).saturating_sub(self.queued())
    }

    /// Whether input should stop (or stay stopped, when `paused`) for the worker to catch
    /// up: from `max_queued` waiting on, until the queue has drained to half of it. A pause
    /// and a resume (a change from `paused`) are counted and logged here.
    pub fn backpressure(&self, paused: bool) -> bool {
        let queued = self.queued();
        let max = self.config.max_queued as u64;
        let hold = if paused {
            queued > max / 2
        } else {
            queued >= max
        };
        if hold && !paused {
            self.stats
                .backpressure_pauses
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                queued,
                max_queued = max,
                "Revocation broker behind: input paused until the queue drains."
            );
        } else if paused && !hold {
            tracing::info!(queued, "Revocation queue drained: input resumes.");
        }
        hold
    }

    /// Blocks while [`Responder::backpressure`] holds or until `stop` is set: the
    /// backpressure of a caller that has nothing else to do meanwhile (replay).
    pub fn wait_for_room(&self, stop: Option<&AtomicBool>) {
        let mut paused = self.backpressure(false);
        while paused && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            std::thread::sleep(Duration::from_millis(10));
            paused = self.backpressure(true);
        }
    }

    /// The responder's step after the engine raised `alerts` for one event: decides on each
    /// (alerts the guards raise are appended), then feeds revocations the broker confirmed back
    /// into `engine` as revoke events (whatever they raise is appended too).
    pub fn respond(&mut self, engine: &mut Engine, alerts: &mut Vec<Alert>) {
        let mut extra = Vec::new();
        for alert in alerts.iter() {
            self.decide(alert, &mut extra);
        }
        alerts.append(&mut extra);
        for (credential, at) in self.confirmed() {
            engine.process(&confirmation_event(&credential, at), alerts);
        }
    }

    /// Revocations the broker confirmed since the last call: (credential, decision time).
    pub fn confirmed(&self) -> Vec<(String, Timestamp)> {
        self.confirmations.try_iter().collect()
    }

    /// Waits up to `wait` for queued deliveries, then stops the worker; anything undelivered
    /// stays in the outbox.
    pub fn finish(mut self, wait: Duration) -> Arc<RespondStats> {
        let deadline = Instant::now() + wait;
        while self.queued() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stopping.store(true, Ordering::Relaxed);
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        Arc::clone(&self.stats)
    }
}

fn append_dry_run(outbox: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(outbox.join("dry-run.jsonl"))?;
    file.write_all(body)?;
    file.write_all(b"\n")
}

/// A revoke event for a confirmed revocation, for the engine: later use of the credential is
/// then use after revoke.
pub fn confirmation_event(credential: &str, at: Timestamp) -> Event {
    let mut event = Event::new(at, crate::event::Kind::Revoke, credential);
    event.principal = Some("credwatch".into());
    event.event_id = format!("credwatch-revocation:{credential}:{}", at.micros());
    event
}
