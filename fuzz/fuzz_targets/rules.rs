//! The rule loader (TOML, detector parameters, scope, inline test cases) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    credwatch::fuzzing::rules(data);
});
