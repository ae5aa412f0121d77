//! The checkpoint reader on arbitrary bytes (a damaged or hostile checkpoint file).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    credwatch::fuzzing::checkpoint(data);
});
