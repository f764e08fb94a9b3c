use super::*;

const LIMIT: usize = 64 << 10;

fn body(text: &str, event_stream: bool) -> BodyBytes {
    let mut body = BodyBytes::whole(text.as_bytes());
    body.event_stream = event_stream;
    body
}

fn read(request: &str, response: &str, event_stream: bool) -> Read {
    read_exchange(
        Some(&body(request, false)),
        Some(&body(response, event_stream)),
        LIMIT,
    )
}

fn statuses(read: &Read) -> Vec<(&str, Option<&str>, &str)> {
    read.calls
        .iter()
        .map(|c| (c.method, c.tool.as_deref(), c.status.as_str()))
        .collect()
}

#[test]
fn a_tool_call_answered_in_json() {
    let read = read(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hit"}],"isError":false}}"#,
        false,
    );
    assert_eq!(statuses(&read), [("tools/call", Some("search"), "ok")]);
    assert_eq!(read.unread, None);
}

#[test]
fn an_answer_in_a_stream_is_found_by_id_past_the_servers_own_messages() {
    // The TypeScript SDK writes the id last; the server logs and asks the
    // client something before it answers.
    let stream = "event: message\r\n\
        data: {\"method\":\"notifications/message\",\"params\":{\"level\":\"info\"},\"jsonrpc\":\"2.0\"}\r\n\r\n\
        event: message\r\n\
        data: {\"method\":\"roots/list\",\"jsonrpc\":\"2.0\",\"id\":0}\r\n\r\n\
        event: message\r\n\
        id: 5\r\n\
        data: {\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"boom\"}],\"isError\":true},\"jsonrpc\":\"2.0\",\"id\":0}\r\n\r\n";
    let read = read(
        r#"{"method":"tools/call","params":{"name":"fail","arguments":{}},"jsonrpc":"2.0","id":0}"#,
        stream,
        true,
    );
    assert_eq!(
        statuses(&read),
        [("tools/call", Some("fail"), "tool_error")]
    );
}

#[test]
fn a_batch_is_answered_per_request_and_notifications_are_not_requests() {
    let read = read(
        r#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":"b","method":"resources/read","params":{"uri":"file:///x"}},
            {"jsonrpc":"2.0","id":"a","method":"tools/list"},
            {"jsonrpc":"2.0","id":9,"method":"vendor/custom"}]"#,
        r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[]}},
            {"jsonrpc":"2.0","id":"b","error":{"code":-32002,"message":"Resource not found"}}]"#,
        false,
    );
    assert_eq!(
        statuses(&read),
        [
            ("resources/read", None, "error"),
            ("tools/list", None, "ok"),
            ("other", None, "unanswered"),
        ]
    );
}

#[test]
fn an_error_without_an_id_answers_a_post_of_one_request_only() {
    let error = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#;
    let one = read(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        error,
        false,
    );
    assert_eq!(statuses(&one), [("tools/list", None, "error")]);
    let two = read(
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
        error,
        false,
    );
    assert_eq!(
        statuses(&two),
        [
            ("tools/list", None, "unanswered"),
            ("ping", None, "unanswered")
        ]
    );
}

#[test]
fn notifications_alone_are_answered_202_and_count_nothing() {
    let read = read(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#,
        "",
        false,
    );
    assert_eq!(read, Read::default());
}

#[test]
fn a_cut_answer_is_reported_only_where_it_left_a_request_unanswered() {
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    let mut answer = body(
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\nevent: message\ndata: {\"jsonrpc\"",
        true,
    );
    answer.complete = false;
    let answered = read_exchange(Some(&body(request, false)), Some(&answer), LIMIT);
    assert_eq!(statuses(&answered), [("tools/call", Some("t"), "ok")]);
    assert_eq!(answered.unread, None);
    let mut cut = body("{\"jsonrpc\":\"2.0\",\"id\":1,\"res", false);
    cut.complete = false;
    let unanswered = read_exchange(Some(&body(request, false)), Some(&cut), LIMIT);
    assert_eq!(
        statuses(&unanswered),
        [("tools/call", Some("t"), "unanswered")]
    );
    assert_eq!(unanswered.unread, Some(RuleError::Truncated));
    let uncaptured = read_exchange(None, Some(&cut), LIMIT);
    assert!(uncaptured.calls.is_empty());
    assert_eq!(uncaptured.unread, Some(RuleError::NotCaptured));
}

#[test]
fn tool_names_are_printable_and_bounded() {
    let name = format!("a\u{7}{}", "x".repeat(100));
    let request = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}"}}}}"#,
        name.replace('\u{7}', "\\u0007")
    );
    let read = read(&request, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false);
    let tool = read.calls[0].tool.as_deref().unwrap_or_default();
    assert_eq!(tool.len(), MAX_TOOL_LEN);
    assert!(tool.starts_with("ax"));
}

#[test]
fn only_posts_on_the_configured_paths_are_mcp() {
    let config = McpConfig {
        paths: ["/mcp", "/{tenant}/mcp"]
            .iter()
            .filter_map(|p| Template::parse(p))
            .collect(),
        sse_paths: ["/{tenant}/sse"]
            .iter()
            .filter_map(|p| Template::parse(p))
            .collect(),
        max_body: 4096,
        max_tools: 10,
    };
    let post = Method::parse("POST");
    assert_eq!(config.wants(&post, "/mcp").request, 4096);
    assert_eq!(config.wants(&post, "/acme/mcp").response, 4096);
    assert_eq!(
        config.wants(&Method::parse("GET"), "/mcp"),
        BodyWants::default()
    );
    assert_eq!(config.wants(&post, "/api/chat"), BodyWants::default());
    let live = config.wants(&Method::parse("GET"), "/acme/sse");
    assert!(live.live && live.response == 4096 && live.request == 0);
    let prefixes: Vec<(String, usize)> = config.response_prefixes().collect();
    // (`/{tenant}/sse` is no capture route: `GET /` would copy every
    // answer.)
    let expected = [("POST /mcp".to_owned(), 4096), ("POST /".to_owned(), 4096)];
    assert_eq!(prefixes, expected);
}
