//! Flood: millions of distinct new credentials through one engine with a credential bound,
//! while a fleet of known credentials keeps working and now and then misbehaves.
//!
//! Measures what issue 8 asks of bounded memory: resident memory stays under the bound's
//! budget however many credentials arrive, eviction keeps up, and misuse of known credentials
//! is still caught during the flood. Prints figures; asserts nothing about time.
//!
//! Run: `cargo bench --bench flood` (50 million flood events, `[state] max_credentials` of
//! one million). `FLOOD_EVENTS` and `FLOOD_MAX` override the two. The flood is issuance of new
//! credentials (a storm of STS sessions, say); `FLOOD_KIND=access` floods with uses of
//! never-issued credentials instead, each of which raises an `unknown-credential` alert.

use std::time::Instant;

use credwatch::config::Config;
use credwatch::engine::Engine;
use credwatch::event::{Event, Kind};
use credwatch::rules::RuleSet;
use credwatch::time::Timestamp;

/// Known credentials, each issued for prod and used from it.
const KNOWN: u64 = 1_000;
/// Every this many flood events, one known credential is used from prod...
const KNOWN_EVERY: u64 = 10;
/// ...and every this many, one is used from the internet instead (misuse to catch).
const MISUSE_EVERY: u64 = 1_000_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    credwatch::api::resident_bytes(None).map_or(0.0, |bytes| bytes as f64 / 1048576.0)
}

fn access(ts: Timestamp, credential: String, ip: &str, id: u64) -> Event {
    let mut event = Event::new(ts, Kind::Access, credential);
    event.source_ip = Some(ip.to_owned());
    event.endpoint = Some("sts:GetCallerIdentity".to_owned());
    event.event_id = format!("e{id}");
    event
}

fn main() {
    let flood = env_u64("FLOOD_EVENTS", 50_000_000);
    let unknown = std::env::var("FLOOD_KIND").is_ok_and(|kind| kind == "access");
    let max = env_u64("FLOOD_MAX", 1_000_000);
    let config = Config::parse(
        "flood",
        &format!(
            "[learning]\nmin_events = 5\nmin_age = \"1m\"\n\n[state]\nmax_credentials = {max}\n\n[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\"]\n"
        ),
    )
    .expect("config");
    let rules = RuleSet::builtin(&config).expect("rules");
    let mut engine = Engine::new(config, rules);
    let mut alerts = Vec::new();
    let start = Timestamp::from_secs(1_772_323_200);
    let mut id = 0u64;
    for k in 0..KNOWN {
        let mut issue = Event::new(start, Kind::Issue, format!("AKIAKNOWN{k:011}"));
        issue.allowed_zones = vec!["prod".to_owned()];
        issue.event_id = format!("i{k}");
        engine.process(&issue, &mut alerts);
    }
    println!(
        "flood: {flood} distinct new credentials ({}), max_credentials {max}, {KNOWN} known credentials used every {KNOWN_EVERY} events and misused every {MISUSE_EVERY}",
        if unknown { "uses of never-issued keys" } else { "issuance" }
    );
    println!(
        "{:>12} {:>10} {:>12} {:>10} {:>9} {:>10}",
        "events", "tracked", "evicted", "RSS MiB", "Mev/s", "misuse"
    );
    let baseline_rss = rss_mib();
    let started = Instant::now();
    let mut lap = Instant::now();
    let mut lap_events = 0u64;
    let (mut misused, mut caught, mut peak_rss) = (0u64, 0u64, 0f64);
    for i in 0..flood {
        // Ten events a second of event time: the flood spans days, like a slow leak would.
        let ts = Timestamp::from_micros(start.micros() + 60_000_000 + i as i64 * 100_000);
        id += 1;
        let credential = format!("AKIAFLOOD{i:011}");
        let event = if unknown {
            access(ts, credential, "198.51.100.7", id)
        } else {
            let mut issue = Event::new(ts, Kind::Issue, credential);
            issue.event_id = format!("e{id}");
            issue
        };
        engine.process(&event, &mut alerts);
        lap_events += 1;
        if i % KNOWN_EVERY == 0 {
            let k = (i / KNOWN_EVERY) % KNOWN;
            let misuse = i > 0 && i % MISUSE_EVERY == 0;
            let ip = if misuse { "203.0.113.9" } else { "10.0.1.5" };
            id += 1;
            let known = access(ts, format!("AKIAKNOWN{k:011}"), ip, id);
            alerts.clear();
            engine.process(&known, &mut alerts);
            lap_events += 1;
            if misuse {
                misused += 1;
                caught += u64::from(
                    alerts
                        .iter()
                        .any(|a| a.rule == "zone-violation" && a.credential == known.credential),
                );
            }
        }
        alerts.clear();
        if (i + 1) % 5_000_000 == 0 || i + 1 == flood {
            let rss = rss_mib();
            peak_rss = peak_rss.max(rss);
            println!(
                "{:>12} {:>10} {:>12} {:>10.0} {:>9.3} {:>6}/{:<3}",
                i + 1,
                engine.state().len(),
                engine.stats().evicted,
                rss,
                lap_events as f64 / lap.elapsed().as_secs_f64() / 1e6,
                caught,
                misused
            );
            lap = Instant::now();
            lap_events = 0;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "done: {} events in {seconds:.1}s ({:.3} M events/s); {} credentials tracked at the end, {} evicted; peak RSS {peak_rss:.0} MiB (at start {baseline_rss:.0} MiB); misuse of known credentials caught {caught} of {misused}; state estimate {} bytes/credential",
        engine.stats().events,
        engine.stats().events as f64 / seconds / 1e6,
        engine.state().len(),
        engine.stats().evicted,
        engine.state().approx_bytes() / engine.state().len().max(1),
    );
}
