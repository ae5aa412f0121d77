//! Real log formats: every record of the third-party data in ../shared/data decodes or is
//! rejected with a reason (never a panic), and scenarios built from real records fire where
//! they should. Tests that need ../shared/data print why they skip when it is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use credwatch::decode::{split_records, Format};

use crate::util::{credwatch, repo, stderr, success};

fn shared_data() -> Option<PathBuf> {
    let path = repo("../shared/data");
    if path.is_dir() {
        Some(path)
    } else {
        println!(
            "skipped: {} is absent (the third-party reference data lives beside the project)",
            path.display()
        );
        None
    }
}

#[derive(Default, Debug)]
struct Census {
    records: usize,
    events: usize,
    ignored: usize,
    rejected: BTreeMap<String, usize>,
}

/// Decodes one record with `format`, catching panics so the failing record can be named.
fn census(census: &mut Census, format: Format, record: &[u8], origin: &str) {
    census.records += 1;
    let outcome = std::panic::catch_unwind(|| {
        let mut events = Vec::new();
        format
            .decoder()
            .decode(record, &mut events)
            .map(|_| events.len())
    });
    match outcome {
        Err(_) => panic!(
            "{format} decoder panicked on {origin}: {}",
            String::from_utf8_lossy(record)
        ),
        Ok(Ok(0)) => census.ignored += 1,
        Ok(Ok(n)) => census.events += n,
        Ok(Err(error)) => {
            assert!(
                !error.reason.trim().is_empty(),
                "{origin}: rejected without a reason"
            );
            let class: String = error
                .reason
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .chars()
                .take(90)
                .collect();
            *census.rejected.entry(class).or_default() += 1;
        }
    }
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shared_record_decodes_or_is_rejected_with_a_reason() {
    let Some(data) = shared_data() else { return };
    let mut report = String::new();

    for format in [Format::Cloudtrail, Format::Auto] {
        let mut total = Census::default();
        for file in files(&data.join("stratus-red-team"), "json") {
            let bytes = std::fs::read(&file).unwrap();
            let mut per_file = Census::default();
            for record in split_records(&bytes) {
                census(&mut per_file, format, record, &file.display().to_string());
            }
            report.push_str(&format!(
                "{format:<10} {:<70} {:>3} records {:>3} events {:>2} ignored {:?}\n",
                file.file_name().unwrap().to_string_lossy(),
                per_file.records,
                per_file.events,
                per_file.ignored,
                per_file.rejected
            ));
            total.records += per_file.records;
            total.events += per_file.events;
            total.ignored += per_file.ignored;
            for (reason, n) in per_file.rejected {
                *total.rejected.entry(reason).or_default() += n;
            }
        }
        assert!(total.records > 250, "{total:?}");
        assert!(
            total.rejected.is_empty(),
            "Stratus CloudTrail is all valid CloudTrail: {total:?}"
        );
        assert!(
            total.events > total.records,
            "role assumptions add issuance events: {total:?}"
        );
    }

    for format in [Format::K8s, Format::Auto] {
        let mut total = Census::default();
        for file in files(
            &data.join("falco-k8s-audit/test/trace_files/k8s_audit"),
            "json",
        ) {
            let bytes = std::fs::read(&file).unwrap();
            for line in bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.trim_ascii().is_empty())
            {
                for record in split_records(line) {
                    census(&mut total, format, record, &file.display().to_string());
                }
            }
        }
        report.push_str(&format!("{format:<10} falco k8s_audit traces: {total:?}\n"));
        assert!(total.events > 0, "{total:?}");
        assert!(
            total.rejected.values().sum::<usize>() <= 1,
            "only the deliberately broken fixture: {total:?}"
        );
    }

    for (file, format) in [
        ("cloudtrail_all_rules.events.jsonl", Format::Cloudtrail),
        ("kubernetes_rules.events.jsonl", Format::K8s),
        (
            "github_audit_rules.events.jsonl",
            Format::GithubSecretScanning,
        ),
    ] {
        for format in [format, Format::Auto] {
            let mut total = Census::default();
            let text = std::fs::read_to_string(data.join("panther-analysis").join(file)).unwrap();
            for (number, line) in text.lines().enumerate() {
                let fixture: serde_json::Value = serde_json::from_str(line).unwrap();
                let event = serde_json::to_vec(&fixture["event"]).unwrap();
                census(
                    &mut total,
                    format,
                    &event,
                    &format!("{file}:{}", number + 1),
                );
            }
            report.push_str(&format!(
                "{format:<10} panther {file}: {} records, {} events, {} ignored, rejected {:?}\n",
                total.records, total.events, total.ignored, total.rejected
            ));
            assert_eq!(total.records, text.lines().count());
        }
    }
    println!("{report}");
}

fn replay(config: &str, format: &str, inputs: &[PathBuf]) -> Vec<serde_json::Value> {
    let output = credwatch()
        .args(["replay", "--output", "json", "--format", format, "--config"])
        .arg(repo(config))
        .args(inputs)
        .output()
        .unwrap();
    let out = success(&output);
    assert!(
        stderr(&output).contains("malformed records: 0"),
        "{}",
        stderr(&output)
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn created<'a>(alerts: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    alerts
        .iter()
        .filter(|a| a["rule"] == rule && a["activity_id"] == 1)
        .collect()
}

#[test]
fn zone_violation_fires_on_real_cloudtrail_outside_the_owners_zone_only() {
    let Some(data) = shared_data() else { return };
    let stratus = data.join("stratus-red-team");
    // christophe at the office (200.249.253.51): his key and the role sessions he mints.
    let benign = stratus.join("aws.credential-access.ec2-get-password-data.json");
    // christophe's key of another account stopping CloudTrail from 86.245.153.234.
    let misuse = stratus.join("aws.defense-evasion.cloudtrail-stop.json");

    let quiet = replay(
        "tests/data/aws-lab.toml",
        "cloudtrail",
        std::slice::from_ref(&benign),
    );
    assert!(created(&quiet, "zone-violation").is_empty(), "{quiet:#?}");
    assert!(created(&quiet, "concurrent-zones").is_empty());

    let alerts = replay("tests/data/aws-lab.toml", "cloudtrail", &[benign, misuse]);
    let violations = created(&alerts, "zone-violation");
    assert_eq!(violations.len(), 1, "{violations:#?}");
    let alert = violations[0];
    assert_eq!(alert["credential"], "AKIAGGWFBBHBE7D3M9WI");
    assert_eq!(alert["evidence"]["observed"]["zone"], "internet");
    assert_eq!(
        alert["evidence"]["event"]["endpoint"],
        "cloudtrail:StopLogging"
    );
    assert_eq!(alert["evidence"]["expected"]["allowed_zones"][0], "corp");
    assert_eq!(alert["evidence"]["expected"]["allowed_from"], "issuer rule");
}

#[test]
fn use_after_leak_fires_on_real_cloudtrail_after_the_report_only() {
    let Some(data) = shared_data() else { return };
    let file = data.join("stratus-red-team/aws.credential-access.ec2-get-password-data.json");
    // The role session ASIANQQHHS551LWULIWD is issued by AssumeRole and then used; a leak report
    // lands in the middle of its uses.
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut times: Vec<String> = records
        .iter()
        .filter(|r| r["userIdentity"]["accessKeyId"] == "ASIANQQHHS551LWULIWD")
        .map(|r| r["eventTime"].as_str().unwrap().to_owned())
        .collect();
    times.sort();
    assert!(times.len() >= 4, "{times:?}");
    let report_time = times[times.len() / 2].clone();
    let expected_uses = times.iter().filter(|t| **t >= report_time).count() as u64;

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("leak.json");
    std::fs::write(
        &report,
        format!(r#"{{"time":"{report_time}","credential":"ASIANQQHHS551LWULIWD","source":"trufflehog","url":"https://example.com/paste/1"}}"#),
    )
    .unwrap();
    let alerts = replay("tests/data/aws-lab.toml", "auto", &[report, file]);
    let leaks: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "use-after-leak")
        .collect();
    let first = leaks
        .iter()
        .find(|a| a["activity_id"] == 1)
        .expect("a use-after-leak alert");
    assert_eq!(first["credential"], "ASIANQQHHS551LWULIWD");
    assert!(first["evidence"]["event"]["ts"].as_str().unwrap() >= report_time.as_str());
    // Every use at or after the report is counted, none before it.
    let occurrences = leaks
        .iter()
        .find(|a| a["activity_id"] == 2)
        .map_or(1, |update| update["count"].as_u64().unwrap());
    assert_eq!(occurrences, expected_uses);
    assert!(alerts
        .iter()
        .all(|a| a["rule"] != "use-after-leak" || a["credential"] == "ASIANQQHHS551LWULIWD"));
}

#[test]
fn vault_issue_use_revoke_then_use_after_revoke() {
    let alerts = replay(
        "tests/data/vault.toml",
        "vault",
        &[repo("tests/data/vault-audit.jsonl")],
    );
    let rules: Vec<&str> = alerts.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        vec!["use-after-revoke", "zone-violation"],
        "{alerts:#?}"
    );
    let revoked = &alerts[0];
    assert!(revoked["credential"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    assert_eq!(revoked["evidence"]["event"]["outcome"], "failure");
    assert_eq!(
        revoked["evidence"]["event"]["endpoint"],
        "read secret/data/billing"
    );
    assert_eq!(revoked["resources"][0]["owner"]["name"], "approle");
    assert!(revoked["summary"]
        .as_str()
        .unwrap()
        .starts_with("used 20.0 minutes after it was revoked"));
    // The same file through auto-detection gives the same alerts.
    let auto = replay(
        "tests/data/vault.toml",
        "auto",
        &[repo("tests/data/vault-audit.jsonl")],
    );
    assert_eq!(alerts, auto);
}

#[test]
fn github_secret_scanning_webhook_then_use_fires_use_after_leak() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = dir.path().join("webhook.json");
    std::fs::write(
        &webhook,
        r#"{"action":"created","alert":{"number":7,"secret_type":"aws_access_key_id","secret":"AKIAIOSFODNN7EXAMPLE",
"html_url":"https://github.com/example/app/security/secret-scanning/7","created_at":"2026-03-01T10:00:00Z"},
"repository":{"full_name":"example/app"},"sender":{"login":"github"}}"#,
    )
    .unwrap();
    let trail = dir.path().join("trail.json");
    std::fs::write(
        &trail,
        r#"{"Records":[{"eventVersion":"1.08","eventTime":"2026-03-01T10:12:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","sourceIPAddress":"203.0.113.44","userAgent":"python-requests/2.31","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/deploy","accessKeyId":"AKIAIOSFODNN7EXAMPLE"},"eventID":"c1"}]}"#,
    )
    .unwrap();
    let alerts = replay("tests/data/aws-lab.toml", "auto", &[webhook, trail]);
    let leak = created(&alerts, "use-after-leak");
    assert_eq!(leak.len(), 1, "{alerts:#?}");
    assert!(leak[0]["summary"]
        .as_str()
        .unwrap()
        .contains("12.0 minutes after it was reported leaked by github-secret-scanning"));
}

/// Vault's audit device logs a token as `hmac-sha256:` + hex(HMAC-SHA256(key, token)).
fn vault_hmac(key: &str, token: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("hmac-sha256:{hex}")
}

#[test]
fn a_leaked_raw_secret_is_matched_by_keyed_hash_and_by_sha256_without_storing_it() {
    let key = "audit-device-hmac-key";
    let token = "hvs.CAESIJleakedTokenValue0123456789";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac.key"), format!("{key}\n")).unwrap();
    let zones = std::fs::read_to_string(repo("tests/data/vault.toml")).unwrap();
    let keyed = dir.path().join("keyed.toml");
    std::fs::write(
        &keyed,
        format!("{zones}\n[leaks]\nsecret_hmac_key_file = \"hmac.key\"\n"),
    )
    .unwrap();
    let unkeyed = dir.path().join("unkeyed.toml");
    std::fs::write(&unkeyed, &zones).unwrap();

    let token_hmac = vault_hmac(key, token);
    let other_secret = "sk_live_51Hx0therSecretValue";
    let other_sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(other_secret.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(
        &input,
        [
            // An AppRole login issues a token (its accessor is the credential).
            format!(r#"{{"time":"2026-03-01T10:00:00Z","type":"response","auth":{{"client_token":"","accessor":""}},"request":{{"id":"r1","operation":"update","path":"auth/approle/login","remote_address":"10.0.5.10"}},"response":{{"auth":{{"client_token":"{token_hmac}","accessor":"hmac-sha256:acc9","display_name":"approle","token_ttl":7200}}}}}}"#),
            format!(r#"{{"time":"2026-03-01T10:05:00Z","type":"response","auth":{{"client_token":"{token_hmac}","accessor":"hmac-sha256:acc9","display_name":"approle"}},"request":{{"id":"r2","operation":"read","path":"secret/data/billing","remote_address":"10.0.5.10"}}}}"#),
            // A payments key whose issuance carried the SHA-256 of its secret.
            format!(r#"{{"ts":"2026-03-01T10:06:00Z","kind":"issue","credential":"pk_payments_1","secret_hash":"sha256:{other_sha256}","allowed_zones":["apps"]}}"#),
            // Someone pastes both secrets; the report carries them raw.
            format!(r#"{{"time":"2026-03-01T10:10:00Z","secret":"{token}","source":"paste-monitor","url":"https://paste.example/abc"}}"#),
            format!(r#"{{"time":"2026-03-01T10:11:00Z","secret":"{other_secret}","source":"paste-monitor"}}"#),
            format!(r#"{{"time":"2026-03-01T10:20:00Z","type":"response","auth":{{"client_token":"{token_hmac}","accessor":"hmac-sha256:acc9","display_name":"approle"}},"request":{{"id":"r3","operation":"read","path":"secret/data/billing","remote_address":"203.0.113.5"}}}}"#),
            r#"{"ts":"2026-03-01T10:21:00Z","kind":"access","credential":"pk_payments_1","source_ip":"10.0.5.20","endpoint":"POST /v1/charges"}"#.to_owned(),
        ]
        .join("\n"),
    )
    .unwrap();
    let run = |config: &Path| {
        let output = credwatch()
            .args(["replay", "--output", "json", "--format", "auto", "--config"])
            .arg(config)
            .arg(&input)
            .output()
            .unwrap();
        let out = success(&output);
        assert!(!out.contains(token) && !out.contains(other_secret), "{out}");
        assert!(!stderr(&output).contains(token));
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };

    let alerts = run(&keyed);
    let leaks = created(&alerts, "use-after-leak");
    let credentials: Vec<&str> = leaks
        .iter()
        .map(|a| a["credential"].as_str().unwrap())
        .collect();
    assert_eq!(
        credentials,
        vec!["hmac-sha256:acc9", "pk_payments_1"],
        "{alerts:#?}"
    );
    assert!(leaks[0]["summary"]
        .as_str()
        .unwrap()
        .contains("10.0 minutes after it was reported leaked by paste-monitor"));

    // Without the audit device's key only the plain SHA-256 can match.
    let alerts = run(&unkeyed);
    let credentials: Vec<&str> = created(&alerts, "use-after-leak")
        .iter()
        .map(|a| a["credential"].as_str().unwrap())
        .collect();
    assert_eq!(credentials, vec!["pk_payments_1"]);
}

/// A CloudTrail record of EC2 assuming role `web` for instance session `session`, issuing `key`.
fn assume_role(time: &str, key: &str, session: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventTime":"{time}","eventName":"AssumeRole","eventSource":"sts.amazonaws.com","eventID":"assume-{key}","sourceIPAddress":"ec2.amazonaws.com","userIdentity":{{"type":"AWSService","invokedBy":"ec2.amazonaws.com"}},"responseElements":{{"credentials":{{"accessKeyId":"{key}","sessionToken":"token-of-{key}","expiration":"Mar 1, 2026, 11:00:00 PM"}},"assumedRoleUser":{{"arn":"arn:aws:sts::111122223333:assumed-role/web/{session}"}}}}}}"#
    )
}

fn role_call(time: &str, key: &str, ip: &str, id: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventTime":"{time}","eventName":"GetObject","eventSource":"s3.amazonaws.com","eventID":"call-{key}-{id}","sourceIPAddress":"{ip}","userAgent":"aws-sdk-go-v2/1.30","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/web/i","accessKeyId":"{key}"}}}}"#
    )
}

#[test]
fn a_new_cloudtrail_role_session_inherits_the_roles_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[learning]\nmin_events = 5\nmin_age = \"10m\"\n\n[[zones]]\nname = \"vpc\"\ncidrs = [\"10.0.0.0/16\"]\n",
    )
    .unwrap();
    let mut records = vec![assume_role(
        "2026-03-01T00:00:00Z",
        "ASIAWEBSESSION000001",
        "i-1",
    )];
    // The first session runs on two subnets.
    for minute in 0..20 {
        let ip = if minute % 2 == 0 {
            "10.0.1.5"
        } else {
            "10.0.2.5"
        };
        records.push(role_call(
            &format!("2026-03-01T00:{minute:02}:00Z"),
            "ASIAWEBSESSION000001",
            ip,
            minute,
        ));
    }
    // The next session: its own first calls come from one subnet, then from the other.
    records.push(assume_role(
        "2026-03-01T01:00:00Z",
        "ASIAWEBSESSION000002",
        "i-2",
    ));
    for minute in 0..20 {
        records.push(role_call(
            &format!("2026-03-01T01:{:02}:00Z", minute + 1),
            "ASIAWEBSESSION000002",
            "10.0.1.6",
            minute,
        ));
    }
    records.push(role_call(
        "2026-03-01T01:30:00Z",
        "ASIAWEBSESSION000002",
        "10.0.2.6",
        99,
    ));
    let input = dir.path().join("trail.json");
    std::fs::write(&input, format!("{{\"Records\":[{}]}}", records.join(","))).unwrap();
    let run = |inherit: bool| {
        let text = std::fs::read_to_string(&config).unwrap();
        let path = dir.path().join(format!("c-{inherit}.toml"));
        std::fs::write(
            &path,
            text.replace(
                "min_age = \"10m\"",
                &format!("min_age = \"10m\"\ninherit = {inherit}"),
            ),
        )
        .unwrap();
        let output = credwatch()
            .args(["replay", "--format", "cloudtrail", "--config"])
            .arg(&path)
            .arg(&input)
            .output()
            .unwrap();
        success(&output)
    };
    let inherited = run(true);
    assert!(
        !inherited.contains("new-network ASIAWEBSESSION000002"),
        "the role's other subnet is known to its new session:\n{inherited}"
    );
    let learned_alone = run(false);
    assert!(
        learned_alone
            .contains("new-network ASIAWEBSESSION000002 called from new network 10.0.2.0/24"),
        "without inheritance the same call is a false new-network alert:\n{learned_alone}"
    );
}
