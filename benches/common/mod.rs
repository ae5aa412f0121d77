//! What more than one bench needs: the demo's traffic as native JSON lines, and an engine with
//! the built-in rules.

use credwatch::config::Config;
use credwatch::demo::{self, DemoOptions};
use credwatch::engine::Engine;
use credwatch::rules::RuleSet;

/// An engine under `config` with the built-in rules.
pub fn builtin_engine(config: &Config) -> Engine {
    Engine::new(config.clone(), RuleSet::builtin(config).expect("rules"))
}

/// Native JSON lines of one demo day (seed 7) of `credentials` credentials: 100 give about
/// 270k events.
pub fn demo_lines(credentials: usize) -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("credwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("day.jsonl");
    let options = DemoOptions {
        seed: 7,
        credentials,
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
