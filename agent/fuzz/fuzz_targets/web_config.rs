//! See `loupe::fuzzing::web_config`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::web_config::run(data));
