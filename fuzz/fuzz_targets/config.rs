//! The configuration loader (zones, CIDRs, issuers, exceptions' references) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    credwatch::fuzzing::config(data);
});
