//! `docs/metrics.md`, rendered from the catalogue: the families grouped by
//! how they are measured, each group with PromQL examples (which the
//! end-to-end test evaluates against a real Prometheus).
use super::catalogue::{self as c, Def};

/// How a group of families is measured.
pub struct Section {
    pub title: &'static str,
    pub measured: &'static str,
    pub defs: &'static [Def],
    /// (what it answers, PromQL).
    pub examples: &'static [(&'static str, &'static str)],
}

pub const SECTIONS: &[Section] = &[
    Section {
        title: "HTTP requests",
        measured: "eBPF: the service's own socket reads and writes, parsed as HTTP/1.x or \
                   HTTP/2 (docs/capture.md).",
        defs: &[
            c::AGENT_REQUESTS,
            c::AGENT_REQUESTS_ABANDONED,
            c::AGENT_REQUEST_DURATION,
            c::AGENT_RESPONSE_FIRST_BYTE,
            c::AGENT_REQUESTS_BY_PRINCIPAL,
        ],
        examples: &[
            (
                "Requests per second by endpoint",
                "sum by (service, method, endpoint) (rate(agent_requests_total[5m]))",
            ),
            (
                "Share of 5xx answers",
                "sum by (service) (rate(agent_requests_total{status=~\"5..\"}[5m])) / sum by \
                 (service) (rate(agent_requests_total[5m]))",
            ),
            (
                "Requests whose clients gave up, per second by endpoint",
                "sum by (service, endpoint) (rate(agent_requests_abandoned_total[5m]))",
            ),
            (
                "P95 latency by endpoint",
                "histogram_quantile(0.95, sum by (service, endpoint, le) \
                 (rate(agent_request_duration_seconds_bucket[5m])))",
            ),
            (
                "Requests by authentication scheme",
                "sum by (service, auth_type) (rate(agent_requests_total[5m]))",
            ),
        ],
    },
    Section {
        title: "gRPC calls",
        measured: "eBPF: the HTTP/2 streams whose request is application/grpc*, served \
                   (the requests above) or made (the calls below), with each message's prefix \
                   read from the DATA frames and the status from the grpc-status trailer \
                   (docs/capture.md). Names and labels follow grpc-ecosystem's Prometheus \
                   interceptors.",
        defs: &[
            c::GRPC_SERVER_STARTED,
            c::GRPC_SERVER_HANDLED,
            c::GRPC_SERVER_HANDLING,
            c::GRPC_SERVER_MSG_RECEIVED,
            c::GRPC_SERVER_MSG_SENT,
            c::GRPC_CLIENT_STARTED,
            c::GRPC_CLIENT_HANDLED,
            c::GRPC_CLIENT_HANDLING,
            c::GRPC_CLIENT_MSG_RECEIVED,
            c::GRPC_CLIENT_MSG_SENT,
        ],
        examples: &[
            (
                "Share of calls not OK, by method",
                "sum by (service, grpc_service, grpc_method) \
                 (rate(grpc_server_handled_total{grpc_code!=\"OK\"}[5m])) / sum by (service, \
                 grpc_service, grpc_method) (rate(grpc_server_handled_total[5m]))",
            ),
            (
                "Calls in flight",
                "sum by (service) (grpc_server_started_total) - sum by (service) \
                 (grpc_server_handled_total)",
            ),
            (
                "P99 handling time by method",
                "histogram_quantile(0.99, sum by (service, grpc_method, le) \
                 (rate(grpc_server_handling_seconds_bucket[5m])))",
            ),
        ],
    },
    Section {
        title: "Business metrics from route rules",
        measured: "Derived: route rules (docs/rules.md) applied to the requests above, with \
                   label values from paths, headers and JSON bodies.",
        defs: &[
            c::AUTH_LOGIN,
            c::AUTH_TOKEN_REFRESH,
            c::AUTH_FAILED_ATTEMPTS,
            c::AGENT_INVOCATIONS,
            c::AGENT_EXECUTION_DURATION,
            c::AGENT_TOKENS_USED,
            c::TOOL_INVOCATIONS,
            c::TOOL_EXECUTION_DURATION,
        ],
        examples: &[
            (
                "Login success ratio by provider",
                "sum by (service, provider) (rate(auth_login_total{success=\"true\"}[5m])) / \
                 sum by (service, provider) (rate(auth_login_total[5m]))",
            ),
            (
                "Failed authentication attempts by reason",
                "sum by (service, reason) (increase(auth_failed_attempts_total[1h]))",
            ),
            (
                "P95 agent execution time",
                "histogram_quantile(0.95, sum by (service, agent_name, le) \
                 (rate(agent_execution_duration_seconds_bucket[5m])))",
            ),
            (
                "Tokens per hour by agent and type",
                "sum by (service, agent_name, token_type) (increase(agent_tokens_used_total[1h]))",
            ),
            (
                "Tool error ratio",
                "sum by (service, tool_name) (rate(tool_invocations_total{status=\"error\"}[5m])) \
                 / sum by (service, tool_name) (rate(tool_invocations_total[5m]))",
            ),
        ],
    },
    Section {
        title: "Database and Redis, from the service's connections",
        measured: "eBPF: the service's client sockets, parsed as the PostgreSQL, MySQL and \
                   Redis protocols.",
        defs: &[
            c::DB_QUERIES,
            c::DB_QUERY_DURATION,
            c::DB_POOL_SIZE,
            c::DB_POOL_CHECKED_OUT,
            c::REDIS_OPERATIONS,
            c::REDIS_OPERATION_DURATION,
            c::REDIS_OPERATION_ERRORS,
            c::REDIS_CONNECTIONS_ACTIVE,
        ],
        examples: &[
            (
                "Pool utilisation",
                "sum by (service, db_system) (db_pool_checked_out) / sum by (service, \
                 db_system) (db_pool_size)",
            ),
            (
                "Statements per second by type",
                "sum by (service, db_system, query_type) (rate(db_queries_total[5m]))",
            ),
            (
                "P99 Redis command time by command",
                "histogram_quantile(0.99, sum by (service, operation, le) \
                 (rate(redis_operation_duration_seconds_bucket[5m])))",
            ),
        ],
    },
    Section {
        title: "HTTP calls and model providers, from the service's connections",
        measured: "eBPF: the service's client sockets, and OpenSSL's plaintext through \
                   uprobes, parsed as HTTP/1.x or HTTP/2; model calls by request path (the APIs \
                   loupe knows, or [llm] paths in the configuration), tokens from the response's \
                   usage object, error types from an unsuccessful response.",
        defs: &[
            c::HTTP_CLIENT_REQUESTS,
            c::HTTP_CLIENT_REQUEST_DURATION,
            c::LLM_REQUESTS,
            c::LLM_TOKENS_USED,
            c::LLM_COST,
            c::LLM_REQUEST_DURATION,
            c::LLM_TIME_TO_FIRST_TOKEN,
            c::LLM_PROVIDER_DURATION,
        ],
        examples: &[
            (
                "Calls per second by host and status",
                "sum by (service, host, status) (rate(http_client_requests_total[5m]))",
            ),
            (
                "Share of model calls that failed, by provider",
                "sum by (service, provider) (rate(llm_requests_total{error_type!=\"\"}[5m])) / \
                 sum by (service, provider) (rate(llm_requests_total[5m]))",
            ),
            (
                "Spend per hour by service and model (with [llm.prices])",
                "sum by (service, model) (rate(llm_cost_dollars_total[5m])) * 3600",
            ),
            (
                "Output tokens per minute by model",
                "sum by (service, model) (rate(llm_tokens_used_total{token_type=\"output\"}[5m])) * 60",
            ),
            (
                "P95 time to first token",
                "histogram_quantile(0.95, sum by (service, model, le) \
                 (rate(llm_time_to_first_token_seconds_bucket[5m])))",
            ),
        ],
    },
    Section {
        title: "MCP tool calls",
        measured: "eBPF: message posts of MCP's streamable HTTP transport ([mcp] paths) that the \
                   service sends or answers, their JSON-RPC requests matched by id with the \
                   responses in the answer (JSON or an event stream).",
        defs: &[
            c::MCP_CLIENT_REQUESTS,
            c::MCP_CLIENT_REQUEST_DURATION,
            c::MCP_SERVER_REQUESTS,
            c::MCP_SERVER_REQUEST_DURATION,
        ],
        examples: &[
            (
                "Tool calls per second by tool and outcome, as the calling service counts them",
                "sum by (service, host, tool_name, status) \
                 (rate(mcp_client_requests_total{method=\"tools/call\"}[5m]))",
            ),
            (
                "Share of served tool calls that failed (a JSON-RPC error or isError)",
                "sum by (service, tool_name) \
                 (rate(mcp_server_requests_total{method=\"tools/call\", status!=\"ok\"}[5m])) / \
                 sum by (service, tool_name) \
                 (rate(mcp_server_requests_total{method=\"tools/call\"}[5m]))",
            ),
            (
                "P95 time of a served MCP request by method",
                "histogram_quantile(0.95, sum by (service, method, le) \
                 (rate(mcp_server_request_duration_seconds_bucket[5m])))",
            ),
        ],
    },
    Section {
        title: "OpenTelemetry names (`[export] conventions = [\"loupe\", \"otel\"]`)",
        measured: "The measurements above, exported a second time under the names and attributes \
                   of OpenTelemetry's semantic conventions v1.41.0 (HTTP, database, GenAI and \
                   MCP metrics), as Prometheus renders them: dots become underscores, seconds \
                   get `_seconds`, and the conventions' advised bucket boundaries are used. Off \
                   by default. Each family keeps loupe's `service` label (and the Kubernetes \
                   labels) where OpenTelemetry would carry `service.name` as a resource \
                   attribute. `http.client.request.duration` has loupe's own name, \
                   `http_client_request_duration_seconds`: with the option on, that family \
                   carries both label sets (`host`, and `http_request_method`, \
                   `server_address`, `server_port`, `http_response_status_code`, \
                   `network_protocol_version`) with loupe's buckets. Attributes loupe cannot \
                   know from the wire are left out or empty, never guessed.",
        defs: &[
            c::OTEL_HTTP_SERVER_DURATION,
            c::OTEL_DB_CLIENT_DURATION,
            c::OTEL_GEN_AI_TOKEN_USAGE,
            c::OTEL_GEN_AI_DURATION,
            c::OTEL_GEN_AI_TIME_TO_FIRST_CHUNK,
            c::OTEL_MCP_CLIENT_DURATION,
            c::OTEL_MCP_SERVER_DURATION,
        ],
        examples: &[
            (
                "P95 served request time by route, as OpenTelemetry names it",
                "histogram_quantile(0.95, sum by (service, http_route, le) \
                 (rate(http_server_request_duration_seconds_bucket[5m])))",
            ),
            (
                "Output tokens per minute by provider and model",
                "sum by (gen_ai_provider_name, gen_ai_response_model) \
                 (rate(gen_ai_client_token_usage_sum{gen_ai_token_type=\"output\"}[5m])) * 60",
            ),
            (
                "MCP requests served per second by method and error type",
                "sum by (service, mcp_method_name, error_type) \
                 (rate(mcp_server_operation_duration_seconds_count[5m]))",
            ),
        ],
    },
    Section {
        title: "The Redis server",
        measured: "The Redis collector: the server's INFO, every interval (docs/collectors.md).",
        defs: &[
            c::REDIS_SERVER_CONNECTED_CLIENTS,
            c::REDIS_SERVER_BLOCKED_CLIENTS,
            c::REDIS_SERVER_OPS_PER_SECOND,
            c::REDIS_SERVER_MEMORY_USED,
            c::REDIS_SERVER_COMMANDS_PROCESSED,
            c::REDIS_SERVER_KEYSPACE_HITS,
            c::REDIS_SERVER_KEYSPACE_MISSES,
            c::REDIS_SERVER_COMMANDS,
            c::REDIS_SERVER_COMMAND_DURATION,
            c::REDIS_SERVER_KEYSPACE_KEYS,
            c::REDIS_SERVER_KEYSPACE_EXPIRES,
        ],
        examples: &[
            (
                "Keyspace hit ratio",
                "rate(redis_server_keyspace_hits_total[5m]) / \
                 (rate(redis_server_keyspace_hits_total[5m]) + \
                 rate(redis_server_keyspace_misses_total[5m]))",
            ),
            (
                "Server time per call, by command",
                "rate(redis_server_command_duration_seconds_total[5m]) / \
                 rate(redis_server_commands_total[5m])",
            ),
        ],
    },
    Section {
        title: "The database",
        measured: "The database collector: queries every interval (docs/collectors.md); \
                   custom queries add families of their own names.",
        defs: &[
            c::USERS_TOTAL,
            c::API_KEYS_ACTIVE,
            c::SESSIONS_ACTIVE,
            c::DB_SERVER_CONNECTIONS,
        ],
        examples: &[
            ("Users", "users_total"),
            (
                "Connections idle in a transaction, as the server sees them",
                "sum by (service) (db_server_connections{state=~\"idle_in_transaction.*\"})",
            ),
        ],
    },
    Section {
        title: "TCP connections",
        measured: "eBPF: the kernel's socket state changes for the service's sockets.",
        defs: &[
            c::TCP_CONNECTIONS_ACTIVE,
            c::TCP_CONNECTIONS_OPENED,
            c::TCP_CONNECTIONS_ACTIVE_BY_PEER,
        ],
        examples: &[(
            "New inbound connections per second",
            "sum by (service) (rate(tcp_connections_opened_total{direction=\"inbound\"}[5m]))",
        )],
    },
    Section {
        title: "Collector health",
        measured: "The collectors, about their own runs.",
        defs: &[
            c::COLLECTOR_UP,
            c::COLLECTOR_DURATION,
            c::COLLECTOR_LAST_SUCCESS,
            c::COLLECTOR_ERRORS,
            c::COLLECTOR_QUERY_SUCCESS,
        ],
        examples: &[
            ("Collectors down", "loupe_collector_up == 0"),
            (
                "Seconds since each collector last succeeded",
                "time() - loupe_collector_last_success_timestamp_seconds",
            ),
        ],
    },
    Section {
        title: "The endpoint",
        measured: "The /metrics endpoint, about its web configuration and the clients it turned away.",
        defs: &[c::WEB_CONFIG_RELOADS, c::WEB_REFUSED],
        examples: &[
            (
                "A web configuration change that did not load (the old one still serves)",
                "increase(loupe_web_config_reloads_total{result=\"failure\"}[1h]) > 0",
            ),
            (
                "Clients turned away per second, by reason",
                "sum by (reason) (rate(loupe_web_refused_total[5m]))",
            ),
        ],
    },
    Section {
        title: "loupe itself",
        measured: "The agent, about its probes, budgets and targets.",
        defs: &[
            c::BUILD_INFO,
            c::CONFIG_RELOADS,
            c::TARGETS,
            c::PROGRAMS_ATTACHED,
            c::EVENTS,
            c::EVENTS_LOST,
            c::MAP_FULL,
            c::TRACKED_SOCKETS,
            c::TLS_HOOKED_PROCESSES,
            c::UNPARSED_CONNECTIONS,
            c::ENDPOINT_OVERFLOW,
            c::RULE_ERRORS,
            c::LLM_UNPRICED,
            c::LABEL_OVERFLOW,
            c::ROUTE_TEMPLATES,
            c::CAPTURE_CONNECTIONS,
        ],
        examples: &[
            (
                "Records lost in the last hour (anything above 0: counts undercount)",
                "increase(loupe_events_lost_total[1h])",
            ),
            (
                "Services reaching their endpoint budget",
                "increase(loupe_endpoint_overflow_total[1h]) > 0",
            ),
            (
                "A configuration change that did not load (the old one still runs)",
                "increase(loupe_config_reloads_total{result=\"failure\"}[1h]) > 0",
            ),
        ],
    },
    Section {
        title: "Process",
        measured: "The Prometheus client library, about loupe's own process.",
        defs: c::PROCESS,
        examples: &[(
            "loupe's CPU, in cores",
            "rate(process_cpu_seconds_total[5m]) and on (instance) loupe_build_info",
        )],
    },
];

pub fn markdown() -> String {
    let mut out = String::from(
        "# Metric catalogue\n\n\
         Generated from `agent/src/export/catalogue.toml` and `reference.rs` \
         (`LOUPE_BLESS=1 cargo test -p loupe catalogue` rewrites it); the examples are \
         evaluated against a real Prometheus by `tests/tests/prometheus.rs`.\n\n\
         Conventions: `status` holds the numeric HTTP code as a string, `success` is \
         `\"true\"`/`\"false\"`, the overflow value of a bounded label is `__other__`, a value \
         that cannot be classified is `unknown`. Series of a target, peer or label value that \
         has gone away expire after `series_ttl` (default 10m). With Kubernetes pod lookup on \
         (`[kubernetes]`, docs/kubernetes.md), every family labelled by `service` also carries \
         `k8s_namespace`, `k8s_pod` and `k8s_container` (empty for processes outside any pod).\n",
    );
    for section in SECTIONS {
        out.push_str(&format!(
            "\n## {}\n\nMeasured by: {}\n\n| name | type | labels | help |\n| --- | --- | --- | --- |\n",
            section.title, section.measured
        ));
        for def in section.defs {
            let labels = def
                .labels
                .iter()
                .map(|label| format!("`{label}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                def.name,
                def.kind.as_str(),
                labels,
                def.help.replace('|', "\\|")
            ));
        }
        out.push('\n');
        for (what, query) in section.examples {
            out.push_str(&format!("{what}:\n\n```promql\n{query}\n```\n\n"));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_family_is_in_exactly_one_section() {
        let listed: Vec<&str> = SECTIONS
            .iter()
            .flat_map(|s| s.defs.iter().map(|d| d.name))
            .collect();
        let all: Vec<&str> = c::ALL.iter().chain(c::PROCESS).map(|d| d.name).collect();
        for name in &all {
            assert_eq!(listed.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
        assert_eq!(listed.len(), all.len());
    }

    #[test]
    fn docs_match_the_catalogue() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let rendered = markdown();
        if std::env::var_os("LOUPE_BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/metrics.md is stale; run LOUPE_BLESS=1 cargo test -p loupe catalogue"
        );
    }
}
