//! Revocation: signed, idempotent, guarded webhook calls, against a real HTTP server on
//! loopback (the reference receiver of `credwatch::respond::receiver`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use credwatch::config::Config;
use credwatch::respond::receiver::{Receiver, RunningReceiver, Scripted};
use credwatch::respond::signature::{sign, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use credwatch::respond::{Outcome, WebhookClient};

use crate::util::{credwatch, stderr, success};

const SECRET: &str = "whsec_test_0123456789abcdef";

fn receiver() -> RunningReceiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    RunningReceiver::serve(listener, Receiver::new(SECRET.as_bytes(), 300)).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A loopback port nobody listens on (until a test binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Revocations waiting in an outbox directory.
fn pending_in(outbox: &Path) -> usize {
    std::fs::read_dir(outbox)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// A config with zones and a webhook section; `extra` goes into `[respond.webhook]`.
fn config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let text = format!(
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n\n[respond.webhook]\nurl = \"{url}\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\ntimeout = \"1s\"\nbackoff = \"50ms\"\nmax_backoff = \"200ms\"\n{extra}\n"
    );
    let path = dir.join("credwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A rules directory holding zone-violation with `action = "revoke"`.
fn revoke_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("zone-violation-revoke.toml"),
        "id = \"zone-violation-revoke\"\ntitle = \"Credential used outside its trust zones\"\ndescription = \"Revoke keys used outside their zones.\"\ndetector = \"zone_violation\"\nseverity = \"critical\"\naction = \"revoke\"\nsuppress = \"1h\"\n",
    )
    .unwrap();
    rules
}

/// `count` prod keys, each used once from the internet, one second apart.
fn misuse(dir: &Path, count: usize, protected: usize) -> PathBuf {
    let mut lines = String::new();
    for i in 0..count {
        let credential = if i < protected {
            format!("AKIAPROTECTED{i:07}")
        } else {
            format!("AKIAKEY{i:013}")
        };
        lines.push_str(&format!(
            "{{\"ts\":\"2026-03-01T00:00:00Z\",\"kind\":\"issue\",\"credential\":\"{credential}\",\"allowed_zones\":[\"prod\"]}}\n"
        ));
        let ts = credwatch::time::Timestamp::from_secs(1_772_323_260 + i as i64 / 20).to_rfc3339();
        lines.push_str(&format!(
            "{{\"ts\":\"{ts}\",\"kind\":\"access\",\"credential\":\"{credential}\",\"source_ip\":\"203.0.113.9\",\"endpoint\":\"s3:GetObject\"}}\n"
        ));
    }
    let path = dir.join("misuse.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// `credwatch replay --output OUTPUT --config CONFIG --rules RULES INPUT`.
fn replay(output: &str, config: &Path, rules: &Path, input: &Path) -> std::process::Output {
    credwatch()
        .args(["replay", "--output", output, "--config"])
        .arg(config)
        .arg("--rules")
        .arg(rules)
        .arg(input)
        .output()
        .unwrap()
}

#[test]
fn the_receiver_verifies_signatures_and_rejects_tampering_and_stale_timestamps() {
    let running = receiver();
    let client = reqwest::blocking::Client::new();
    let body = r#"{"idempotency_key":"k1","credential":"AKIA1"}"#;
    let post = |timestamp: i64, signed: &str, sent: &str| {
        client
            .post(running.url())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                sign(SECRET.as_bytes(), timestamp, signed.as_bytes()),
            )
            .header(IDEMPOTENCY_HEADER, "k1")
            .body(sent.to_owned())
            .send()
            .unwrap()
    };
    assert_eq!(post(now(), body, body).status().as_u16(), 200);
    let tampered = body.replace("AKIA1", "AKIA2");
    let refused = post(now(), body, &tampered);
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.text().unwrap().contains("signature does not match"));
    let stale = post(now() - 3600, body, body);
    assert_eq!(stale.status().as_u16(), 401);
    assert!(stale.text().unwrap().contains("more than 300s"));
    let again = post(now(), body, body);
    assert!(again.text().unwrap().contains("duplicate"));
    assert_eq!(running.receiver.revoked(), vec!["k1".to_owned()]);
}

fn client(url: &str, max_attempts: Option<u32>) -> WebhookClient {
    let dir = tempfile::tempdir().unwrap();
    let attempts = max_attempts.map_or(String::new(), |n| format!("max_attempts = {n}"));
    let path = config(dir.path(), url, &attempts);
    let config = Config::load(&path).unwrap();
    WebhookClient::new(config.webhook.as_ref().unwrap()).unwrap()
}

#[test]
fn server_errors_and_timeouts_are_retried_until_success_with_the_same_key() {
    let running = receiver();
    running.receiver.script([
        Scripted::Status(500),
        Scripted::Status(503),
        Scripted::Delay(Duration::from_millis(1500)), // over the 1 s client timeout
        Scripted::Status(429),
    ]);
    let body = br#"{"idempotency_key":"key-7"}"#;
    let outcome = client(&running.url(), None).deliver("key-7", body, &|| false);
    assert_eq!(outcome, Outcome::Delivered { attempts: 5 });
    let log = running.receiver.log();
    assert!(log.iter().all(|r| r.key == "key-7"), "{log:?}");
    assert_eq!(running.receiver.revoked(), vec!["key-7".to_owned()]);
}

#[test]
fn a_400_is_not_retried_and_exhausted_attempts_stay_pending() {
    let running = receiver();
    running.receiver.script([Scripted::Status(400)]);
    let outcome =
        client(&running.url(), None).deliver("key-8", br#"{"idempotency_key":"key-8"}"#, &|| false);
    assert!(
        matches!(outcome, Outcome::Refused { attempts: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(running.receiver.log().len(), 1);

    running.receiver.script([
        Scripted::Status(500),
        Scripted::Status(500),
        Scripted::Status(500),
    ]);
    let outcome = client(&running.url(), Some(3)).deliver(
        "key-9",
        br#"{"idempotency_key":"key-9"}"#,
        &|| false,
    );
    assert!(
        matches!(outcome, Outcome::Pending { attempts: 3, .. }),
        "{outcome:?}"
    );
}

#[test]
fn a_burst_is_capped_by_the_rate_limit_with_a_critical_alert_and_protected_keys_are_never_sent() {
    let running = receiver();
    let dir = tempfile::tempdir().unwrap();
    let rules = revoke_rules(dir.path());
    let input = misuse(dir.path(), 1000, 5);
    let config = config(
        dir.path(),
        &running.url(),
        "protected = [\"AKIAPROTECTED*\"]\nmin_severity = \"high\"\nrate_limit = { max = 10, per = \"1m\" }",
    );
    let output = replay("json", &config, &rules, &input);
    let out = success(&output);
    let alerts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let limit: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "revocation-rate-limit")
        .collect();
    assert_eq!(limit.len(), 1, "one critical alert when the limit trips");
    assert_eq!(limit[0]["severity"], "critical");
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a["rule"] == "zone-violation-revoke")
            .count(),
        1000,
        "alerting goes on"
    );
    let revoked = running.receiver.revoked();
    assert_eq!(revoked.len(), 10, "{}", stderr(&output));
    assert!(running
        .receiver
        .log()
        .iter()
        .all(|r| !r.body.contains("AKIAPROTECTED")));
    assert!(
        stderr(&output).contains("10 decided, 10 delivered"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("5 protected"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn with_the_broker_down_replay_waits_at_max_queued_and_delivers_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let rules = revoke_rules(dir.path());
    let input = misuse(dir.path(), 30, 0);
    // Nobody listens on this port for the first seconds.
    let port = free_port();
    let config = config(
        dir.path(),
        &format!("http://127.0.0.1:{port}/revoke"),
        "max_queued = 5",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
        .args(["replay", "--output", "json", "--config"])
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let outbox = dir.path().join("outbox");
    let pending = || pending_in(&outbox);
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_secs(3) {
        most = most.max(pending());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every decision is in the outbox before delivery, so the outbox is the queue.
    assert_eq!(most, 5, "the replay waits at max_queued decisions");
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let running = RunningReceiver::serve(listener, Receiver::new(SECRET.as_bytes(), 300)).unwrap();
    let output = child.wait_with_output().unwrap();
    let alerts = success(&output);
    assert_eq!(
        alerts
            .lines()
            .filter(|l| l.contains("\"zone-violation-revoke\""))
            .count(),
        30
    );
    assert_eq!(running.receiver.revoked().len(), 30, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("30 decided, 30 delivered"),
        "{}",
        stderr(&output)
    );
    let pauses: u32 = stderr(&output)
        .rsplit_once("input paused ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", stderr(&output)));
    assert!(pauses >= 1, "{}", stderr(&output));
    assert_eq!(pending(), 0);
}

#[test]
fn dry_run_sends_nothing_and_records_what_it_would_send() {
    let running = receiver();
    let dir = tempfile::tempdir().unwrap();
    let rules = revoke_rules(dir.path());
    let input = misuse(dir.path(), 3, 0);
    let config = config(dir.path(), &running.url(), "dry_run = true");
    let output = replay("none", &config, &rules, &input);
    success(&output);
    assert!(running.receiver.log().is_empty());
    let recorded = std::fs::read_to_string(dir.path().join("outbox/dry-run.jsonl")).unwrap();
    assert_eq!(recorded.lines().count(), 3);
    assert!(stderr(&output).contains("3 dry-run"), "{}", stderr(&output));
}

#[test]
fn killed_between_decision_and_delivery_the_restart_delivers_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = revoke_rules(dir.path());
    let input = misuse(dir.path(), 1, 0);
    // Nobody listens on this port yet: every attempt fails to connect.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/revoke");
    let config = config(dir.path(), &url, "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_credwatch"))
        .args(["replay", "--output", "none", "--config"])
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outbox = dir.path().join("outbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pending = || pending_in(&outbox);
    while pending() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pending(),
        1,
        "the decision is in the outbox before any delivery"
    );
    child.kill().unwrap(); // SIGKILL while it retries
    child.wait().unwrap();

    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let running = RunningReceiver::serve(listener, Receiver::new(SECRET.as_bytes(), 300)).unwrap();
    let output = replay("none", &config, &rules, &input);
    success(&output);
    let log = running.receiver.log();
    assert_eq!(log.len(), 1, "one request for one decision: {log:?}");
    assert_eq!(log[0].status, 200);
    assert_eq!(running.receiver.revoked().len(), 1);
    assert_eq!(pending(), 0, "delivered revocations leave the outbox");
}

/// The race behind the test above, forced: the restart delivers the revocation it found in
/// the outbox (and removes its file) before the replay decides the same one again.
#[test]
fn a_decision_the_restart_already_delivered_is_not_sent_again() {
    use credwatch::decode::{Decoder, NativeDecoder};
    use credwatch::engine::Engine;
    use credwatch::respond::Responder;
    use credwatch::rules::RuleSet;

    let dir = tempfile::tempdir().unwrap();
    let rules_dir = revoke_rules(dir.path());
    let decide = |url: &str| {
        let config = Config::load(&config(dir.path(), url, "")).unwrap();
        let rules = RuleSet::load_dir(&rules_dir, &config).unwrap();
        let responder = Responder::start(config.webhook.clone().unwrap()).unwrap();
        let mut engine = Engine::new(config, rules);
        let mut events = Vec::new();
        for line in [
            r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"AKIAX","allowed_zones":["prod"]}"#,
            r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"AKIAX","source_ip":"203.0.113.9"}"#,
        ] {
            NativeDecoder::new()
                .decode(line.as_bytes(), &mut events)
                .unwrap();
        }
        let mut alerts = Vec::new();
        for event in &events {
            engine.process(event, &mut alerts);
        }
        (responder, alerts)
    };
    let outbox = dir.path().join("outbox");

    // First run: nobody listens, so the decision stays in the outbox.
    let (mut first, alerts) = decide(&format!("http://127.0.0.1:{}/revoke", free_port()));
    for alert in &alerts {
        first.decide(alert, &mut Vec::new());
    }
    first.finish(Duration::from_millis(100));
    assert_eq!(pending_in(&outbox), 1, "left pending");

    // The restart resends it and it is delivered before the same decision comes again.
    let running = receiver();
    let (mut second, alerts) = decide(&running.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_in(&outbox) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pending_in(&outbox), 0, "the resend was delivered");
    for alert in &alerts {
        second.decide(alert, &mut Vec::new());
    }
    let stats = second.finish(Duration::from_secs(2));
    let log = running.receiver.log();
    assert_eq!(log.len(), 1, "one request for one decision: {log:?}");
    assert_eq!(running.receiver.revoked().len(), 1);
    assert_eq!(
        stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(pending_in(&outbox), 0);
}

#[test]
fn a_confirmed_revocation_marks_the_credential_revoked() {
    use credwatch::decode::{Decoder, NativeDecoder};
    use credwatch::engine::Engine;
    use credwatch::respond::{confirmation_event, Responder};
    use credwatch::rules::RuleSet;

    let running = receiver();
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = revoke_rules(dir.path());
    let config = Config::load(&config(dir.path(), &running.url(), "")).unwrap();
    let mut rules: Vec<_> = RuleSet::load_dir(&rules_dir, &config).unwrap().into_rules();
    rules.extend(
        RuleSet::builtin(&config)
            .unwrap()
            .into_rules()
            .into_iter()
            .filter(|r| r.id == "use-after-revoke"),
    );
    let rules = RuleSet::from_rules(rules);
    let mut responder = Responder::start(config.webhook.clone().unwrap()).unwrap();
    let mut engine = Engine::new(config, rules);
    let lines = [
        r#"{"ts":"2026-03-01T00:00:00Z","kind":"issue","credential":"AKIAX","allowed_zones":["prod"]}"#,
        r#"{"ts":"2026-03-01T00:01:00Z","kind":"access","credential":"AKIAX","source_ip":"203.0.113.9"}"#,
    ];
    let mut alerts = Vec::new();
    let mut events = Vec::new();
    for line in lines {
        NativeDecoder::new()
            .decode(line.as_bytes(), &mut events)
            .unwrap();
    }
    for event in &events {
        engine.process(event, &mut alerts);
    }
    let mut extra = Vec::new();
    for alert in &alerts {
        responder.decide(alert, &mut extra);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let confirmed = loop {
        let confirmed = responder.confirmed();
        if !confirmed.is_empty() || Instant::now() > deadline {
            break confirmed;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(confirmed.len(), 1);
    alerts.clear();
    for (credential, at) in confirmed {
        engine.process(&confirmation_event(&credential, at), &mut alerts);
    }
    let mut later = Vec::new();
    NativeDecoder::new()
        .decode(br#"{"ts":"2026-03-01T00:10:00Z","kind":"access","credential":"AKIAX","source_ip":"10.0.1.1"}"#, &mut later)
        .unwrap();
    engine.process(&later[0], &mut alerts);
    assert!(
        alerts.iter().any(|a| a.rule == "use-after-revoke"),
        "{alerts:?}"
    );
    responder.finish(Duration::from_secs(1));
}
