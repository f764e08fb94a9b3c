//! Ring-buffer records as the agent decodes them.

pub fn run(data: &[u8]) {
    if let Ok(crate::events::Event::Data(head, bytes)) = crate::events::decode(data) {
        assert_eq!(bytes.len(), head.captured as usize);
    }
}
