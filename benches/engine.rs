//! Stage benchmarks over the demo's synthetic traffic, as native JSON lines (group `stages`)
//! and as CloudTrail records (group `cloudtrail`: API calls by access key with the fields
//! CloudTrail logs, identity, region, request parameters, TLS details, about 1 KB each; key
//! creations as `CreateAccessKey`). Each group times:
//! - `parse_ignored`: serde_json into `IgnoredAny`, the practical limit for any JSON decoder;
//! - `decode`: the format's decoder alone;
//! - `pipeline`: decode + zones + state + the built-in rules + suppression, one engine.
//!
//! Group `names` times a name's symbol taken from the shared interner alone and through the
//! engine's `NameCache` in front of it (4,096 slots), over principals cycled from a set that
//! fits the cache (1,000) and one that does not (1,000,000): the cache's gain when it hits and
//! its cost when nearly every lookup misses.
//!
//! Run: `cargo bench --bench engine`. Compare the three throughputs of one run: the
//! pipeline's ratio to `parse_ignored` is what issue 7 tracks.

mod common;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use serde::de::IgnoredAny;

use credwatch::config::Config;
use credwatch::decode::{CloudTrailDecoder, Decoder, NativeDecoder};
use credwatch::demo;
use credwatch::engine::Engine;
use credwatch::event::{Event, Kind};
use credwatch::state::{Interner, NameCache, NameCaches};

/// One native event as the CloudTrail record AWS would log for it: accesses as API calls,
/// issuances as `CreateAccessKey`; other kinds have no CloudTrail form here (`None`).
fn cloudtrail(event: &Event, n: usize) -> Option<Vec<u8>> {
    let account = "123456789012";
    let ts = event.ts.to_rfc3339();
    let principal = event.principal.as_deref().unwrap_or("svc-bench");
    let identity = |key: &str| {
        serde_json::json!({
            "type": "IAMUser",
            "principalId": format!("AIDA{:016X}", n),
            "arn": format!("arn:aws:iam::{account}:user/{principal}"),
            "accountId": account,
            "accessKeyId": key,
            "userName": principal,
        })
    };
    let common = |name: &str, source: &str| {
        serde_json::json!({
            "eventVersion": "1.09",
            "eventTime": ts,
            "eventSource": source,
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": event.source_ip.as_deref().unwrap_or("AWS Internal"),
            "userAgent": event.user_agent.as_deref().unwrap_or("aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.debian.12"),
            "requestID": format!("{:032x}", n as u128 * 0x9e37_79b9_7f4a_7c15),
            "eventID": format!("{:08x}-{:04x}-4000-8000-{:012x}", n, n % 65536, n),
            "eventType": "AwsApiCall",
            "recipientAccountId": account,
            "eventCategory": "Management",
            "tlsDetails": {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": format!("{}", source),
            },
        })
    };
    let record = match event.kind {
        Kind::Access => {
            let endpoint = event.endpoint.as_deref().unwrap_or("sts:GetCallerIdentity");
            let (service, action) = endpoint
                .split_once(':')
                .unwrap_or(("execute-api", endpoint));
            let mut record = common(action, &format!("{service}.amazonaws.com"));
            record["userIdentity"] = identity(&event.credential);
            record["requestParameters"] = serde_json::json!({
                "bucketName": "bench-data",
                "key": format!("objects/{:06}.json", n % 100_000),
                "Host": format!("{service}.us-east-1.amazonaws.com"),
            });
            record["responseElements"] = serde_json::Value::Null;
            record["readOnly"] = serde_json::Value::Bool(true);
            record["managementEvent"] = serde_json::Value::Bool(false);
            record
        }
        Kind::Issue => {
            let mut record = common("CreateAccessKey", "iam.amazonaws.com");
            record["userIdentity"] = identity("ASIABENCHADMIN000001");
            let owner = event.owner.as_deref().unwrap_or(principal);
            record["requestParameters"] = serde_json::json!({ "userName": owner });
            record["responseElements"] = serde_json::json!({
                "accessKey": {
                    "accessKeyId": event.credential,
                    "status": "Active",
                    "userName": owner,
                    "createDate": ts,
                }
            });
            record
        }
        _ => return None,
    };
    serde_json::to_vec(&record).ok()
}

/// Times parse, decode and the whole pipeline over `lines` with `decoder`.
fn group_of(c: &mut Criterion, name: &str, lines: &[Vec<u8>], mut decoder: impl Decoder) {
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines.len() as u64));
    eprintln!("{name}: {} records, {} bytes", lines.len(), bytes);
    group.bench_function("parse_ignored", |b| {
        b.iter(|| {
            for line in lines {
                let _: IgnoredAny = serde_json::from_slice(line).expect("valid JSON");
            }
        })
    });
    group.bench_function("decode", |b| {
        let mut out = Vec::with_capacity(1);
        b.iter(|| {
            for line in lines {
                decoder.recycle(&mut out);
                decoder.decode(line, &mut out).expect("valid record");
            }
        })
    });
    let config = Config::parse("demo", demo::DEMO_CONFIG).expect("demo config");
    group.bench_function("pipeline", |b| {
        b.iter_batched(
            || common::builtin_engine(&config),
            |mut engine| {
                let mut events = Vec::with_capacity(1);
                let mut alerts = Vec::new();
                for line in lines {
                    decoder.recycle(&mut events);
                    decoder.decode(line, &mut events).expect("valid record");
                    for event in &events {
                        engine.process(event, &mut alerts);
                    }
                    alerts.clear();
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn cloudtrail_stages(c: &mut Criterion) {
    let mut events = Vec::new();
    for line in common::demo_lines(100) {
        NativeDecoder::new()
            .decode(&line, &mut events)
            .expect("valid event");
    }
    let records: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .filter_map(|(n, event)| cloudtrail(event, n))
        .collect();
    eprintln!(
        "cloudtrail: {} of {} demo events have a CloudTrail form",
        records.len(),
        events.len()
    );
    group_of(c, "cloudtrail", &records, CloudTrailDecoder);
}

fn stages(c: &mut Criterion) {
    group_of(c, "stages", &common::demo_lines(100), NativeDecoder::new());
}

/// Each stage once over the native corpus, in functions of its own, for an instruction count:
/// `scripts/count-instructions` runs this under callgrind, which counts the instructions of
/// each `once_*` function. Counts repeat exactly on the same build, whatever else the machine
/// does, so they show a change's effect where wall-clock intervals on a shared VM are wide.
fn once() {
    let lines = common::demo_lines(100);
    let config = Config::parse("demo", demo::DEMO_CONFIG).expect("demo config");
    let engine = common::builtin_engine(&config);
    once_parse_ignored(&lines);
    once_decode(&lines);
    let (alerts, suppressed) = once_pipeline(&lines, engine);
    println!(
        "events {} alerts {alerts} suppressed findings {suppressed}",
        lines.len()
    );
}

#[inline(never)]
fn once_parse_ignored(lines: &[Vec<u8>]) {
    for line in lines {
        let _: IgnoredAny = serde_json::from_slice(line).expect("valid JSON");
    }
}

#[inline(never)]
fn once_decode(lines: &[Vec<u8>]) {
    let mut out = Vec::with_capacity(1);
    let mut decoder = NativeDecoder::new();
    for line in lines {
        decoder.recycle(&mut out);
        decoder.decode(line, &mut out).expect("valid record");
    }
}

#[inline(never)]
fn once_pipeline(lines: &[Vec<u8>], mut engine: Engine) -> (usize, u64) {
    let mut events = Vec::with_capacity(1);
    let mut alerts = Vec::new();
    let mut raised = 0;
    let mut decoder = NativeDecoder::new();
    for line in lines {
        decoder.recycle(&mut events);
        decoder.decode(line, &mut events).expect("valid record");
        for event in &events {
            engine.process(event, &mut alerts);
        }
        raised += alerts.len();
        alerts.clear();
    }
    let suppressed = engine.stats().rules.values().map(|c| c.suppressed).sum();
    (raised, suppressed)
}

/// Principals as the generator names them, `count` distinct, in a shuffled order that
/// repeats none within `count` lookups (a stride coprime to it).
fn principal_names(count: usize) -> Vec<String> {
    let stride = 7_919;
    (0..count)
        .map(|i| {
            format!(
                "arn:aws:iam::123456789012:user/svc-{}",
                (i * stride) % count
            )
        })
        .collect()
}

fn names(c: &mut Criterion) {
    let mut group = c.benchmark_group("names");
    const LOOKUPS: usize = 1_000_000;
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    for count in [1_000, 1_000_000] {
        let names = principal_names(count);
        let interner = Interner::default();
        for name in &names {
            interner.intern(name);
        }
        let cycle = || names.iter().cycle().take(LOOKUPS);
        group.bench_function(format!("interner/{count}"), |b| {
            b.iter(|| {
                cycle()
                    .map(|name| interner.intern(name).index())
                    .sum::<usize>()
            })
        });
        let mut cache = NameCache::new(NameCaches::SLOTS);
        group.bench_function(format!("cache/{count}"), |b| {
            b.iter(|| {
                cycle()
                    .map(|name| cache.intern(&interner, name).index())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stages, cloudtrail_stages, names);

/// `ENGINE_ROUNDS=n`: the native group's three stages, interleaved (parse, decode, pipeline,
/// then again) `n` times in one process, printing each stage's fastest and median pass and the
/// pipeline's share of the parse rate by each. On a shared VM whose neighbours steal time in
/// bursts, a burst slows one pass, not a whole criterion sample of one stage; the fastest pass
/// is the least disturbed, and interleaving keeps drift out of the ratio.
fn rounds(n: usize) {
    use std::time::Instant;
    let lines = common::demo_lines(100);
    let config = Config::parse("demo", demo::DEMO_CONFIG).expect("demo config");
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        let start = Instant::now();
        once_parse_ignored(&lines);
        times[0].push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        once_decode(&lines);
        times[1].push(start.elapsed().as_secs_f64() * 1e3);
        let engine = common::builtin_engine(&config);
        let start = Instant::now();
        std::hint::black_box(once_pipeline(&lines, engine));
        times[2].push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mut summary = [(0.0, 0.0); 3];
    for (stage, passes) in times.iter_mut().enumerate() {
        passes.sort_by(f64::total_cmp);
        summary[stage] = (passes[0], passes[passes.len() / 2]);
    }
    println!("{} events a pass, {n} interleaved passes, ms", lines.len());
    for (name, (fastest, median)) in ["parse_ignored", "decode", "pipeline"].iter().zip(summary) {
        println!("  {name:14} fastest {fastest:7.2}  median {median:7.2}");
    }
    let ((parse_min, parse_median), (pipeline_min, pipeline_median)) = (summary[0], summary[2]);
    println!(
        "  pipeline's share of the parse rate: {:.3} by the fastest passes, {:.3} by the medians",
        parse_min / pipeline_min,
        parse_median / pipeline_median
    );
}

fn main() {
    if std::env::var_os("ENGINE_ONCE").is_some() {
        once();
        return;
    }
    if let Some(n) = std::env::var("ENGINE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        rounds(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
