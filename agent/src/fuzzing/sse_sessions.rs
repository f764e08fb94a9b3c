//! Arbitrary bytes as an event stream and MCP's HTTP+SSE sessions: any cut
//! of the bytes into pieces yields the same events, none longer than the
//! limit, and the sessions fed those events and posts built from them
//! never panic and stay bounded.
use crate::{
    enrich::mcp::sessions::{End, Sessions},
    protocols::http1::{
        exchange::{BodyBytes, Exchange},
        head::{Method, Version, query_key},
        sse::{Event, Splitter},
    },
};

fn split(pieces: impl Iterator<Item = impl AsRef<[u8]>>, limit: usize) -> Vec<Event> {
    let mut splitter = Splitter::new(limit);
    let mut events = Vec::new();
    for piece in pieces {
        splitter.feed(piece.as_ref(), &mut |e| events.push(e));
    }
    splitter.finish(&mut |e| events.push(e));
    events
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limit = 8 + usize::from(mode) * 4;
    let events = split(std::iter::once(rest), limit);
    let step = usize::from(mode % 7) + 1;
    assert_eq!(split(rest.chunks(step), limit), events);
    assert!(events.iter().all(|e| e.data.len() <= limit));

    let mut sessions = Sessions::default();
    let mut finished = Vec::new();
    let mut endpoint = "";
    for (i, event) in events.iter().enumerate() {
        let (conn, served, ts) = (i as u64 % 3, i % 2 == 0, i as u64 * 1_000);
        sessions.on_event(0, served, conn, ts, event, &mut finished);
        if event.name == "endpoint" {
            endpoint = &event.data;
            continue;
        }
        let post = Exchange {
            method: Method::Post,
            version: Version::Http11,
            tls: false,
            path: String::new(),
            query_key: query_key(endpoint),
            status: Some(if mode & 1 == 0 { 202 } else { 404 }),
            auth: Default::default(),
            start_ns: ts,
            first_byte_ns: ts,
            end_ns: ts + 1,
            headers: Vec::new(),
            request_body: Some(BodyBytes::whole(event.data.as_bytes())),
            response_body: None,
            error_type: None,
            rule: None,
        };
        let end = End {
            service: 0,
            called: (!served).then(|| "h".to_owned()),
        };
        if sessions.is_post(0, served, &post) {
            sessions.on_post(&end, &post, limit, &mut finished);
        }
        if mode & 2 != 0 {
            sessions.on_end(0, served, conn, ts, &mut finished);
        }
    }
    sessions.expire(u64::MAX, &mut finished);
    assert!(sessions.len() <= events.len());
    for done in &finished {
        assert!(done.seconds >= 0.0 && done.call.tool.as_ref().is_none_or(|t| t.len() <= 256));
    }
}
