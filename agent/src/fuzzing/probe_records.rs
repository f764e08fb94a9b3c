//! Ring-buffer records as the agent decodes them.

pub fn run(data: &[u8]) {
    if let Ok(crate::capture::records::Event::Data(head, bytes)) =
        crate::capture::records::decode(data)
    {
        assert_eq!(bytes.len(), head.captured as usize);
    }
}
