//! Arbitrary bytes as an MCP message post and its answer (JSON, a batch,
//! or an event stream; whole or cut short): the JSON-RPC reader never
//! panics, counts each request once, and what it exports is bounded.
use crate::{
    enrich::mcp::{Status, method_label, read_exchange},
    protocols::http1::exchange::BodyBytes,
};

const LIMIT: usize = 16 << 10;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Bits 0-1: an event stream, cut short; the rest: where the post ends.
    let split = rest.len() * usize::from(mode >> 2) / 64;
    let (request, answer) = rest.split_at(split);
    let mut answered = BodyBytes::whole(answer);
    answered.event_stream = mode & 1 != 0;
    answered.complete = mode & 2 == 0;
    let read = read_exchange(Some(&BodyBytes::whole(request)), Some(&answered), LIMIT);
    // No more requests than `"method"` appears in the post.
    let methods = request.windows(8).filter(|w| w == b"\"method\"").count();
    assert!(read.calls.len() <= methods);
    for call in &read.calls {
        assert_eq!(method_label(call.method), call.method);
        if let Some(tool) = &call.tool {
            assert_eq!(call.method, "tools/call");
            assert!(tool.chars().count() <= 64 && !tool.chars().any(char::is_control));
        }
        if call.status != Status::Unanswered {
            assert!(answer.windows(4).any(|w| w == b"\"id\""));
        }
    }
}
