//! Arbitrary bytes as AWS event-stream messages (Bedrock's streamed
//! answers): the framing never panics, never reads past the input, and
//! what it yields fits in what it was given.
use crate::enrich::llm::eventstream::{frame, messages};

pub fn run(data: &[u8]) {
    let (found, _) = messages(data);
    let payloads: usize = found.iter().map(|m| m.payload.len()).sum();
    // Each message spends at least 16 bytes of framing.
    assert!(payloads + 16 * found.len() <= data.len());
    for message in &found {
        let start = message.payload.as_ptr() as usize;
        let base = data.as_ptr() as usize;
        assert!(start >= base && start + message.payload.len() <= base + data.len());
    }
    // What it frames, it reads back.
    let framed = frame(&[(":event-type", "chunk")], data);
    let (again, err) = messages(&framed);
    assert!(err.is_none() && again.len() == 1 && again[0].payload == data);
}
