//! JSON-RPC 2.0 messages as MCP sends them: requests (a method and an
//! id), notifications (a method, no id, never answered) and responses (an
//! id and a result or an error), alone or in a batch (a JSON array). Pure:
//! only the method, the id, a `tools/call`'s tool name and the outcome are
//! read; arguments, results and session ids are not.
use serde_json::Value;

/// One message's part that matters for counting.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        /// `params.name` of a `tools/call`.
        tool: Option<String>,
    },
    Notification {
        method: String,
    },
    Response {
        /// `null` when the peer could not tell which request it answers
        /// (a parse error, an invalid request).
        id: Value,
        outcome: Outcome,
    },
}

/// How a response ended its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC `error` object, and its code.
    Error(Option<i64>),
    /// A `tools/call` result with `isError: true`: the tool ran and failed.
    ToolError,
}

/// The messages in `docs` (each a message or a batch of them), in order;
/// values that are not JSON-RPC messages are skipped.
pub fn messages(docs: &[Value]) -> Vec<Message> {
    let mut out = Vec::new();
    for doc in docs {
        match doc {
            Value::Array(batch) => out.extend(batch.iter().filter_map(message)),
            single => out.extend(message(single)),
        }
    }
    out
}

/// One value as a message, if it is one. `jsonrpc` is not required: a
/// peer that leaves it out is still understood.
fn message(value: &Value) -> Option<Message> {
    let object = value.as_object()?;
    let id = object.get("id").filter(|id| valid_id(id));
    match object.get("method") {
        Some(Value::String(method)) => Some(match id {
            Some(id) => Message::Request {
                id: id.clone(),
                tool: (method == "tools/call")
                    .then(|| value.pointer("/params/name")?.as_str().map(str::to_owned))
                    .flatten(),
                method: method.clone(),
            },
            None if object.contains_key("id") => return None, // a bad id: neither
            None => Message::Notification {
                method: method.clone(),
            },
        }),
        Some(_) => None,
        None => {
            let outcome = if let Some(Value::Object(error)) = object.get("error") {
                Outcome::Error(error.get("code").and_then(Value::as_i64))
            } else if let Some(result) = object.get("result") {
                if result.get("isError") == Some(&Value::Bool(true)) {
                    Outcome::ToolError
                } else {
                    Outcome::Ok
                }
            } else {
                return None;
            };
            let id = object.get("id")?;
            (valid_id(id) || id.is_null()).then(|| Message::Response {
                id: id.clone(),
                outcome,
            })
        }
    }
}

/// A request id: a string or a number (JSON-RPC 2.0; MCP forbids null).
fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        let docs = [json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "search", "arguments": {"q": "x"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": true}},
            {"jsonrpc": "2.0", "id": 2, "result": {"tools": []}},
            {"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse"}},
            {"jsonrpc": "2.0", "id": null, "method": "bad"},
            {"jsonrpc": "2.0", "id": {"x": 1}, "result": {}},
            {"jsonrpc": "2.0", "id": 3},
            "text",
        ])];
        let expected = vec![
            Message::Request {
                id: json!(1),
                method: "tools/call".into(),
                tool: Some("search".into()),
            },
            Message::Notification {
                method: "notifications/initialized".into(),
            },
            Message::Request {
                id: json!("a"),
                method: "tools/list".into(),
                tool: None,
            },
            Message::Response {
                id: json!(1),
                outcome: Outcome::ToolError,
            },
            Message::Response {
                id: json!(2),
                outcome: Outcome::Ok,
            },
            Message::Response {
                id: Value::Null,
                outcome: Outcome::Error(Some(-32700)),
            },
        ];
        assert_eq!(messages(&docs), expected);
    }

    #[test]
    fn a_result_that_is_not_a_tool_result_is_ok() {
        let docs = [
            json!({"id": 7, "result": {"isError": "yes"}}),
            json!({"id": 8, "result": null}),
        ];
        let outcomes: Vec<Outcome> = messages(&docs)
            .into_iter()
            .map(|m| match m {
                Message::Response { outcome, .. } => outcome,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(outcomes, [Outcome::Ok, Outcome::Ok]);
    }
}
