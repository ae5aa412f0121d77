//! Bounded memory: a flood of distinct new credentials is evicted past `[state]
//! max_credentials` or `max_state_mib` (with one alert when eviction starts), suppression windows stay under
//! their bound, and credentials in use keep alerting meanwhile.

use std::fmt::Write as _;

use credwatch::checkpoint::Checkpoint;

use crate::util::{credwatch, stderr, success};

const CONFIG: &str = r#"
[learning]
min_events = 5
min_age = "1m"

[state]
max_credentials = 1000
max_suppression_windows = 100

[[zones]]
name = "prod"
cidrs = ["10.0.0.0/16"]
"#;

/// 20,000 never-seen credentials from the internet, a known key in steady use from prod
/// among them, and at the end that key used from the internet.
fn flood() -> String {
    let at =
        |second: i64| credwatch::time::Timestamp::from_secs(1_772_323_200 + second).to_rfc3339();
    let mut lines = String::new();
    let _ = writeln!(
        lines,
        r#"{{"ts":"{}","kind":"issue","credential":"AKIAKNOWN","owner":"svc","allowed_zones":["prod"]}}"#,
        at(0)
    );
    for i in 0..20_000i64 {
        let _ = writeln!(
            lines,
            r#"{{"ts":"{}","kind":"access","credential":"AKIAFLOOD{i:06}","source_ip":"198.51.100.{}","endpoint":"sts:GetCallerIdentity"}}"#,
            at(1 + i / 10),
            i % 250
        );
        if i % 20 == 0 {
            let _ = writeln!(
                lines,
                r#"{{"ts":"{}","kind":"access","credential":"AKIAKNOWN","source_ip":"10.0.1.5","endpoint":"s3:GetObject"}}"#,
                at(1 + i / 10)
            );
        }
    }
    let _ = writeln!(
        lines,
        r#"{{"ts":"{}","kind":"access","credential":"AKIAKNOWN","source_ip":"203.0.113.50","endpoint":"s3:GetObject"}}"#,
        at(2_001)
    );
    lines
}

/// Replays the flood under `config`; returns its alerts of the first activity by rule,
/// the replay's summary, and the final checkpoint.
fn replay_flood(config: &str) -> (Vec<serde_json::Value>, String, Checkpoint) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("flood.jsonl");
    std::fs::write(&input, flood()).expect("write input");
    let config_path = dir.path().join("bounds.toml");
    std::fs::write(&config_path, config).expect("write config");
    let checkpoint = dir.path().join("checkpoint");
    let output = credwatch()
        .args(["replay", "--output", "json", "--config"])
        .arg(&config_path)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg(&input)
        .output()
        .expect("run replay");
    let alerts: Vec<serde_json::Value> = success(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an alert"))
        .filter(|alert: &serde_json::Value| alert["activity_id"] == 1)
        .collect();
    let state = Checkpoint::read(&checkpoint)
        .expect("read")
        .expect("a checkpoint");
    (alerts, stderr(&output), state)
}

fn of_rule<'a>(alerts: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    alerts.iter().filter(|a| a["rule"] == rule).collect()
}

/// The key in use was never evicted and still raised its zone violation, alone.
fn assert_the_known_key_still_alerts(alerts: &[serde_json::Value]) {
    let violations = of_rule(alerts, "zone-violation");
    assert_eq!(
        violations
            .iter()
            .map(|a| a["credential"].as_str())
            .collect::<Vec<_>>(),
        vec![Some("AKIAKNOWN")],
        "the key in use was never evicted and still alerts"
    );
}

#[test]
fn a_flood_of_new_credentials_is_evicted_and_known_ones_keep_alerting() {
    let (alerts, summary, state) = replay_flood(CONFIG);
    let eviction = of_rule(&alerts, "credwatch-state-eviction");
    assert_eq!(eviction.len(), 1, "one alert when eviction starts");
    assert_eq!(eviction[0]["detector"], "credwatch");
    assert_eq!(eviction[0]["evidence"]["expected"]["max_credentials"], 1000);
    assert_the_known_key_still_alerts(&alerts);
    assert!(summary.contains("state bounds reached:"), "{summary}");

    let stats = &state.engine.stats;
    assert!(
        state.engine.store.credentials.len() <= 1000,
        "{} credentials tracked",
        state.engine.store.credentials.len()
    );
    assert!(stats.evicted >= 19_000, "{} evicted", stats.evicted);
    assert_eq!(stats.evicted_precious, 0);
    assert!(
        stats.windows_closed_early > 0,
        "the flood's unknown-credential alerts filled the windows"
    );
}

#[test]
fn past_the_state_bytes_bound_the_longest_idle_are_evicted() {
    // A count bound the flood never reaches, and 1 MiB of records, which about 3,000 of the
    // flood's credentials fill.
    let config = CONFIG
        .replace("max_credentials = 1000", "max_credentials = 1000000")
        .replace("[state]", "[state]\nmax_state_mib = 1");
    let (alerts, summary, state) = replay_flood(&config);
    let eviction = of_rule(&alerts, "credwatch-state-eviction");
    assert_eq!(eviction.len(), 1, "one alert when eviction starts");
    assert_eq!(
        eviction[0]["evidence"]["expected"]["max_state_bytes"],
        1 << 20
    );
    assert!(
        eviction[0]["evidence"]["observed"]["state_bytes"].as_u64() > Some(1 << 20),
        "{}",
        eviction[0]
    );
    assert!(
        eviction[0].to_string().contains("max_state_mib = 1"),
        "the alert names the bound: {}",
        eviction[0]
    );
    assert_the_known_key_still_alerts(&alerts);
    assert!(summary.contains("state bounds reached:"), "{summary}");

    // What the restored store counts is under the bound, and evictions kept it there.
    let store = credwatch::state::StateStore::new();
    let tracked = state.engine.store.credentials.len();
    store.restore(state.engine.store).expect("restore");
    assert!(
        store.approx_bytes() <= 1 << 20,
        "{} bytes of records for {tracked} credentials",
        store.approx_bytes()
    );
    assert!(
        (1_000..20_000).contains(&tracked),
        "{tracked} credentials tracked"
    );
    assert!(state.engine.stats.evicted > 10_000);
}
