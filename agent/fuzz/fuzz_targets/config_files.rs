//! See `loupe::fuzzing::config_files`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::config_files::run(data));
