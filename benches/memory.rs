//! Memory per tracked credential in the shape issue 7 sets its goal for: each credential
//! issued, then used from 4 networks and on 8 endpoints (8 uses, every network twice, every
//! endpoint once), within its zone.
//!
//! Run: `cargo bench --bench memory` (1 million credentials; `MEMORY_CREDENTIALS=10000000`
//! for ten million, about 90 million events and several GiB). Prints resident memory
//! (VmRSS) before and after, the difference per credential, and the store's own estimate
//! (`credwatch_state_bytes` on `/metrics`) per credential. Asserts nothing about time.

use std::time::Instant;

use credwatch::config::Config;
use credwatch::engine::Engine;
use credwatch::event::{Event, Kind};
use credwatch::rules::RuleSet;
use credwatch::time::Timestamp;

fn rss_bytes() -> u64 {
    credwatch::api::resident_bytes(None).unwrap_or(0)
}

const ENDPOINTS: [&str; 8] = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "kms:Decrypt",
];

fn main() {
    let credentials: u64 = std::env::var("MEMORY_CREDENTIALS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let config = Config::parse(
        "memory",
        &format!(
            "[state]\nmax_credentials = {}\n\n[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/8\"]\n",
            credentials * 2
        ),
    )
    .expect("config");
    let rules = RuleSet::builtin(&config).expect("rules");
    let mut engine = Engine::new(config, rules);
    let mut alerts = Vec::new();
    let start = Timestamp::from_secs(1_772_323_200);
    let before = rss_bytes();
    let started = Instant::now();
    let mut events = 0u64;
    for c in 0..credentials {
        let credential = format!("AKIAMEM{c:013}");
        let ts = Timestamp::from_micros(start.micros() + c as i64 * 1_000);
        let mut issue = Event::new(ts, Kind::Issue, credential.clone());
        issue.allowed_zones = vec!["prod".to_owned()];
        issue.principal = Some(format!("svc-{}", c % 1000));
        issue.event_id = format!("i{c}");
        engine.process(&issue, &mut alerts);
        events += 1;
        // Four /24 networks per credential, spread over 10.0.0.0/8.
        let base = (c * 4) % (1 << 16);
        for (j, endpoint) in ENDPOINTS.iter().enumerate() {
            let network = base + (j as u64 % 4);
            let mut access = Event::new(
                Timestamp::from_micros(ts.micros() + 60_000_000 * (j as i64 + 1)),
                Kind::Access,
                credential.clone(),
            );
            access.source_ip = Some(format!("10.{}.{}.{}", network >> 8, network & 255, 7 + j));
            access.endpoint = Some((*endpoint).to_owned());
            access.user_agent = Some("aws-sdk-go/1.44.0 (go1.21; linux; amd64)".to_owned());
            access.event_id = format!("a{c}-{j}");
            engine.process(&access, &mut alerts);
            events += 1;
        }
        alerts.clear();
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let tracked = engine.state().len() as u64;
    let estimate = engine.state().approx_bytes() as u64;
    println!(
        "memory: {credentials} credentials, 4 networks and 8 endpoints each ({events} events in {:.1} s, {:.0} events/s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "tracked {tracked}; resident {:.1} MiB -> {:.1} MiB: {:.0} bytes per credential; the store's estimate: {:.0} bytes per credential (goal: 256)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / tracked as f64,
        estimate as f64 / tracked as f64
    );
}
