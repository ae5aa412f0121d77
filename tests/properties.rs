//! Properties of the detection core over random event streams: no panic, bounded state,
//! deterministic output.

use proptest::prelude::*;

use credwatch::checkpoint::{Checkpoint, PartitionCheckpoint, Positions};
use credwatch::config::Config;
use credwatch::decode::{Decoder, NativeDecoder};
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;
use credwatch::state::Home;

const CONFIG: &str = r#"
[learning]
min_events = 3
min_age = "2m"

[state]
max_networks = 2
max_endpoints = 3

[[zones]]
name = "prod"
cidrs = ["10.0.0.0/16"]

[[zones]]
name = "ci"
cidrs = ["10.2.0.0/16"]
"#;

const IPS: &[&str] = &[
    "10.0.1.5",
    "10.0.2.5",
    "10.0.3.5",
    "10.2.0.1",
    "203.0.113.9",
    "2001:db8::1",
    "08.1.250.216",
    "",
];
const ENDPOINTS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "iam:ListUsers",
    "kms:Decrypt",
    "GET /v1/x",
];
const KINDS: &[&str] = &[
    "access", "access", "access", "access", "issue", "revoke", "leak",
];

fn line(
    seconds: i64,
    kind: usize,
    credential: usize,
    ip: usize,
    endpoint: usize,
    zones: bool,
) -> String {
    let ts = credwatch::time::Timestamp::from_secs(1_772_323_200 + seconds).to_rfc3339();
    let kind = KINDS[kind];
    let mut fields = vec![
        format!("\"ts\":\"{ts}\""),
        format!("\"kind\":\"{kind}\""),
        format!("\"credential\":\"k{credential}\""),
    ];
    match kind {
        "access" => {
            if !IPS[ip].is_empty() {
                fields.push(format!("\"source_ip\":\"{}\"", IPS[ip]));
            }
            fields.push(format!("\"endpoint\":\"{}\"", ENDPOINTS[endpoint]));
        }
        "issue" => {
            let expires =
                credwatch::time::Timestamp::from_secs(1_772_323_200 + seconds + 600).to_rfc3339();
            fields.push(format!("\"expires_at\":\"{expires}\""));
            // Two lineages, so issued credentials inherit baselines.
            fields.push(format!("\"owner\":\"team-{}\"", credential % 2));
            if zones {
                fields.push("\"allowed_zones\":[\"prod\",\"nowhere\"]".into());
            }
        }
        _ => {}
    }
    format!("{{{}}}", fields.join(","))
}

fn engine() -> Engine {
    let config = Config::parse("properties", CONFIG).unwrap();
    let rules = RuleSet::builtin(&config).unwrap();
    Engine::new(config, rules)
}

/// Feeds lines to `engine`, appending its alerts to `out` as JSON lines.
fn feed(engine: &mut Engine, lines: &[String], out: &mut String) {
    let mut events = Vec::new();
    let mut alerts = Vec::new();
    for line in lines {
        events.clear();
        NativeDecoder::new()
            .decode(line.as_bytes(), &mut events)
            .unwrap();
        for event in &events {
            engine.process(event, &mut alerts);
        }
    }
    for alert in alerts.drain(..) {
        out.push_str(&alert.to_json());
        out.push('\n');
    }
}

fn finish(engine: &mut Engine, out: &mut String) {
    let mut alerts = Vec::new();
    engine.finish(&mut alerts);
    for alert in &alerts {
        out.push_str(&alert.to_json());
        out.push('\n');
    }
}

/// Runs lines through a fresh engine; returns the alerts as JSON lines and the engine.
fn run(lines: &[String]) -> (String, Engine) {
    let mut engine = engine();
    let mut out = String::new();
    feed(&mut engine, lines, &mut out);
    finish(&mut engine, &mut out);
    (out, engine)
}

fn stream() -> impl Strategy<Value = Vec<String>> {
    // Mostly increasing time with some going backwards (out-of-order input).
    prop::collection::vec(
        (
            -120i64..600,
            0..KINDS.len(),
            0usize..6,
            0..IPS.len(),
            0..ENDPOINTS.len(),
            any::<bool>(),
        ),
        1..300,
    )
    .prop_map(|steps| {
        let mut clock = 0i64;
        steps
            .into_iter()
            .map(|(step, kind, credential, ip, endpoint, zones)| {
                clock = (clock + step).max(0);
                line(clock, kind, credential, ip, endpoint, zones)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_streams_are_deterministic_and_state_stays_bounded(lines in stream()) {
        let (first, engine) = run(&lines);
        let (second, _) = run(&lines);
        prop_assert_eq!(&first, &second);
        for credential in 0..6 {
            if let Some(state) = engine.state().get(&format!("k{credential}")) {
                prop_assert!(state.networks().len() <= 2);
                prop_assert!(state.endpoints().len() <= 3);
            }
        }
        let stats = engine.stats();
        prop_assert_eq!(stats.events, lines.len() as u64);
    }

    #[test]
    fn a_checkpoint_taken_anywhere_resumes_into_the_same_alerts_and_state(
        lines in stream(),
        cut in 0.0f64..=1.0,
    ) {
        let (uninterrupted, whole) = run(&lines);
        let cut = ((lines.len() as f64) * cut) as usize;
        let mut before = engine();
        let mut resumed_out = String::new();
        feed(&mut before, &lines[..cut], &mut resumed_out);
        let checkpoint = Checkpoint {
            positions: Positions::Kafka(Vec::new()),
            engine: before.snapshot().unwrap(),
        };
        let bytes = checkpoint.encode().unwrap();
        let read = Checkpoint::decode(&bytes, std::path::Path::new("mem")).unwrap();
        prop_assert_eq!(&read, &checkpoint);
        let mut after = engine();
        after.restore(read.engine).unwrap();
        prop_assert_eq!(after.snapshot().unwrap(), before.snapshot().unwrap());
        feed(&mut after, &lines[cut..], &mut resumed_out);
        finish(&mut after, &mut resumed_out);
        prop_assert_eq!(&resumed_out, &uninterrupted);
        prop_assert_eq!(after.snapshot().unwrap(), whole.snapshot().unwrap());
        prop_assert_eq!(after.stats(), whole.stats());
    }

    #[test]
    fn per_partition_checkpoints_taken_anywhere_merge_into_the_same_alerts_and_state(
        lines in stream(),
        cut in 0.0f64..=1.0,
    ) {
        // Three input partitions keyed by credential, as `run` numbers them.
        const PARTITIONS: [Home; 3] = [0, 1, 2];
        let home = |line: &str| -> Home {
            let digit = line.split("\"credential\":\"k").nth(1).and_then(|rest| rest.chars().next());
            digit.and_then(|d| d.to_digit(10)).unwrap_or(0) as Home % 3
        };
        let feed_homed = |engine: &mut Engine, lines: &[String], out: &mut String| {
            for line in lines {
                engine.set_home(home(line));
                feed(engine, std::slice::from_ref(line), out);
            }
        };
        let mut whole = engine();
        let mut uninterrupted = String::new();
        feed_homed(&mut whole, &lines, &mut uninterrupted);
        finish(&mut whole, &mut uninterrupted);

        let cut = ((lines.len() as f64) * cut) as usize;
        let mut before = engine();
        let mut resumed_out = String::new();
        feed_homed(&mut before, &lines[..cut], &mut resumed_out);
        let mut after = engine();
        for (partition, share) in before.shares(&PARTITIONS).unwrap() {
            let checkpoint = PartitionCheckpoint {
                topic: "events".into(),
                partition: partition as i32,
                offset: 0,
                share,
            };
            let bytes = checkpoint.encode().unwrap();
            let read = PartitionCheckpoint::decode(&bytes, std::path::Path::new("mem")).unwrap();
            prop_assert_eq!(&read, &checkpoint);
            after.absorb(read.share, partition).unwrap();
        }
        prop_assert_eq!(after.state().len(), before.state().len());
        prop_assert_eq!(after.shares(&PARTITIONS).unwrap(), before.shares(&PARTITIONS).unwrap());
        feed_homed(&mut after, &lines[cut..], &mut resumed_out);
        finish(&mut after, &mut resumed_out);
        prop_assert_eq!(&resumed_out, &uninterrupted);
        prop_assert_eq!(after.shares(&PARTITIONS).unwrap(), whole.shares(&PARTITIONS).unwrap());
    }

    #[test]
    fn the_native_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut out = Vec::new();
        let _ = NativeDecoder::new().decode(&bytes, &mut out);
    }

    #[test]
    fn the_native_decoder_never_panics_on_near_json(text in r#"\{"ts":"[0-9T:Z-]{0,24}","kind":"(access|issue|leak|revoke|x)","credential":"[a-z]{0,3}"(,"source_ip":"[0-9.:a-f]{0,20}")?\}"#) {
        let mut out = Vec::new();
        let _ = NativeDecoder::new().decode(text.as_bytes(), &mut out);
    }
}
