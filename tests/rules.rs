//! `credwatch rules`: the shipped rules pass their cases, broken cases and rules are named.

use crate::util::{credwatch, repo, stderr, stdout, success};

#[test]
fn shipped_rules_pass_their_own_cases() {
    let out = success(&credwatch().args(["rules", "test"]).output().unwrap());
    assert!(out.contains("rules test: 53 passed, 0 failed"), "{out}");
    // The same rules from the directory (not the embedded copy) behave the same.
    let out = success(
        &credwatch()
            .args(["rules", "test", "--rules"])
            .arg(repo("rules"))
            .output()
            .unwrap(),
    );
    assert!(out.contains(", 0 failed"), "{out}");
}

#[test]
fn every_shipped_rule_has_two_firing_and_two_quiet_cases() {
    let out = success(&credwatch().args(["rules", "check"]).output().unwrap());
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("firing /")).collect();
    assert_eq!(
        rows.len(),
        credwatch::detect::DetectorKind::ALL.len(),
        "one rule per detector: {out}"
    );
    for row in rows {
        let numbers: Vec<u32> = row
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            numbers.len() == 2 && numbers[0] >= 2 && numbers[1] >= 2,
            "{row}"
        );
    }
}

fn copy_rules(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("testdata")).unwrap();
    for sub in ["", "testdata"] {
        for entry in std::fs::read_dir(repo("rules").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

#[test]
fn a_wrong_case_fails_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_rules(dir.path());
    let file = dir.path().join("zone-violation.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let broken = text.replacen(
        "expect = [{ event = 3, contains = \"zone internet (203.0.113.7)\" }]",
        "expect = [{ event = 2 }]",
        1,
    );
    assert_ne!(text, broken);
    std::fs::write(&file, broken).unwrap();
    let output = credwatch()
        .args(["rules", "test", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(
        out.contains("FAIL  zone-violation: prod key used from the internet"),
        "{out}"
    );
    assert!(out.contains("expected an alert at event 2"), "{out}");
    assert!(out.contains("unexpected alert at event 3"), "{out}");
    assert!(out.contains("52 passed, 1 failed"), "{out}");
}

/// `credwatch rules check` over a copy of the shipped rules with one edit in `file`.
fn check_edited(file: &str, from: &str, to: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    copy_rules(dir.path());
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(from, to, 1);
    assert_ne!(text, edited, "{from:?} is not in {file}");
    std::fs::write(&path, edited).unwrap();
    credwatch()
        .args(["rules", "check", "--rules"])
        .arg(dir.path())
        .output()
        .unwrap()
}

#[test]
fn a_bad_rule_file_names_file_line_and_field() {
    let output = check_edited("rate-spike.toml", "sigmas = 6.0", "sigma = 6.0");
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("unknown field `sigma`"), "{err}");
    let after_name = err.split("rate-spike.toml:").nth(1).unwrap_or("");
    let line: usize = after_name
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(line > 0, "the error names the file and a line: {err}");
}

#[test]
fn a_bad_event_in_a_case_names_its_line() {
    let output = check_edited(
        "use-after-leak.toml",
        "\"kind\":\"leak\"",
        "\"kind\":\"leek\"",
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("use-after-leak.toml:"), "{err}");
    assert!(err.contains("unknown variant `leek`"), "{err}");
}
