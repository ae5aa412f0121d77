//! `credwatch gen`: the demo's synthetic organisation as files, for benchmarks, tests and other
//! tools. Native JSON lines of one day in time order, and a ground-truth file listing the
//! injected misuse (one JSON object per scenario: name, detector, credential, start).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{scenarios, World};

/// What `gen` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    pub credentials: usize,
    pub events: u64,
    pub scenarios: usize,
}

/// Writes a day for `credentials` credentials (at least 100) from `seed` to `events`, and the
/// ground truth to `truth` when given. The same seed and size give the same bytes. `progress`
/// (a terminal's bar) counts the events written.
pub fn generate(
    seed: u64,
    credentials: usize,
    events: &Path,
    truth: Option<&Path>,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Generated> {
    let mut world = World::generate(seed, credentials);
    let injected = scenarios::inject(&mut world);
    world.sort();
    if let Some(progress) = progress {
        progress.set_length(world.plan.len() as u64);
    }
    let mut out = BufWriter::new(
        File::create(events).with_context(|| format!("cannot create {}", events.display()))?,
    );
    for (sequence, planned) in world.plan.iter().enumerate() {
        serde_json::to_writer(&mut out, &world.render(planned, sequence as u64))?;
        out.write_all(b"\n")?;
        if let Some(progress) = progress.filter(|_| sequence.is_multiple_of(65_536)) {
            progress.set_position(sequence as u64);
        }
    }
    if let Some(progress) = progress {
        progress.finish_and_clear();
    }
    out.flush()?;
    if let Some(truth) = truth {
        let mut out = BufWriter::new(
            File::create(truth).with_context(|| format!("cannot create {}", truth.display()))?,
        );
        for scenario in &injected {
            let line = json!({
                "name": scenario.name,
                "detector": scenario.detector.as_str(),
                "credential": scenario.credential,
                "start": scenario.start,
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(Generated {
        credentials: world.credentials.len(),
        events: world.plan.len() as u64,
        scenarios: injected.len(),
    })
}
