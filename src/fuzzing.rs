//! Fuzz harness bodies, shared by the cargo-fuzz targets in `fuzz/` and by the tests that
//! replay what fuzzing found (`tests/fuzz.rs`), so an input that once crashed stays a test.
//!
//! Each takes arbitrary bytes and must return without panicking, whatever they hold.

use std::sync::OnceLock;

use crate::checkpoint::{Checkpoint, PartitionCheckpoint};
use crate::config::Config;
use crate::decode::{
    decode_as_derived, split_records, Decoder, Format, NativeDecoder, SecretHasher,
};
use crate::engine::Engine;
use crate::event::{Event, Kind};
use crate::rules::{RuleSet, RuleSource};
use crate::time::Timestamp;

/// A configuration with a few zones and the built-in rules, built once.
fn setup() -> &'static (Config, RuleSet) {
    static SETUP: OnceLock<(Config, RuleSet)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = Config::parse(
            "fuzz.toml",
            "[learning]\nmin_events = 2\nmin_age = \"1m\"\n\n[[zones]]\nname = \"prod\"\ncidrs = [\"10.0.0.0/16\", \"2001:db8::/32\"]\nenvironments = [\"production\"]\n\n[[zones]]\nname = \"ci\"\ncidrs = [\"10.2.0.0/16\"]\n",
        )
        .unwrap_or_else(|error| panic!("the fuzzing config is valid: {error}"));
        let rules = RuleSet::builtin(&config)
            .unwrap_or_else(|error| panic!("the built-in rules load: {error}"));
        (config, rules)
    })
}

/// Every decoder on `data` (split as a container first, as sources do); whatever decodes runs
/// through a fresh engine. The native decoder must also agree with the derived `Deserialize`
/// of [`Event`] on every element: the same event or the same error.
pub fn decoders(data: &[u8]) {
    native_agrees_with_the_derived_reader(data);
    let (config, rules) = setup();
    let mut engine = Engine::new(config.clone(), rules.clone());
    let hasher = SecretHasher::default();
    let mut events = Vec::new();
    let mut alerts = Vec::new();
    for format in Format::ALL {
        let mut decoder = format.decoder_with(&hasher);
        for element in split_records(data) {
            decoder.recycle(&mut events);
            if decoder.decode(element, &mut events).is_ok() {
                for event in &events {
                    engine.process(event, &mut alerts);
                }
            }
        }
    }
    engine.finish(&mut alerts);
    for alert in &alerts {
        let _ = alert.to_json();
    }
}

/// The hand-written native reader against the derived one, element by element, reading into
/// events recycled from the elements before.
fn native_agrees_with_the_derived_reader(data: &[u8]) {
    let mut decoder = NativeDecoder::new();
    let mut events = Vec::new();
    for element in split_records(data) {
        decoder.recycle(&mut events);
        let read = decoder.decode(element, &mut events);
        match (read, decode_as_derived(element)) {
            (Ok(()), Ok(derived)) => assert_eq!(
                &events[0], &derived,
                "the native reader disagrees with the derived one"
            ),
            (Ok(()), Err(_)) => panic!("the native reader accepted what the derived one rejects"),
            (Err(error), Ok(_)) => panic!(
                "the native reader rejects what the derived one accepts: {}",
                error.reason
            ),
            (Err(_), Err(_)) => {}
        }
    }
}

/// The rule loader on `data` as a rule file (its inline cases run when it loads).
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (config, _) = setup();
    let source = RuleSource {
        name: "fuzz.toml".to_owned(),
        text: text.to_owned(),
        dir: None,
    };
    let _ = RuleSet::from_sources(vec![source], config);
}

/// The configuration loader on `data` as a config file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse("fuzz.toml", text) {
        let _ = config.describe();
    }
}

/// A checkpoint's payload (past its checksum, which random bytes never pass): decoded, then
/// restored into an engine that goes on processing and shows every credential.
pub fn checkpoint(data: &[u8]) {
    let Ok(mut checkpoint) = Checkpoint::decode_payload(data) else {
        return;
    };
    let _ = checkpoint.describe();
    let (config, rules) = setup();
    // Past the zones check, so hostile zone ids, symbols and windows are what gets tested.
    checkpoint.engine.zones = config.zones.names().to_vec();
    let mut engine = Engine::new(config.clone(), rules.clone());
    let credentials: Vec<String> = checkpoint
        .engine
        .store
        .credentials
        .iter()
        .take(64)
        .map(|(credential, _)| credential.clone())
        .collect();
    if engine.restore(checkpoint.engine).is_err() {
        return;
    }
    exercise(&mut engine, &credentials, config);
    let _ = engine.snapshot();
}

/// A partition checkpoint's payload (as read from a shared volume at a rebalance): decoded,
/// merged into an engine that already holds state of its own, which goes on processing,
/// shows every credential, and splits its state into shares again.
pub fn partition_checkpoint(data: &[u8]) {
    let Ok(mut checkpoint) = PartitionCheckpoint::decode_payload(data) else {
        return;
    };
    let _ = checkpoint.describe();
    let (config, rules) = setup();
    checkpoint.share.zones = config.zones.names().to_vec();
    let mut engine = Engine::new(config.clone(), rules.clone());
    let mut held = Event::new(
        Timestamp::from_secs(1_772_323_100),
        Kind::Issue,
        "held".to_owned(),
    );
    held.owner = Some("team".to_owned());
    held.endpoint = Some("s3:GetObject".to_owned());
    engine.set_home(1);
    engine.process(&held, &mut Vec::new());
    let credentials: Vec<String> = checkpoint
        .share
        .store
        .credentials
        .iter()
        .take(64)
        .map(|(credential, _)| credential.clone())
        .chain(["held".to_owned()])
        .collect();
    if engine.absorb(checkpoint.share, 2).is_err() {
        return;
    }
    exercise(&mut engine, &credentials, config);
    let _ = engine.shares(&[1, 2]);
    engine.forget(2);
}

/// Every kind of event for each credential, through the engine, then its end.
fn exercise(engine: &mut Engine, credentials: &[String], config: &Config) {
    let mut alerts = Vec::new();
    let at = Timestamp::from_secs(1_772_323_200);
    for (i, credential) in credentials.iter().enumerate() {
        let _ = engine.state().view(credential, config);
        for kind in Kind::ALL {
            let mut event = Event::new(at, kind, credential.clone());
            event.source_ip = Some(
                if i % 2 == 0 {
                    "10.0.1.5"
                } else {
                    "203.0.113.9"
                }
                .to_owned(),
            );
            event.endpoint = Some("s3:GetObject".to_owned());
            event.event_id = format!("fuzz-{i}-{}", kind.as_str());
            engine.process(&event, &mut alerts);
        }
    }
    engine.finish(&mut alerts);
}
