//! Embedding the detection core: decode native events, run them through an [`Engine`] with the
//! built-in rules and a config, and handle the alerts yourself.
//!
//! Run: `cargo run --release --example embed_engine -- examples/events.jsonl`

use std::io::BufRead;

use credwatch::config::Config;
use credwatch::decode::{Decoder, NativeDecoder};
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/events.jsonl".into());
    let config = Config::load(std::path::Path::new("examples/credwatch.toml"))?;
    let rules = RuleSet::builtin(&config)?;
    let mut engine = Engine::new(config, rules);

    let mut decoder = NativeDecoder::new();
    let mut events = Vec::new();
    let mut alerts = Vec::new();
    for (number, line) in std::io::BufReader::new(std::fs::File::open(&path)?)
        .lines()
        .enumerate()
    {
        // Hands the last line's events back, so the decoder reuses their strings.
        decoder.recycle(&mut events);
        if let Err(error) = decoder.decode(line?.as_bytes(), &mut events) {
            eprintln!("{path}:{}: {error}", number + 1);
            continue;
        }
        for event in &events {
            engine.process(event, &mut alerts);
        }
    }
    engine.finish(&mut alerts);
    for alert in &alerts {
        println!(
            "[{}] {} {}: {}",
            alert.severity, alert.rule, alert.credential, alert.summary
        );
    }
    println!("{} events, {} alerts", engine.stats().events, alerts.len());
    Ok(())
}
