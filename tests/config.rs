//! `credwatch config check`.

use crate::util::{credwatch, repo, stderr, success};

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
        let out = success(
            &credwatch()
                .args(["config", "check", "--config"])
                .arg(repo(path))
                .output()
                .unwrap(),
        );
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
    let output = credwatch()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("bad.toml:3:"), "{err}");
    assert!(err.contains("10.0.0.0/33"), "{err}");
}
