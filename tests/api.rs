//! The HTTP API of `credwatch run`, driven over loopback against a real broker: leak reports
//! posted over HTTP reach detection, GitHub signatures are checked, /metrics is Prometheus
//! text whose counters match what was sent, and errors are clear JSON 4xx.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::blocking::Client;
use sha2::Sha256;

use crate::util::{credwatch, success};

const TOKEN: &str = "api-token-0123456789abcdef";
const GITHUB_SECRET: &str = "github-secret-0123456789";

/// The test's stand-in for GitHub's secret scanning signing key.
fn partner_signer() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[42u8; 32]).unwrap()
}

/// GitHub's public keys document, as served at /meta/public_keys/secret_scanning.
fn partner_keys_document() -> String {
    use p256::pkcs8::EncodePublicKey;
    let pem = partner_signer()
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    serde_json::json!({"public_keys": [{"key_identifier": "test-key-1", "key": pem, "is_current": true}]})
        .to_string()
}

fn partner_signature(body: &[u8]) -> String {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature = partner_signer().sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn send(brokers: &str, topic: &str, dir: &Path, lines: &[&str]) {
    let path = dir.join(format!("{}.jsonl", unique("batch")));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    success(
        &credwatch()
            .args([
                "send",
                "--brokers",
                brokers,
                "--partitions",
                "1",
                "--topic",
                topic,
            ])
            .arg(&path)
            .output()
            .unwrap(),
    );
}

fn start(brokers: &str, dir: &Path, events: &str, leaks: &str) -> Running {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(dir.join("github"), GITHUB_SECRET).unwrap();
    std::fs::write(dir.join("github-keys.json"), partner_keys_document()).unwrap();
    let config = format!(
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{}\"\ncommit_interval = \"200ms\"\n\n[[kafka.inputs]]\ntopic = \"{events}\"\n\n[[kafka.inputs]]\ntopic = \"{leaks}\"\n\n[kafka.properties]\n\"topic.metadata.refresh.interval.ms\" = \"1000\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\ngithub_secret_file = \"github\"\ngithub_partner_keys_file = \"github-keys.json\"\nleaks_topic = \"{leaks}\"\nmax_body_bytes = 4096\n",
        unique("group")
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
        .args(["run", "--console", "none", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{}/readyz", running.base)).send() {
            if response.status().is_success() {
                return running;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("credwatch run did not become ready");
}

/// `/metrics` parsed: every sample line is `name{labels} value`.
pub(crate) fn metrics(client: &Client, base: &str) -> BTreeMap<String, f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "bad comment: {line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        if let Some(labels) = name.strip_prefix(metric) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        samples.insert(name.to_owned(), value);
    }
    samples
}

fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn leak_reports_over_http_reach_detection_and_the_api_reports_state_and_metrics() {
    let Ok(brokers) = std::env::var("CREDWATCH_TEST_BROKERS") else {
        println!(
            "skipped: CREDWATCH_TEST_BROKERS is not set (scripts/test starts a broker and sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (events, leaks) = (unique("events"), unique("leaks"));
    send(
        &brokers,
        &events,
        dir.path(),
        &[
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"AKIAHTTP","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"AKIAHTTP","source_ip":"10.0.1.5","endpoint":"s3:GetObject"}"#,
        ],
    );
    send(&brokers, &leaks, dir.path(), &[]);
    let running = start(&brokers, dir.path(), &events, &leaks);
    let client = Client::new();
    let base = &running.base;
    assert!(wait_for(|| metrics(&client, base)
        .get("credwatch_messages_total")
        .copied()
        == Some(2.0)));

    // Authentication and errors.
    let alerts_url = format!("{base}/v1/alerts");
    assert_eq!(
        client.get(&alerts_url).send().unwrap().status().as_u16(),
        401
    );
    let wrong = client.get(&alerts_url).bearer_auth("nope").send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.text().unwrap().contains("wrong bearer token"));
    let leaks_url = format!("{base}/v1/leaks");
    let huge = client
        .post(&leaks_url)
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 10_000])
        .send()
        .unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let malformed = client
        .post(&leaks_url)
        .bearer_auth(TOKEN)
        .body("{\"time\":")
        .send()
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let message: serde_json::Value = serde_json::from_str(&malformed.text().unwrap()).unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("invalid leak report"),
        "{message}"
    );

    // A GitHub delivery with a bad signature is refused; a good one is accepted.
    let hook = r#"{"action":"created","alert":{"number":3,"secret_type":"aws_access_key_id","secret":"AKIAGITHUBEXAMPLE123","html_url":"https://github.com/o/r/security/secret-scanning/3","created_at":"2026-03-01T00:02:00Z"},"repository":{"full_name":"o/r"}}"#;
    let bad = client
        .post(&leaks_url)
        .header("X-GitHub-Event", "secret_scanning_alert")
        .header("X-Hub-Signature-256", "sha256=00")
        .body(hook)
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let mut mac = Hmac::<Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(hook.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let good = client
        .post(&leaks_url)
        .header("X-GitHub-Event", "secret_scanning_alert")
        .header("X-Hub-Signature-256", format!("sha256={signature}"))
        .body(hook)
        .send()
        .unwrap();
    assert_eq!(good.status().as_u16(), 202);

    // A GitHub partner-program delivery: ECDSA P-256 over the body with GitHub's key.
    let delivery = r#"[{"token":"AKIAPARTNEREXAMPLE01","type":"aws_access_key_id","url":"https://github.com/o/r/blob/main/deploy.sh","source":"content"}]"#;
    let deliver = |key: &str, signed: &[u8]| {
        client
            .post(&leaks_url)
            .header("Github-Public-Key-Identifier", key)
            .header("Github-Public-Key-Signature", partner_signature(signed))
            .body(delivery)
            .send()
            .unwrap()
    };
    let forged = deliver("test-key-1", b"[]");
    assert_eq!(forged.status().as_u16(), 401);
    assert!(forged.text().unwrap().contains("does not match the body"));
    let unknown_key = deliver("retired-key", delivery.as_bytes());
    assert_eq!(unknown_key.status().as_u16(), 401);
    let verified = deliver("test-key-1", delivery.as_bytes());
    assert_eq!(
        verified.status().as_u16(),
        202,
        "{}",
        verified.text().unwrap_or_default()
    );

    // The leak report posted over HTTP makes the next use fire use_after_leak.
    let report = client
        .post(&leaks_url)
        .bearer_auth(TOKEN)
        .body(r#"{"time":"2026-03-01T00:05:00Z","credential":"AKIAHTTP","source":"trufflehog","url":"https://example.com/paste/9"}"#)
        .send()
        .unwrap();
    assert_eq!(
        report.status().as_u16(),
        202,
        "{}",
        report.text().unwrap_or_default()
    );
    // All three reports (GitHub webhook, GitHub partner, generic) arrive as leak events, labelled with their source format.
    let leaks_seen = |samples: &BTreeMap<String, f64>| -> f64 {
        samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with("credwatch_events_total{") && k.ends_with("kind=\"leak\"}")
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert!(wait_for(|| leaks_seen(&metrics(&client, base)) == 3.0));
    send(
        &brokers,
        &events,
        dir.path(),
        &[
            r#"{"ts":"2026-03-01T00:22:00Z","kind":"access","credential":"AKIAHTTP","source_ip":"10.0.1.5","endpoint":"s3:GetObject"}"#,
        ],
    );
    let mut found = serde_json::Value::Null;
    assert!(wait_for(|| {
        let response: serde_json::Value = client
            .get(format!(
                "{alerts_url}?rule=use-after-leak&credential=AKIAHTTP"
            ))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        found = response["alerts"][0].clone();
        !found.is_null()
    }));
    assert!(found["summary"]
        .as_str()
        .unwrap()
        .contains("17.0 minutes after it was reported leaked by trufflehog"));

    // The credential's state explains what is normal for it.
    let state: serde_json::Value = client
        .get(format!("{base}/v1/credentials/AKIAHTTP"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(state["allowed_zones"][0], "prod");
    assert_eq!(state["leak"]["source"], "trufflehog");
    assert_eq!(state["networks"][0]["network"], "10.0.1.0/24");
    assert_eq!(state["recent_alerts"][0]["rule"], "use-after-leak");
    let missing = client
        .get(format!("{base}/v1/credentials/NOPE"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // Counters match what was sent: 3 events on the events topic, 3 leaks via HTTP.
    assert!(wait_for(|| metrics(&client, base)
        .get("credwatch_messages_total")
        .copied()
        == Some(6.0)));
    let samples = metrics(&client, base);
    let events_total: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("credwatch_events_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(events_total, 6.0, "{samples:#?}");
    assert_eq!(
        samples["credwatch_events_total{format=\"native\",kind=\"access\"}"],
        2.0
    );
    assert_eq!(
        samples["credwatch_alerts_total{rule=\"use-after-leak\",severity=\"critical\"}"],
        1.0
    );
    assert_eq!(samples["credwatch_malformed_records_total"], 0.0);
    assert!(samples["credwatch_credentials_tracked"] >= 2.0);
    assert!(
        samples["process_resident_memory_bytes"] > 1e6,
        "resident memory is reported"
    );
    assert_eq!(samples["credwatch_consumption_paused"], 0.0);
    assert!(samples.contains_key("credwatch_processing_seconds{quantile=\"0.99\"}"));
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
