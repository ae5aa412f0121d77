//! Properties of the detection core over random event streams: no panic, bounded state,
//! deterministic output.

use proptest::prelude::*;

use credwatch::config::Config;
use credwatch::decode::{Decoder, NativeDecoder};
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;

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
            if zones {
                fields.push("\"allowed_zones\":[\"prod\",\"nowhere\"]".into());
            }
        }
        _ => {}
    }
    format!("{{{}}}", fields.join(","))
}

/// Runs lines through a fresh engine; returns the alerts as JSON lines and the engine.
fn run(lines: &[String]) -> (String, Engine) {
    let config = Config::parse("properties", CONFIG).unwrap();
    let rules = RuleSet::builtin(&config).unwrap();
    let mut engine = Engine::new(config, rules);
    let mut events = Vec::new();
    let mut alerts = Vec::new();
    let mut out = String::new();
    for line in lines {
        events.clear();
        NativeDecoder.decode(line.as_bytes(), &mut events).unwrap();
        for event in &events {
            engine.process(event, &mut alerts);
        }
    }
    engine.finish(&mut alerts);
    for alert in &alerts {
        out.push_str(&alert.to_json());
        out.push('\n');
    }
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
                prop_assert!(state.networks.len() <= 2);
                prop_assert!(state.endpoints.len() <= 3);
            }
        }
        let stats = engine.stats();
        prop_assert_eq!(stats.events, lines.len() as u64);
    }

    #[test]
    fn the_native_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut out = Vec::new();
        let _ = NativeDecoder.decode(&bytes, &mut out);
    }

    #[test]
    fn the_native_decoder_never_panics_on_near_json(text in r#"\{"ts":"[0-9T:Z-]{0,24}","kind":"(access|issue|leak|revoke|x)","credential":"[a-z]{0,3}"(,"source_ip":"[0-9.:a-f]{0,20}")?\}"#) {
        let mut out = Vec::new();
        let _ = NativeDecoder.decode(text.as_bytes(), &mut out);
    }
}
