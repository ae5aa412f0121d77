//! `credwatch config check`.

use std::path::Path;
use std::process::Output;

use crate::util::{credwatch, repo, stderr, success};

/// `credwatch config check --config <path>`.
fn check(path: &Path) -> Output {
    credwatch()
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn shipped_configs_are_valid() {
    let out = success(&credwatch().args(["config", "check"]).output().unwrap());
    assert!(out.contains("zones: 1 configured"), "{out}");
    for path in [
        "examples/credwatch.toml",
        "examples/aws.toml",
        "tests/data/scenario.toml",
        "tests/data/aws-lab.toml",
        "tests/data/vault.toml",
        "rules/testdata/zones.toml",
    ] {
        let out = success(&check(&repo(path)));
        assert!(out.ends_with("ok\n"), "{path}: {out}");
    }
}

#[test]
fn errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("bad.toml:3:"), "{err}");
    assert!(err.contains("10.0.0.0/33"), "{err}");
}

#[test]
fn a_forget_after_longer_than_a_baseline_can_tell_is_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.toml");
    std::fs::write(&path, "[state]\nmax_networks = 4\nforget_after = \"90d\"\n").unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("long.toml:3:"), "{err}");
    assert!(
        err.contains("forget_after: 90d is too long (at most 45d"),
        "{err}"
    );
    std::fs::write(&path, "[state]\nforget_after = \"45d\"\n").unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("forgotten after 45d"));
}
