//! Memory per tracked credential in the shape issue 7 sets its goal for: each credential
//! issued, then used from 4 networks and on 8 endpoints (8 uses, every network twice, every
//! endpoint once), within its zone.
//!
//! Run: `cargo bench --bench memory` (1 million credentials; `MEMORY_CREDENTIALS=10000000`
//! for ten million, about 90 million events and several GiB). Prints resident memory
//! (VmRSS) before and after, the difference per credential, and the store's own estimate
//! (`credwatch_state_bytes` on `/metrics`) per credential. Asserts nothing about time.
//!
//! It also times each credential's first event (the one that inserts its record) and prints
//! the distribution and the slowest: an insert that makes a shard of the table grow rehashes
//! that shard, and the event waits for it. The slowest inserts, with the number of
//! credentials tracked when each happened, show those stalls.

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
    let mut inserts = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    // The slowest inserts: (nanoseconds, credentials tracked before it).
    let mut slowest: Vec<(u64, u64)> = Vec::new();
    for c in 0..credentials {
        let credential = format!("AKIAMEM{c:013}");
        let ts = Timestamp::from_micros(start.micros() + c as i64 * 1_000);
        let mut issue = Event::new(ts, Kind::Issue, credential.clone());
        issue.allowed_zones = vec!["prod".to_owned()];
        issue.principal = Some(format!("svc-{}", c % 1000));
        issue.event_id = format!("i{c}");
        let inserting = Instant::now();
        engine.process(&issue, &mut alerts);
        let nanos = inserting.elapsed().as_nanos() as u64;
        let _ = inserts.record(nanos.max(1));
        if slowest.len() < 16 || nanos > slowest[slowest.len() - 1].0 {
            slowest.push((nanos, c));
            slowest.sort_unstable_by_key(|&(nanos, _)| std::cmp::Reverse(nanos));
            slowest.truncate(16);
        }
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
    let micros = |nanos: u64| nanos as f64 / 1000.0;
    // Time spent in inserts of a millisecond or more. An empty float sum is -0.0, and adding
    // 0.0 makes it print as 0.0.
    let stalled_ms = inserts
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= 1_000_000)
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e6
        + 0.0;
    println!(
        "inserts (a credential's first event): p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, p99.99 {:.1} µs, max {:.1} µs; {} over 1 ms, {:.1} ms in all",
        micros(inserts.value_at_quantile(0.5)),
        micros(inserts.value_at_quantile(0.99)),
        micros(inserts.value_at_quantile(0.999)),
        micros(inserts.value_at_quantile(0.9999)),
        micros(inserts.max()),
        inserts.count_between(1_000_000, u64::MAX),
        stalled_ms
    );
    slowest.sort_unstable_by_key(|&(_, tracked)| tracked);
    let list: Vec<String> = slowest
        .iter()
        .map(|&(nanos, tracked)| format!("{:.2} ms at {tracked}", nanos as f64 / 1e6))
        .collect();
    println!(
        "the 16 slowest inserts, by credentials tracked before them: {}",
        list.join(", ")
    );
}
