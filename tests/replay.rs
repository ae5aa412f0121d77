//! `credwatch replay`: exact alerts for a scenario, determinism, dead letters, hostile input.

use crate::util::{assert_golden, credwatch, repo, run_with_stdin, stderr, stdout, success};

fn scenario(output: &str) -> std::process::Output {
    credwatch()
        .args(["replay", "--config"])
        .arg(repo("tests/data/scenario.toml"))
        .args(["--output", output])
        .arg(repo("tests/data/scenario.jsonl"))
        .output()
        .expect("run credwatch")
}

#[test]
fn scenario_raises_exactly_the_expected_alerts() {
    assert_golden("scenario.txt", &success(&scenario("text")));
    assert_golden("scenario.jsonl", &success(&scenario("json")));
}

#[test]
fn json_output_is_byte_identical_across_runs() {
    let first = scenario("json");
    let second = scenario("json");
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn alerts_are_ocsf_detection_findings_with_evidence() {
    let out = success(&scenario("json"));
    let alerts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let leak = alerts
        .iter()
        .find(|a| a["rule"] == "use-after-leak" && a["activity_id"] == 1)
        .expect("use-after-leak alert");
    assert_eq!(leak["class_uid"], 2004);
    assert_eq!(leak["type_uid"], 200401);
    assert_eq!(leak["severity_id"], 5);
    assert_eq!(leak["credential"], "AKIAREPORTS000000001");
    assert_eq!(leak["resources"][0]["owner"]["name"], "reports-svc");
    assert_eq!(leak["evidence"]["observed"]["minutes_after_leak"], 17.0);
    assert_eq!(
        leak["evidence"]["expected"]["leak_source"],
        "github-secret-scanning"
    );
    assert_eq!(leak["evidence"]["event"]["source_ip"], "198.51.100.9");
    assert_eq!(leak["id"], leak["finding_info"]["uid"]);
    assert!(
        leak.get("anomaly_analyses").is_none(),
        "a fact, not a deviation from a baseline"
    );

    // Baseline detectors carry OCSF anomaly_analyses: the anomaly and the baseline.
    let network = alerts
        .iter()
        .find(|a| a["rule"] == "new-network")
        .expect("new-network alert");
    let analysis = &network["anomaly_analyses"][0];
    assert_eq!(
        analysis["analysis_targets"][0]["name"],
        "AKIAPAYMENTS00000001"
    );
    let anomaly = &analysis["anomalies"][0];
    assert_eq!(anomaly["observation_parameter"], "network");
    assert_eq!(anomaly["observation_type"], "Frequency Analysis");
    assert_eq!(anomaly["observed_pattern"], "UNSEEN");
    assert_eq!(anomaly["observations"][0]["value"], "203.0.113.0/24");
    let baseline = &analysis["baselines"][0];
    assert_eq!(baseline["observations"][0]["value"], "10.0.1.0/24");
    assert!(baseline["observations"][0]["count"].as_u64().unwrap() > 1);
    let violation = alerts
        .iter()
        .find(|a| a["rule"] == "zone-violation" && a["activity_id"] == 1)
        .expect("zone-violation alert");
    let analysis = &violation["anomaly_analyses"][0];
    assert_eq!(
        analysis["anomalies"][0]["observations"][0]["value"],
        "internet"
    );
    assert_eq!(analysis["baselines"][0]["observed_pattern"], "DECLARED");
    assert_eq!(analysis["baselines"][0]["observations"][0]["value"], "prod");
}

#[test]
fn malformed_lines_go_to_the_dead_letter_file_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let output = credwatch()
        .args(["replay", "--output", "none", "--config"])
        .arg(repo("tests/data/scenario.toml"))
        .arg("--dead-letter")
        .arg(&dead)
        .arg(repo("tests/data/scenario.jsonl"))
        .output()
        .unwrap();
    success(&output);
    assert!(
        stderr(&output).contains("malformed records: 3"),
        "{}",
        stderr(&output)
    );
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![17, 22, 26]);
    assert_eq!(letters[0]["record"], "this line is not JSON");
    assert!(letters[2]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown field `credentail`"));
}

#[test]
fn stdin_replay_matches_file_replay() {
    let input = std::fs::read(repo("tests/data/scenario.jsonl")).unwrap();
    let mut command = credwatch();
    command
        .args(["replay", "--output", "json", "--config"])
        .arg(repo("tests/data/scenario.toml"))
        .arg("-");
    let from_stdin = run_with_stdin(command, &input);
    let from_file = scenario("json");
    assert_eq!(success(&from_stdin), success(&from_file));
}

#[test]
fn random_bytes_on_stdin_are_counted_as_malformed_and_never_crash() {
    // What `head -c 1000000 /dev/urandom | credwatch replay -` does, with a fixed seed so a
    // failure can be reproduced; the real /dev/urandom is tried as well where it exists.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut seeded = Vec::with_capacity(1_000_000);
    while seeded.len() < 1_000_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        seeded.extend_from_slice(&state.to_le_bytes());
    }
    let mut inputs = vec![seeded];
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let mut random = vec![0u8; 1_000_000];
        file.read_exact(&mut random).unwrap();
        inputs.push(random);
    }
    for input in inputs {
        let mut command = credwatch();
        command.args(["replay", "-"]);
        let output = run_with_stdin(command, &input);
        let err = stderr(&output);
        assert!(output.status.success(), "exit {}: {err}", output.status);
        assert!(!err.contains("panicked"), "{err}");
        let malformed: u64 = err
            .lines()
            .find_map(|l| l.strip_prefix("malformed records: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no malformed count in: {err}"));
        assert!(
            malformed > 1000,
            "1 MB of noise has thousands of lines; got {malformed}"
        );
        assert!(
            stdout(&output).is_empty(),
            "noise raised alerts: {}",
            stdout(&output)
        );
    }
}

#[test]
fn a_missing_input_file_is_a_clear_error() {
    let output = credwatch()
        .args(["replay", "/nonexistent/events.jsonl"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/events.jsonl"),
        "{}",
        stderr(&output)
    );
}

fn replay_with_exceptions(exceptions: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payments.toml"), exceptions).unwrap();
    credwatch()
        .args(["replay", "--config"])
        .arg(repo("tests/data/scenario.toml"))
        .arg("--exceptions")
        .arg(dir.path())
        .arg(repo("tests/data/scenario.jsonl"))
        .output()
        .expect("run credwatch")
}

const PAYMENTS_EXCEPTION: &str = r#"
[[exceptions]]
id = "payments-tooling"
owner = "payments-team"
reason = "operators run ad-hoc tooling with the payments key"
expires = "EXPIRES"
rules = ["new-endpoint", "new-user-agent"]
credentials = ["AKIAPAYMENTS*"]
"#;

#[test]
fn an_exception_silences_its_scope_counts_it_and_stops_when_expired() {
    let unexcepted = success(&scenario("text"));
    let output =
        replay_with_exceptions(&PAYMENTS_EXCEPTION.replace("EXPIRES", "2027-01-01T00:00:00Z"));
    let alerts = success(&output);
    let summary = stderr(&output);
    let expected: Vec<&str> = unexcepted
        .lines()
        .filter(|line| {
            !(line.contains("AKIAPAYMENTS")
                && (line.contains("new-endpoint") || line.contains("new-user-agent")))
        })
        .collect();
    assert!(
        expected.len() + 3 == unexcepted.lines().count(),
        "{unexcepted}"
    );
    assert_eq!(alerts.lines().collect::<Vec<_>>(), expected);
    assert!(
        summary.contains("payments-tooling           3  active"),
        "{summary}"
    );

    // Expired before the payments key's misuse at 00:20: everything alerts as before, and the
    // summary says the exception expired.
    let output =
        replay_with_exceptions(&PAYMENTS_EXCEPTION.replace("EXPIRES", "2026-03-01T00:10:00Z"));
    assert_eq!(success(&output), unexcepted);
    let summary = stderr(&output);
    assert!(
        summary.contains("payments-tooling           0  expired"),
        "{summary}"
    );
}

#[test]
fn exceptions_are_validated_and_listed_by_rules_check() {
    let output = credwatch()
        .args(["rules", "check", "--config"])
        .arg(repo("examples/credwatch.toml"))
        .arg("--exceptions")
        .arg(repo("examples/exceptions"))
        .output()
        .unwrap();
    let listing = success(&output);
    assert!(listing.contains("1 exceptions (0 expired"), "{listing}");
    assert!(listing.contains("terraform-ci-bot"), "{listing}");
    assert!(listing.contains("owner platform-team"), "{listing}");
    let empty = tempfile::tempdir().unwrap();
    let output = credwatch()
        .args(["rules", "check", "--exceptions"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no exception files"),
        "{}",
        stderr(&output)
    );

    let output = replay_with_exceptions(
        &PAYMENTS_EXCEPTION
            .replace("EXPIRES", "2027-01-01T00:00:00Z")
            .replace("new-endpoint", "new-endpoints"),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(error.contains("payments.toml:7:"), "{error}");
    assert!(error.contains("unknown rule `new-endpoints`"), "{error}");
}

/// `--threads 2` decodes on a second thread, ahead of the engine; it must replay exactly as
/// `--threads 1` does: the same alerts, dead letters and summary, over an input of many
/// batches with every kind of line (blank, not JSON, too long, an array of records, an
/// unknown field) among a generated day's events.
#[test]
fn two_threads_replay_exactly_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("day.jsonl");
    success(
        &credwatch()
            .args(["gen", "--seed", "11", "--credentials", "100", "--out"])
            .arg(&generated)
            .output()
            .expect("run gen"),
    );
    let day = std::fs::read_to_string(&generated).unwrap();
    let mut lines: Vec<String> = day.lines().map(str::to_owned).collect();
    assert!(lines.len() > 100_000, "{} lines", lines.len());
    let array = format!("[{},{},{}]", lines[700], lines[701], lines[702]);
    lines.splice(700..703, [array]);
    lines.insert(
        1_500,
        r#"{"ts":"2026-03-01T00:00:00Z","kind":"access","credentail":"k"}"#.to_owned(),
    );
    lines.insert(900, format!(r#"{{"note":"{}"}}"#, "x".repeat(1 << 20)));
    lines.insert(500, "   ".to_owned());
    lines.insert(100, "this line is not JSON".to_owned());
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, credwatch::demo::DEMO_CONFIG).unwrap();

    let replay = |threads: &str| {
        let dead = dir.path().join(format!("dead-{threads}.jsonl"));
        let output = credwatch()
            .args([
                "replay",
                "--output",
                "json",
                "--threads",
                threads,
                "--dead-letter",
            ])
            .arg(&dead)
            .arg("--config")
            .arg(&config)
            .arg(&input)
            .output()
            .expect("run replay");
        let alerts = success(&output);
        // The first line ends with the time taken and the rate; the rest must agree.
        let summary = stderr(&output);
        let (first, rest) = summary.split_once('\n').unwrap();
        let counts = first.split(" in ").next().unwrap().to_owned();
        let dead = std::fs::read_to_string(&dead).unwrap();
        (alerts, counts + "\n" + rest, dead)
    };
    let (one, two) = (replay("1"), replay("2"));
    assert!(
        one.0.lines().count() > 10,
        "the day raises alerts: {}",
        one.0
    );
    assert_eq!(one.2.lines().count(), 3, "three bad records: {}", one.1);
    assert!(one.1.contains("malformed records: 3"), "{}", one.1);
    assert_eq!(one.0, two.0, "the same alerts, in the same order");
    assert_eq!(one.1, two.1, "the same summary");
    assert_eq!(one.2, two.2, "the same dead letters");

    let refused = credwatch()
        .args(["replay", "--threads", "3"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--threads"),
        "{}",
        stderr(&refused)
    );
}
