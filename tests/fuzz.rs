//! Inputs fuzzing found (or seeded it with), replayed through the same harness bodies as the
//! cargo-fuzz targets in fuzz/: `tests/fuzz_regressions/<target>/*`. Each must run without a
//! panic; a crash once fixed stays fixed.

use std::path::Path;

use crate::util::repo;

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let dir = repo("tests/fuzz_regressions").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    inputs.sort();
    for input in &inputs {
        let bytes = std::fs::read(input).expect("read input");
        let name = input.file_name().map(Path::new).unwrap_or(input);
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        assert!(outcome.is_ok(), "{target} panicked on {}", name.display());
    }
    inputs.len()
}

#[test]
fn decoder_inputs_found_by_fuzzing_do_not_crash() {
    assert!(replay("decoders", credwatch::fuzzing::decoders) > 0);
}

#[test]
fn rule_inputs_found_by_fuzzing_do_not_crash() {
    assert!(replay("rules", credwatch::fuzzing::rules) > 0);
}

#[test]
fn config_inputs_found_by_fuzzing_do_not_crash() {
    assert!(replay("config", credwatch::fuzzing::config) > 0);
}

#[test]
fn checkpoint_inputs_found_by_fuzzing_do_not_crash() {
    assert!(replay("checkpoint", credwatch::fuzzing::checkpoint) > 0);
}

#[test]
fn partition_checkpoint_inputs_found_by_fuzzing_do_not_crash() {
    assert!(
        replay(
            "partition_checkpoint",
            credwatch::fuzzing::partition_checkpoint
        ) > 0
    );
}
