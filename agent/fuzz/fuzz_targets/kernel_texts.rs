//! See `loupe::fuzzing::kernel_texts`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::kernel_texts::run(data));
