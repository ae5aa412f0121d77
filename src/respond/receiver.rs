//! A reference revocation receiver: verifies signatures and timestamps, deduplicates by
//! idempotency key, and records what it accepted. `examples/revocation_receiver.rs` serves it;
//! the tests drive credwatch against it over loopback. A broker's own endpoint should do the
//! same checks before revoking anything.
//!
//! For tests it can also misbehave on purpose: a script of responses (status codes, delays)
//! is played before it answers normally.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::signature::{verify, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// A scripted misbehaviour, played before normal answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    /// Answer with this status (and `Retry-After: 0` for 429/503).
    Status(u16),
    /// Wait this long before answering normally (to trigger client timeouts).
    Delay(Duration),
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub key: String,
    pub status: u16,
    pub body: String,
}

/// The receiver's state.
pub struct Receiver {
    secret: Vec<u8>,
    tolerance_secs: i64,
    script: Mutex<VecDeque<Scripted>>,
    /// Accepted keys and how often each arrived.
    seen: Mutex<HashMap<String, u32>>,
    log: Mutex<Vec<Received>>,
}

impl Receiver {
    pub fn new(secret: &[u8], tolerance_secs: i64) -> Arc<Receiver> {
        Arc::new(Receiver {
            secret: secret.to_vec(),
            tolerance_secs,
            script: Mutex::new(VecDeque::new()),
            seen: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        })
    }

    /// Queues misbehaviours for the next requests.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(steps);
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Received> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Distinct idempotency keys accepted (revocations carried out).
    pub fn revoked(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn record(&self, key: &str, status: StatusCode, body: &[u8]) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Received {
                key: key.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(body).into_owned(),
            });
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn revoke(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let key = header(IDEMPOTENCY_HEADER);
    let next = receiver
        .script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front();
    match next {
        Some(Scripted::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            receiver.record(&key, status, &body);
            let mut response = refuse(status, format!("scripted {code}"));
            if code == 429 || code == 503 {
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("0"));
            }
            return response;
        }
        Some(Scripted::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let Ok(timestamp) = header(TIMESTAMP_HEADER).parse::<i64>() else {
        receiver.record(&key, StatusCode::BAD_REQUEST, &body);
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("missing or bad {TIMESTAMP_HEADER}"),
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Err(error) = verify(
        &receiver.secret,
        timestamp,
        &body,
        &header(SIGNATURE_HEADER),
        now,
        receiver.tolerance_secs,
    ) {
        receiver.record(&key, StatusCode::UNAUTHORIZED, &body);
        return refuse(StatusCode::UNAUTHORIZED, error.to_string());
    }
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
    let body_key = parsed
        .as_ref()
        .ok()
        .and_then(|v| v["idempotency_key"].as_str().map(str::to_owned));
    if key.is_empty() || body_key.as_deref() != Some(key.as_str()) {
        receiver.record(&key, StatusCode::BAD_REQUEST, &body);
        return refuse(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key header missing or different from the body's".into(),
        );
    }
    let repeat = {
        let mut seen = receiver.seen.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.entry(key.clone()).or_insert(0);
        *count += 1;
        *count > 1
    };
    receiver.record(&key, StatusCode::OK, &body);
    let status = if repeat { "duplicate" } else { "revoked" };
    (
        StatusCode::OK,
        Json(json!({ "status": status, "idempotency_key": key })),
    )
        .into_response()
}

/// The receiver's routes: `POST /revoke`.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/revoke", post(revoke))
        .with_state(receiver)
}

/// A receiver serving on its own thread and runtime; dropped, it stops.
pub struct RunningReceiver {
    pub address: SocketAddr,
    pub receiver: Arc<Receiver>,
    _server: crate::api::BackgroundServer,
}

impl RunningReceiver {
    /// Serves `receiver` on `listener` (bind it to 127.0.0.1:0 for tests).
    pub fn serve(
        listener: std::net::TcpListener,
        receiver: Arc<Receiver>,
    ) -> std::io::Result<RunningReceiver> {
        let server = crate::api::BackgroundServer::start(
            listener,
            router(Arc::clone(&receiver)),
            "revocation-receiver",
        )?;
        Ok(RunningReceiver {
            address: server.address,
            receiver,
            _server: server,
        })
    }

    /// The URL to configure as `[respond.webhook] url`.
    pub fn url(&self) -> String {
        format!("http://{}/revoke", self.address)
    }
}
