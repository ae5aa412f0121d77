//! The operations surface of `credwatch run`: an HTTP server (loopback by default) beside the
//! stream loop.
//!
//! - `POST /v1/leaks`: a leak report (generic JSON with a bearer token, or a GitHub secret
//!   scanning webhook verified by `X-Hub-Signature-256`). It is decoded (raw secrets hashed),
//!   then produced as a native `leak` event to `[api] leaks_topic`, one of the input topics,
//!   so it takes the same path as any leak event from Kafka: durable, ordered, seen by every
//!   restart and by whichever instance owns the credential.
//! - `GET /v1/credentials/{id}`: the credential's state and its recent alerts.
//! - `GET /v1/alerts?since=&rule=&credential=&limit=`: recent alerts (a bounded ring).
//! - `GET /healthz`, `GET /readyz` (ready once partitions are assigned), `GET /metrics`.
//!
//! `/v1` needs `Authorization: Bearer <token>`; errors are JSON `{"error": ...}` with 400, 401,
//! 404, 413 or 503.

mod metrics;
mod server;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

pub use metrics::{new_latency_histogram, resident_bytes, Metrics};
pub use server::BackgroundServer;

use crate::alerts::{Alert, AlertSink, Producer};
use crate::config::{ApiConfig, Config};
use crate::decode::{Decoder, GithubSecretScanningDecoder, LeakReportDecoder};
use crate::state::StateStore;
use crate::time::Timestamp;

/// What the HTTP handlers share with the stream loop.
pub struct Shared {
    config: Arc<Config>,
    api: ApiConfig,
    store: Arc<StateStore>,
    producer: Option<Producer>,
    alerts: Mutex<VecDeque<Alert>>,
    metrics: Mutex<Metrics>,
    ready: AtomicBool,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        api: ApiConfig,
        store: Arc<StateStore>,
        producer: Option<Producer>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            api,
            store,
            producer,
            alerts: Mutex::new(VecDeque::new()),
            metrics: Mutex::new(Metrics::default()),
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn publish(&self, metrics: Metrics) {
        *self.metrics.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
    }

    fn remember(&self, alert: &Alert) {
        let mut ring = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() >= self.api.alerts_kept {
            ring.pop_front();
        }
        ring.push_back(alert.clone());
    }
}

/// The alert sink that keeps recent alerts for `GET /v1/alerts`.
pub struct RingSink(pub Arc<Shared>);

impl AlertSink for RingSink {
    fn emit(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.0.remember(alert);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refusal: status and message, rendered as `{"error": message}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)",
        )),
        Some(token) if constant_time_eq(token.as_bytes(), shared.api.token.expose()) => Ok(()),
        Some(_) => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
    }
}

/// The wall-clock time a report arrived at this edge (for reports that carry no time).
fn received_now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_micros(micros)
}

fn verify_github(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "missing X-Hub-Signature-256".into(),
            )
        })?;
    let tag = crate::decode::from_hex(signature)
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "malformed X-Hub-Signature-256"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Refusal(StatusCode::INTERNAL_SERVER_ERROR, "bad secret".into()))?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match the body",
        )
    })
}

async fn post_leak(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            return error(
                status,
                format!(
                    "{} (limit {} bytes)",
                    rejection.body_text(),
                    shared.api.max_body_bytes
                ),
            );
        }
    };
    let from_github = headers.contains_key("x-github-event");
    let from_partner_program =
        headers.contains_key(crate::decode::github_partner::SIGNATURE_HEADER);
    if from_partner_program {
        let Some(keys) = &shared.api.github_partner_keys else {
            return error(
                StatusCode::UNAUTHORIZED,
                "GitHub partner deliveries are not configured ([api] github_partner_keys_file)",
            );
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        if let Err(reason) = keys.verify(
            header(crate::decode::github_partner::KEY_IDENTIFIER_HEADER),
            header(crate::decode::github_partner::SIGNATURE_HEADER),
            &body,
        ) {
            tracing::warn!(%reason, "refused a GitHub partner delivery");
            return error(StatusCode::UNAUTHORIZED, reason);
        }
    } else if from_github {
        let Some(secret) = &shared.api.github_secret else {
            return error(
                StatusCode::UNAUTHORIZED,
                "GitHub deliveries are not configured ([api] github_secret_env)",
            );
        };
        if let Err(refusal) = verify_github(secret.expose(), &headers, &body) {
            return refusal.into_response();
        }
    } else if let Err(refusal) = authorized(&shared, &headers) {
        return refusal.into_response();
    }
    let mut events = Vec::new();
    let decoded = if from_partner_program {
        crate::decode::github_partner::decode(&body, &shared.config.secret_hasher, received_now())
            .map(|decoded| events = decoded)
            .map_err(crate::decode::DecodeError::new)
    } else if from_github {
        GithubSecretScanningDecoder::new(shared.config.secret_hasher.clone())
            .decode(&body, &mut events)
    } else {
        LeakReportDecoder::new(shared.config.secret_hasher.clone()).decode(&body, &mut events)
    };
    if let Err(reason) = decoded {
        return error(StatusCode::BAD_REQUEST, reason.reason);
    }
    let (Some(topic), Some(producer)) = (shared.api.leaks_topic.clone(), shared.producer.clone())
    else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no [api] leaks_topic configured to carry leak reports",
        );
    };
    let credentials: Vec<String> = events.iter().map(|e| e.credential.clone()).collect();
    let sent = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for event in &events {
            let line = serde_json::to_vec(event)?;
            producer.send(&topic, Some(event.credential.as_bytes()), &line, None)?;
        }
        producer.flush(Duration::from_secs(10))
    })
    .await;
    match sent {
        Ok(Ok(())) => {
            tracing::info!(
                reports = credentials.len(),
                "Leak reports accepted over HTTP."
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": credentials.len(), "credentials": credentials })),
            )
                .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot forward the report to Kafka: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("forwarding failed: {e}"),
        ),
    }
}

async fn get_credential(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refusal) = authorized(&shared, &headers) {
        return refusal.into_response();
    }
    let Some(mut view) = shared.store.view(&id, &shared.config) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no state for credential `{id}`"),
        );
    };
    let recent: Vec<Alert> = shared
        .alerts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|a| a.credential == id)
        .cloned()
        .collect();
    view["recent_alerts"] = json!(recent);
    Json(view).into_response()
}

#[derive(Deserialize)]
struct AlertQuery {
    since: Option<String>,
    rule: Option<String>,
    credential: Option<String>,
    limit: Option<usize>,
}

async fn get_alerts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refusal) = authorized(&shared, &headers) {
        return refusal.into_response();
    }
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let since = match query.since.as_deref().map(Timestamp::parse_rfc3339) {
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("since: {e}")),
        Some(Ok(ts)) => Some(ts.millis()),
        None => None,
    };
    let limit = query.limit.unwrap_or(100).min(shared.api.alerts_kept);
    let ring = shared.alerts.lock().unwrap_or_else(|p| p.into_inner());
    let selected: Vec<&Alert> = ring
        .iter()
        .rev()
        .filter(|a| since.is_none_or(|s| a.time >= s))
        .filter(|a| query.rule.as_deref().is_none_or(|r| a.rule == r))
        .filter(|a| {
            query
                .credential
                .as_deref()
                .is_none_or(|c| a.credential == c)
        })
        .take(limit)
        .collect();
    Json(json!({ "alerts": selected })).into_response()
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Relaxed) {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for a partition assignment",
        )
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut metrics = shared
        .metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Measured here, on a scrape, rather than on the stream loop's thread.
    metrics.credentials = shared.store.len();
    metrics.state_bytes = shared.store.approx_bytes();
    let text = metrics.render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.api.max_body_bytes;
    Router::new()
        .route("/v1/leaks", post(post_leak))
        .route("/v1/credentials/{id}", get(get_credential))
        .route("/v1/alerts", get(get_alerts))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}
