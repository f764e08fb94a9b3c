//! See `loupe::fuzzing::probe_records`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::probe_records::run(data));
