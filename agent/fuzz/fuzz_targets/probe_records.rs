//! Ring-buffer records as the agent decodes them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loupe::events::Event::Data(head, bytes)) = loupe::events::decode(data) {
        assert_eq!(bytes.len(), head.captured as usize);
    }
});
