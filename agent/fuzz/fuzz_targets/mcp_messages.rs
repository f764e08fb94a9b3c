//! See `loupe::fuzzing::mcp_messages`: the body is shared with the seed replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| loupe::fuzzing::mcp_messages::run(data));
