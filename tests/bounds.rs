//! Bounded memory: a flood of distinct new credentials is evicted past `[state]
//! max_credentials` (with one alert when eviction starts), suppression windows stay under
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

#[test]
fn a_flood_of_new_credentials_is_evicted_and_known_ones_keep_alerting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("flood.jsonl");
    std::fs::write(&input, flood()).expect("write input");
    let config = dir.path().join("bounds.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let checkpoint = dir.path().join("checkpoint");
    let output = credwatch()
        .args(["replay", "--output", "json", "--config"])
        .arg(&config)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg(&input)
        .output()
        .expect("run replay");
    let alerts: Vec<serde_json::Value> = success(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an alert"))
        .collect();
    let of_rule = |rule: &str| {
        alerts
            .iter()
            .filter(|a| a["rule"] == rule && a["activity_id"] == 1)
            .collect::<Vec<_>>()
    };
    let eviction = of_rule("credwatch-state-eviction");
    assert_eq!(eviction.len(), 1, "one alert when eviction starts");
    assert_eq!(eviction[0]["detector"], "credwatch");
    assert_eq!(eviction[0]["evidence"]["expected"]["max_credentials"], 1000);
    let violations = of_rule("zone-violation");
    assert_eq!(
        violations
            .iter()
            .map(|a| a["credential"].as_str())
            .collect::<Vec<_>>(),
        vec![Some("AKIAKNOWN")],
        "the key in use was never evicted and still alerts"
    );
    let summary = stderr(&output);
    assert!(summary.contains("state bounds reached:"), "{summary}");

    let state = Checkpoint::read(&checkpoint)
        .expect("read")
        .expect("a checkpoint");
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
