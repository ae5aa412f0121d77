//! Crash recovery: a replay killed with SIGKILL at random moments and restarted each time from
//! its checkpoint raises exactly the alerts of an uninterrupted replay and ends in the same
//! state.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use credwatch::checkpoint::Checkpoint;

use crate::util::{credwatch, repo, stderr, success};

/// The demo organisation with small baselines, so new endpoints and networks alert (and fold
/// into suppression windows) all through the day.
fn noisy_config(dir: &Path) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(repo("src/demo/config.toml")).expect("demo config");
    let noisy = demo
        .replace("max_endpoints = 8", "max_endpoints = 3")
        .replace("max_networks = 4", "max_networks = 2");
    assert_ne!(
        noisy, demo,
        "the demo config's [state] limits moved; update this test"
    );
    let path = dir.join("noisy.toml");
    std::fs::write(&path, noisy).expect("write config");
    path
}

fn replay(
    config: &Path,
    checkpoint: &Path,
    interval: Duration,
    input: &Path,
) -> std::process::Command {
    let mut command = credwatch();
    command
        .args(["replay", "--output", "json", "--config"])
        .arg(config)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--checkpoint-interval")
        .arg(format!("{}ms", interval.as_millis().max(1)))
        .arg(input);
    command
}

/// Which version of the checkpoint file is published: each write renames a new file into
/// place, so the inode changes.
fn published(checkpoint: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(Checkpoint::path(checkpoint))
        .ok()
        .map(|metadata| metadata.ino())
}

/// Waits until `child` publishes a checkpoint other than `before`, or exits.
fn wait_for_a_new_checkpoint(
    child: &mut std::process::Child,
    checkpoint: &Path,
    before: Option<u64>,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while published(checkpoint) == before {
        if child.try_wait().expect("poll replay").is_some() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new checkpoint in 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The alert lines of a file; lines cut short by a kill (not JSON) are counted, not kept.
fn alert_lines(path: &Path) -> (BTreeSet<String>, usize) {
    let text = std::fs::read_to_string(path).expect("read alerts");
    let mut torn = 0;
    let mut lines = BTreeSet::new();
    for line in text.lines() {
        if serde_json::from_str::<serde_json::Value>(line).is_ok() {
            lines.insert(line.to_owned());
        } else {
            torn += 1;
        }
    }
    (lines, torn)
}

#[test]
fn a_replay_killed_twenty_times_raises_the_alerts_and_reaches_the_state_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("day.jsonl");
    success(
        &credwatch()
            .args(["gen", "--seed", "7", "--credentials", "200", "--out"])
            .arg(&input)
            .output()
            .expect("run gen"),
    );
    let config = noisy_config(dir.path());

    let whole_checkpoint = dir.path().join("whole");
    let started = std::time::Instant::now();
    let whole = replay(
        &config,
        &whole_checkpoint,
        Duration::from_millis(50),
        &input,
    )
    .output()
    .expect("run replay");
    // The checkpoint interval and the kill moments scale with how long the whole replay takes
    // on this machine, so that the twenty runs together cover most of the day whatever the
    // machine's speed: fixed moments let a fast machine finish the day before the twentieth
    // run, and a slow one (or one slow to start) never reach its first checkpoint.
    let whole_time = started.elapsed();
    let interval = whole_time / 60;
    let whole_alerts = dir.path().join("whole.json");
    std::fs::write(&whole_alerts, success(&whole)).expect("write alerts");
    let (expected, torn) = alert_lines(&whole_alerts);
    assert_eq!(torn, 0);
    assert!(
        expected.len() > 1000,
        "a noisy day: {} alerts",
        expected.len()
    );

    let killed_checkpoint = dir.path().join("killed");
    let killed_alerts = dir.path().join("killed.json");
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let mut kills = 0;
    for _ in 0..20 {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&killed_alerts)
            .expect("open alerts");
        let before = published(&killed_checkpoint);
        let mut child = replay(&config, &killed_checkpoint, interval, &input)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn replay");
        // Each run gets past one checkpoint of its own, then dies at a random moment, most
        // often between two checkpoints with alerts out that the next run must not repeat.
        wait_for_a_new_checkpoint(&mut child, &killed_checkpoint, before);
        std::thread::sleep(whole_time.mul_f64(random.random_range(0.0..0.03)));
        if child.try_wait().expect("poll replay").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap replay");
    }
    let out = File::options()
        .append(true)
        .open(&killed_alerts)
        .expect("open alerts");
    let last = replay(&config, &killed_checkpoint, interval, &input)
        .stdout(out)
        .stderr(Stdio::piped())
        .output()
        .expect("run replay");
    success(&last);
    assert!(
        stderr(&last).contains("resumed from the checkpoint"),
        "{}",
        stderr(&last)
    );
    assert!(
        kills >= 15,
        "only {kills} of 20 runs were still running when killed"
    );

    let (got, torn) = alert_lines(&killed_alerts);
    let missing: Vec<&String> = expected.difference(&got).take(3).collect();
    let different: Vec<&String> = got.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && different.is_empty(),
        "{} alerts missing, {} different ({torn} lines torn by kills); first missing: {missing:#?}; first different: {different:#?}",
        expected.difference(&got).count(),
        got.difference(&expected).count(),
    );
    let whole_state = Checkpoint::read(&whole_checkpoint)
        .expect("read checkpoint")
        .expect("a final checkpoint");
    let killed_state = Checkpoint::read(&killed_checkpoint)
        .expect("read checkpoint")
        .expect("a final checkpoint");
    assert_eq!(
        killed_state.engine.store, whole_state.engine.store,
        "credential state"
    );
    assert_eq!(killed_state, whole_state, "counters and positions");

    let shown = success(
        &credwatch()
            .args(["checkpoint", "show"])
            .arg(&killed_checkpoint)
            .output()
            .expect("run checkpoint show"),
    );
    assert!(shown.contains("written by: credwatch replay"), "{shown}");
    assert!(shown.contains("position: end of every input"), "{shown}");
    let credentials = format!(
        "state: {} credentials",
        whole_state.engine.store.credentials.len()
    );
    assert!(shown.contains(&credentials), "{shown}");
    std::fs::write(Checkpoint::path(&killed_checkpoint), b"credwchk\x01").expect("damage");
    let damaged = credwatch()
        .args(["checkpoint", "show"])
        .arg(&killed_checkpoint)
        .output()
        .expect("run checkpoint show");
    assert!(!damaged.status.success());
    assert!(
        stderr(&damaged).contains("is damaged"),
        "{}",
        stderr(&damaged)
    );
}
