//! See `loupe::fuzzing::endpoint_requests`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::endpoint_requests::run(data));
