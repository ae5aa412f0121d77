//! Stage benchmarks over the demo's synthetic traffic (native JSON lines):
//! - `parse_ignored`: serde_json into `IgnoredAny`, the practical limit for any JSON decoder;
//! - `decode_native`: the native decoder alone;
//! - `pipeline`: decode + zones + state + ten detectors + suppression, one engine.
//!
//! Run: `cargo bench --bench engine`. Compare the three throughputs of one run: the
//! pipeline's ratio to `parse_ignored` is what issue 7 tracks.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::de::IgnoredAny;

use credwatch::config::Config;
use credwatch::decode::{Decoder, NativeDecoder};
use credwatch::demo::{self, DemoOptions};
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;

/// Native JSON lines of a small demo day (about 300k events).
fn corpus() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("credwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("day.jsonl");
    let options = DemoOptions {
        seed: 7,
        credentials: 100,
        write_events: Some(path.clone()),
        kafka: None,
    };
    demo::run(&options, None).expect("demo run");
    let text = std::fs::read(&path).expect("read events");
    let _ = std::fs::remove_dir_all(&dir);
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn stages(c: &mut Criterion) {
    let lines = corpus();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines.len() as u64));
    eprintln!("corpus: {} events, {} bytes", lines.len(), bytes);

    group.bench_function("parse_ignored", |b| {
        b.iter(|| {
            for line in &lines {
                let _: IgnoredAny = serde_json::from_slice(line).expect("valid JSON");
            }
        })
    });
    group.bench_function("decode_native", |b| {
        let mut out = Vec::with_capacity(1);
        b.iter(|| {
            for line in &lines {
                out.clear();
                NativeDecoder.decode(line, &mut out).expect("valid event");
            }
        })
    });
    let config = Config::parse("demo", demo::DEMO_CONFIG).expect("demo config");
    group.bench_function("pipeline", |b| {
        b.iter_batched(
            || Engine::new(config.clone(), RuleSet::builtin(&config).expect("rules")),
            |mut engine| {
                let mut events = Vec::with_capacity(1);
                let mut alerts = Vec::new();
                for line in &lines {
                    events.clear();
                    NativeDecoder
                        .decode(line, &mut events)
                        .expect("valid event");
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

criterion_group!(benches, stages);
criterion_main!(benches);
