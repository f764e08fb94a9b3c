use super::*;
use crate::protocols::http1::{
    exchange::BodyBytes,
    head::{Version, query_key},
};

const LIMIT: usize = 64 << 10;
const STREAM: u64 = 7;

fn event(name: &str, data: &str) -> Event {
    Event {
        name: name.into(),
        data: data.into(),
    }
}

fn post(target: &str, body: &str, status: u16, start_ns: u64) -> Exchange {
    Exchange {
        method: Method::Post,
        version: Version::Http11,
        tls: false,
        path: uri_path(target).into(),
        query_key: query_key(target),
        status: Some(status),
        auth: Default::default(),
        start_ns,
        first_byte_ns: start_ns + 1,
        end_ns: start_ns + 2,
        headers: Vec::new(),
        request_body: Some(BodyBytes::whole(body.as_bytes())),
        response_body: Some(BodyBytes::whole(b"Accepted")),
        error_type: None,
        rule: None,
    }
}

fn call(id: u32, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

fn answer(id: u32, is_error: bool) -> Event {
    let data =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"isError":{is_error}}}}}"#);
    event("message", &data)
}

fn summary(finished: &[Finished]) -> Vec<(Option<&str>, &str, &str, f64)> {
    finished
        .iter()
        .map(|f| {
            (
                f.call.tool.as_deref(),
                f.call.method,
                f.call.status.as_str(),
                f.seconds,
            )
        })
        .collect()
}

#[test]
fn a_session_matches_posts_and_events_in_either_order() {
    let mut sessions = Sessions::default();
    let end = End {
        service: 0,
        called: None,
    };
    let mut done = Vec::new();
    let endpoint = event("endpoint", "/messages/?session_id=abc");
    sessions.on_event(0, true, STREAM, 1, &endpoint, &mut done);
    let target = "/messages/?session_id=abc";
    assert!(sessions.wants(&Method::Post, "/messages/", LIMIT).request > 0);
    assert_eq!(
        sessions.wants(&Method::Get, "/messages/", LIMIT),
        BodyWants::default()
    );
    let first = post(target, &call(1, "add"), 202, 1_000_000_000);
    assert!(sessions.is_post(0, true, &first));
    assert!(!sessions.is_post(0, false, &first), "the other side");
    assert!(!sessions.is_post(1, true, &first), "another service");
    assert!(!sessions.is_post(0, true, &post("/messages/?session_id=x", "", 202, 0)));
    // Posted, then answered.
    assert_eq!(sessions.on_post(&end, &first, LIMIT, &mut done), None);
    assert!(done.is_empty());
    sessions.on_event(0, true, STREAM, 1_500_000_000, &answer(1, false), &mut done);
    // Answered before the 202 was written (and read).
    sessions.on_event(0, true, STREAM, 2_500_000_000, &answer(2, true), &mut done);
    let second = post(target, &call(2, "fail"), 202, 2_000_000_000);
    sessions.on_post(&end, &second, LIMIT, &mut done);
    assert_eq!(
        summary(&done),
        [
            (Some("add"), "tools/call", "ok", 0.5),
            (Some("fail"), "tools/call", "tool_error", 0.5)
        ]
    );
    // A post the server refused is answered by no event.
    done.clear();
    sessions.on_post(
        &end,
        &post(target, &call(3, "add"), 404, 3),
        LIMIT,
        &mut done,
    );
    assert_eq!(summary(&done)[0].2, "unanswered");
    // The stream closes with a request still waiting, and one answered
    // whose `202` comes after the close.
    done.clear();
    sessions.on_post(
        &end,
        &post(target, &call(4, "add"), 202, 0),
        LIMIT,
        &mut done,
    );
    sessions.on_event(0, true, STREAM, 3_500_000_000, &answer(5, false), &mut done);
    sessions.on_end(0, true, STREAM, 4_000_000_000, &mut done);
    // (its `202` unread: the client closed the connection once answered)
    let mut late = post(target, &call(5, "add"), 202, 3_000_000_000);
    late.status = None;
    assert!(sessions.is_post(0, true, &late));
    sessions.on_post(&end, &late, LIMIT, &mut done);
    // Posted after the close: no answer will come.
    sessions.on_post(
        &end,
        &post(target, &call(6, "add"), 202, 0),
        LIMIT,
        &mut done,
    );
    let statuses: Vec<&str> = done.iter().map(|f| f.call.status.as_str()).collect();
    assert_eq!(statuses, ["unanswered", "ok", "unanswered"]);
    assert_eq!(done[0].seconds, 4.0);
    sessions.expire(4_000_000_000 + CLOSED_NS + 1, &mut done);
    assert!(sessions.is_empty());
}

#[test]
fn sessions_and_ids_are_kept_apart() {
    let mut sessions = Sessions::default();
    let mut done = Vec::new();
    for (conn, uri) in [
        (1, "http://h:8/messages?sessionId=a"),
        (2, "/messages?sessionId=b"),
    ] {
        sessions.on_event(3, false, conn, 0, &event("endpoint", uri), &mut done);
    }
    assert_eq!(sessions.paths, ["/messages"]);
    let end = End {
        service: 3,
        called: Some("tools.internal".into()),
    };
    // The same id in two sessions; each answered on its own stream.
    for (session, start) in [("a", 10), ("b", 20)] {
        let posted = post(
            &format!("/messages?sessionId={session}"),
            &call(1, "add"),
            202,
            start,
        );
        sessions.on_post(&end, &posted, LIMIT, &mut done);
    }
    sessions.on_event(3, false, 2, 50, &answer(1, true), &mut done);
    sessions.on_event(3, false, 1, 110, &answer(1, false), &mut done);
    let statuses: Vec<(&str, u64)> = done
        .iter()
        .map(|f| (f.call.status.as_str(), (f.seconds * 1e9).round() as u64))
        .collect();
    assert_eq!(statuses, [("tool_error", 30), ("ok", 100)]);
    assert_eq!(done[0].end, end);
}

#[test]
fn a_stream_without_an_endpoint_is_not_followed_and_waits_expire() {
    let mut sessions = Sessions::default();
    let mut done = Vec::new();
    sessions.on_event(0, true, 1, 0, &answer(1, false), &mut done);
    sessions.on_event(0, true, 1, 0, &event("endpoint", "/messages/"), &mut done);
    assert!(sessions.is_empty() && done.is_empty());
    sessions.on_event(0, true, 1, 0, &event("endpoint", "/m?s=1"), &mut done);
    let end = End {
        service: 0,
        called: None,
    };
    // Notifications and a posted response are not requests.
    let body = r#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
                   {"jsonrpc":"2.0","id":9,"result":{}},
                   {"jsonrpc":"2.0","id":"x","method":"tools/list"}]"#;
    sessions.on_post(&end, &post("/m?s=1", body, 202, 5), LIMIT, &mut done);
    sessions.on_event(0, true, 1, 6, &answer(77, false), &mut done);
    assert_eq!(sessions.waiting.len() + sessions.early.len(), 2);
    sessions.expire(5 + WAIT_NS + 1, &mut done);
    assert_eq!(
        summary(&done),
        [(None, "tools/list", "unanswered", (WAIT_NS + 1) as f64 / 1e9)]
    );
    assert!(sessions.early.is_empty());
}

#[test]
fn with_no_room_the_stream_heard_of_least_lately_goes() {
    let mut sessions = Sessions::default();
    let mut done = Vec::new();
    for conn in 0..MAX_STREAMS as u64 {
        let endpoint = event("endpoint", &format!("/m?s={conn}"));
        sessions.on_event(0, true, conn, 10 + conn, &endpoint, &mut done);
    }
    // Stream 0 is heard of again; stream 1 is now the stalest.
    sessions.on_event(0, true, 0, 5_000, &answer(1, false), &mut done);
    let newest = event("endpoint", "/m?s=new");
    sessions.on_event(0, true, 9_999, 6_000, &newest, &mut done);
    assert_eq!(sessions.streams.len(), MAX_STREAMS);
    assert!(sessions.streams.contains_key(&(0, true, 0)));
    assert!(!sessions.streams.contains_key(&(0, true, 1)));
    assert!(sessions.is_post(0, true, &post("/m?s=new", "", 202, 0)));
}
