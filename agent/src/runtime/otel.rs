//! The measurements loupe exports a second time under OpenTelemetry's
//! names (`export::otel`), when `[export] conventions` lists `"otel"`:
//! database operations, model calls and MCP requests (served requests go
//! through their cached series, `served`; calls through
//! `http_client_request_duration_seconds`, which carries both names'
//! labels).
use super::state::State;
use crate::{
    enrich::{
        llm::{self, ModelCall},
        mcp::{Call, Status},
    },
    export::{ServiceId, otel::OTHER_ERROR},
};

/// `server.address` and `server.port` of a `host` label (`name:port`,
/// `[v6]:port`, or a name alone: port empty), split where the model-call
/// host allowlist splits it (`llm::host_name`).
pub(super) fn address_and_port(host: &str) -> (&str, &str) {
    let name = llm::host_name(host);
    match host.get(name.len() + 1..) {
        Some(port) if !port.is_empty() => {
            (name.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (host, ""),
    }
}

/// `db.operation.name`: the command or statement keyword as the databases
/// write it; nothing for one loupe could not name.
fn db_operation(operation: &str) -> String {
    match operation {
        "other" | "unknown" => String::new(),
        known => known.to_ascii_uppercase(),
    }
}

/// The token counts OpenTelemetry reports: input with every kind of
/// prompt token (cached ones included), output with reasoning included.
fn input_and_output(call: &ModelCall) -> [(&'static str, u64); 2] {
    let of = |kind: &str| {
        call.tokens
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let mut input = of("input");
    if !call.cached_in_input {
        input += of("cache_read") + of("cache_creation");
    }
    let mut output = of("output");
    if !call.reasoning_in_output {
        output += of("reasoning");
    }
    [("input", input), ("output", output)]
}

/// A model call's loupe labels, already bounded.
pub(super) struct ModelLabels<'a> {
    pub(super) host: &'a str,
    pub(super) model: &'a str,
    /// The model asked for, empty if unknown.
    pub(super) requested: &'a str,
    /// Empty for a success.
    pub(super) error_type: &'a str,
}

impl State {
    /// A statement or a Redis command (`system` as OpenTelemetry names it).
    pub(super) fn otel_db(
        &self,
        id: &ServiceId,
        system: &str,
        operation: &str,
        error: bool,
        seconds: f64,
    ) {
        let Some(otel) = &self.export.metrics.otel else {
            return;
        };
        let operation = db_operation(operation);
        let labels = [system, &operation, if error { OTHER_ERROR } else { "" }];
        otel.db_client.of(id, &labels).observe(seconds);
    }

    /// A model call on `path` that took `seconds`; `first`: the time to
    /// its first chunk, for a stream.
    pub(super) fn otel_model_call(
        &self,
        id: &ServiceId,
        path: &str,
        call: &ModelCall,
        labels: &ModelLabels<'_>,
        (seconds, first): (f64, Option<f64>),
    ) {
        let Some(otel) = &self.export.metrics.otel else {
            return;
        };
        let (address, _) = address_and_port(labels.host);
        let operation = llm::operation_of(path);
        let error = match labels.error_type {
            "unknown" => OTHER_ERROR,
            kind => kind,
        };
        let named = [
            operation,
            call.provider,
            labels.requested,
            labels.model,
            address,
        ];
        let [o, p, rq, rs, a] = named;
        otel.gen_ai_duration
            .of(id, &[o, p, rq, rs, a, error])
            .observe(seconds);
        if call.error_type.is_some() || call.unread.is_some() {
            return;
        }
        if let Some(first) = first {
            otel.gen_ai_first_chunk.of(id, &named).observe(first);
        }
        for (kind, count) in input_and_output(call) {
            if count > 0 {
                let labels = [o, p, kind, rq, rs, a];
                otel.gen_ai_tokens.of(id, &labels).observe(count as f64);
            }
        }
    }

    /// An MCP request, on the client side to `host` (`None`: served).
    pub(super) fn otel_mcp(
        &self,
        id: &ServiceId,
        host: Option<&str>,
        call: &Call,
        tool: &str,
        seconds: f64,
    ) {
        let Some(otel) = &self.export.metrics.otel else {
            return;
        };
        let code;
        let error = match call.status {
            Status::Ok => "",
            Status::ToolError => "tool_error",
            Status::Error => match call.error_code {
                Some(c) => {
                    code = c.to_string();
                    &code
                }
                None => OTHER_ERROR,
            },
            Status::Unanswered => OTHER_ERROR,
        };
        match host {
            Some(host) => {
                let (address, port) = address_and_port(host);
                let labels = [call.method, tool, error, address, port];
                otel.mcp_client.of(id, &labels).observe(seconds);
            }
            None => {
                let labels = [call.method, tool, error];
                otel.mcp_server.of(id, &labels).observe(seconds);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_as_the_conventions_count_them() {
        let call = ModelCall::with_tokens;
        // Anthropic: cache reads and writes apart from input.
        let anthropic = call(
            &[
                ("input", 10),
                ("cache_read", 5),
                ("cache_creation", 2),
                ("output", 7),
            ],
            false,
            false,
        );
        assert_eq!(input_and_output(&anthropic), [("input", 17), ("output", 7)]);
        // OpenAI: cached inside input, reasoning inside output.
        let openai = call(
            &[
                ("input", 10),
                ("cache_read", 4),
                ("output", 9),
                ("reasoning", 3),
            ],
            true,
            true,
        );
        assert_eq!(input_and_output(&openai), [("input", 10), ("output", 9)]);
        // Gemini: thinking tokens reported apart from output.
        let gemini = call(
            &[
                ("input", 10),
                ("cache_read", 4),
                ("output", 9),
                ("reasoning", 3),
            ],
            true,
            false,
        );
        assert_eq!(input_and_output(&gemini), [("input", 10), ("output", 12)]);
        assert_eq!(db_operation("select"), "SELECT");
        assert_eq!(db_operation("other"), "");
    }

    #[test]
    fn addresses_take_the_conventions_values() {
        assert_eq!(address_and_port("api.openai.com"), ("api.openai.com", ""));
        assert_eq!(address_and_port("127.0.0.1:8080"), ("127.0.0.1", "8080"));
        assert_eq!(address_and_port("[::1]:443"), ("::1", "443"));
        assert_eq!(address_and_port("[::1]"), ("[::1]", ""));
    }
}
