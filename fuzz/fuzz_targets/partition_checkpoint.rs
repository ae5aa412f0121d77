//! The per-partition checkpoint reader and merge on arbitrary bytes (a damaged or hostile file
//! on the shared checkpoint volume, read when a rebalance hands the partition over).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    credwatch::fuzzing::partition_checkpoint(data);
});
