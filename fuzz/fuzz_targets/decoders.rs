//! Every input format's decoder, and the container splitter, on arbitrary bytes: none may
//! panic, and whatever they accept must run through an engine without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    credwatch::fuzzing::decoders(data);
});
