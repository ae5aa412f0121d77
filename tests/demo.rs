//! `credwatch demo`: every injected scenario caught, few alerts on benign credentials, and the
//! events it writes replay to the same alerts.

use crate::util::{credwatch, success};

#[test]
fn demo_catches_every_scenario_with_at_most_one_percent_benign_alerts() {
    let started = std::time::Instant::now();
    let out = success(&credwatch().args(["demo"]).output().unwrap());
    // Reported, not asserted: timing belongs in benchmarks, not tests.
    println!("demo took {:.1}s", started.elapsed().as_secs_f64());
    assert!(out.contains("caught 12 of 12 injected scenarios"), "{out}");
    assert!(!out.contains("MISSED"), "{out}");
    // The CI bot's exception and the canary key are in the table.
    assert!(
        out.lines()
            .any(|l| l.starts_with("terraform-ci-bot") && l.contains("active")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("pentest-2026-q1") && l.contains("expired")),
        "{out}"
    );
    assert!(
        out.contains("CI bot AKIACIBOTTERRAFORM01: 0 alerts"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("AKIACANARYCIDECOY001") && l.contains("yes")),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("benign credentials with alerts:"))
        .expect(&out);
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    let (alerted, total) = (numbers[0], numbers[1]);
    assert!(total >= 1000.0, "{line}");
    assert!(alerted / total <= 0.01, "{line}");
}

#[test]
fn demo_events_replay_to_the_demo_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("day.jsonl");
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, credwatch::demo::DEMO_CONFIG).unwrap();
    let exceptions = dir.path().join("exceptions");
    std::fs::create_dir(&exceptions).unwrap();
    std::fs::write(
        exceptions.join("demo.toml"),
        credwatch::demo::DEMO_EXCEPTIONS,
    )
    .unwrap();
    let demo_alerts = success(
        &credwatch()
            .args(["demo", "--credentials", "100", "--alerts", "--write-events"])
            .arg(&events)
            .output()
            .unwrap(),
    );
    let replay = |exceptions: Option<&std::path::Path>| {
        let mut command = credwatch();
        command.args(["replay", "--config"]).arg(&config);
        if let Some(dir) = exceptions {
            command.arg("--exceptions").arg(dir);
        }
        success(&command.arg(&events).output().unwrap())
    };
    let replayed = replay(Some(&exceptions));
    // Without its exception the Terraform bot storms new-endpoint alerts.
    let unexcepted = replay(None);
    let bot_alerts = unexcepted
        .lines()
        .filter(|l| l.contains("new-endpoint AKIACIBOTTERRAFORM01"))
        .count();
    assert!(bot_alerts >= 20, "{unexcepted}");
    assert!(!replayed.contains("AKIACIBOTTERRAFORM01"), "{replayed}");
    let demo_lines: Vec<&str> = demo_alerts
        .lines()
        .take_while(|l| !l.starts_with("credwatch demo:"))
        .collect();
    let replay_lines: Vec<&str> = replayed.lines().collect();
    assert!(!replay_lines.is_empty());
    assert_eq!(demo_lines, replay_lines);
}

#[test]
fn gen_is_deterministic_and_its_ground_truth_is_caught_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (events, truth, again) = (
        dir.path().join("a.jsonl"),
        dir.path().join("truth.jsonl"),
        dir.path().join("b.jsonl"),
    );
    for out in [&events, &again] {
        success(
            &credwatch()
                .args(["gen", "--seed", "3", "--credentials", "100", "--out"])
                .arg(out)
                .arg("--truth")
                .arg(&truth)
                .output()
                .unwrap(),
        );
    }
    assert_eq!(
        std::fs::read(&events).unwrap(),
        std::fs::read(&again).unwrap()
    );
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, credwatch::demo::DEMO_CONFIG).unwrap();
    let out = success(
        &credwatch()
            .args(["replay", "--output", "json", "--config"])
            .arg(&config)
            .arg(&events)
            .output()
            .unwrap(),
    );
    let alerts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scenarios: Vec<serde_json::Value> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scenarios.len(), 12);
    for scenario in &scenarios {
        let caught = alerts.iter().any(|a| {
            a["credential"] == scenario["credential"]
                && a["detector"] == scenario["detector"]
                && a["evidence"]["event"]["ts"].as_str() >= scenario["start"].as_str()
        });
        assert!(caught, "missed {scenario}");
    }
}
