//! Secrets hygiene: raw secret material planted in inputs (valid and malformed), the webhook
//! secret and the leak-matching HMAC key never appear in alerts, logs, dead letters, the
//! revocation outbox, the archive or a checkpoint.

use std::path::Path;

use crate::util::credwatch;

const PLANTED: &[&str] = &[
    "ghp_PLANTEDsecretVALID0001",
    "ghp_PLANTEDsecretBROKEN002",
    "PLANTED-raw-secret-0003",
    "PLANTED-raw-secret-0004",
    "PLANTEDsessionTOKENvalid05",
    "PLANTEDsessionTOKENbroken6",
    "PLANTED-webhook-secret-0007",
    "PLANTED-hmac-key-0008",
];

fn everything_under(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            everything_under(&path, out);
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
}

#[test]
fn planted_secrets_appear_in_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"time":"2026-03-01T00:00:00Z","secret":"PLANTED-raw-secret-0003","source":"scanner"}"#,
        r#"{"action":"created","alert":{"number":1,"secret_type":"github_personal_access_token","secret":"ghp_PLANTEDsecretVALID0001","created_at":"2026-03-01T00:00:01Z"}}"#,
        r#"{"action":"created","alert":{"number":"ghp_PLANTEDsecretBROKEN002","secret":"ghp_PLANTEDsecretBROKEN002","created_at":"2026-03-01T00:00:02Z"}}"#,
        r#"{"time":"not a time","secret":"PLANTED-raw-secret-0004"}"#,
        r#"{"eventVersion":"1.08","eventTime":"2026-03-01T00:01:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","sourceIPAddress":"203.0.113.5","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/a","accessKeyId":"AKIAPLANTEDCALLER01"},"responseElements":{"credentials":{"accessKeyId":"ASIAPLANTED0000001","sessionToken":"PLANTEDsessionTOKENvalid05","expiration":"Mar 1, 2026, 1:01:00 AM"}}}"#,
        r#"{"eventVersion":"1.08","eventTime":"2026-03-01T00:02:00Z","eventName":"AssumeRole","responseElements":{"credentials":{"sessionToken":"PLANTEDsessionTOKENbroken6""#,
        r#"{"ts":"2026-03-01T00:03:00Z","kind":"access","credential":"ASIAPLANTED0000001","source_ip":"203.0.113.5"}"#,
    ];
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("secret"), "PLANTED-webhook-secret-0007").unwrap();
    std::fs::write(dir.path().join("hmac.key"), "PLANTED-hmac-key-0008").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[leaks]\nsecret_hmac_key_file = \"hmac.key\"\n\n[respond.webhook]\nurl = \"http://127.0.0.1:{port}/revoke\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\nmax_attempts = 1\nmin_severity = \"low\"\n"),
    )
    .unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("unknown-revoke.toml"),
        "id = \"unknown-revoke\"\ntitle = \"Never issued\"\ndescription = \"d\"\ndetector = \"unknown_credential\"\nseverity = \"high\"\naction = \"revoke\"\n",
    )
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let output = credwatch()
        .env("RUST_LOG", "trace")
        .args(["replay", "--format", "auto", "--output", "json", "--config"])
        .arg(&config)
        .arg("--rules")
        .arg(&rules)
        .arg("--dead-letter")
        .arg(&dead)
        .arg("--archive")
        .arg(dir.path().join("archive"))
        .arg("--checkpoint")
        .arg(dir.path().join("checkpoint"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stdout.contains("unknown-revoke"),
        "the revoke rule fired: {stdout}"
    );
    assert!(stderr.contains("malformed records: 3"), "{stderr}");
    let mut files = String::new();
    everything_under(dir.path().join("outbox").as_path(), &mut files);
    assert!(
        !files.is_empty(),
        "a revocation was decided and kept in the outbox"
    );
    // The archive's content as decoded rows (its files are compressed, so grepping them would
    // prove nothing).
    let mut archived = String::new();
    for table in ["events", "alerts", "credentials"] {
        let output = credwatch()
            .args(["query", "--format", "json", "--archive"])
            .arg(dir.path().join("archive"))
            .arg(format!("SELECT * FROM {table}"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        archived.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    assert!(archived.contains("ASIAPLANTED0000001"), "{archived}");
    // The checkpoint's payload decompressed: postcard and the windows' CBOR keep strings as
    // they are, so a secret in the state would show here.
    let file = std::fs::read(credwatch::checkpoint::Checkpoint::path(
        &dir.path().join("checkpoint"),
    ))
    .unwrap();
    let payload = zstd::bulk::decompress(&file[52..], 64 << 20).expect("a zstd payload");
    let checkpointed = String::from_utf8_lossy(&payload).into_owned();
    assert!(
        checkpointed.contains("ASIAPLANTED0000001"),
        "the state is in it"
    );
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert!(letters.contains("[redacted sha256:"), "{letters}");
    for secret in PLANTED {
        for (what, text) in [
            ("alerts", &stdout),
            ("logs", &stderr),
            ("dead letters", &letters),
            ("outbox", &files),
            ("archive", &archived),
            ("checkpoint", &checkpointed),
        ] {
            assert!(!text.contains(secret), "{secret} leaked into {what}");
        }
    }
}
