//! Every metric loupe exports: name, type, help and labels, in one place.
//! `docs/metrics.md` is rendered from it (`reference.rs`; a test keeps them equal),
//! and a test checks that `/metrics` exposes nothing that is not listed here.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Pinned histogram buckets (seconds): every duration histogram uses one of
/// these, so dashboards can rely on the boundaries.
pub mod buckets {
    /// HTTP request durations.
    pub const HTTP: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        120.0,
    ];
    /// Database queries and Redis commands.
    pub const DATABASE: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];
    /// Agent and tool executions (slow by nature).
    pub const EXECUTION: &[f64] = &[
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ];
}

const fn def(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Def {
    Def {
        name,
        kind,
        help,
        labels,
    }
}

pub const TCP_CONNECTIONS_ACTIVE: Def = def(
    "tcp_connections_active",
    Kind::Gauge,
    "Open TCP connections of the service (established, not yet closed), \
     including those open before loupe started.",
    &["service", "direction"],
);
pub const TCP_CONNECTIONS_OPENED: Def = def(
    "tcp_connections_opened_total",
    Kind::Counter,
    "TCP connections the service accepted (inbound) or established (outbound) \
     since loupe started.",
    &["service", "direction"],
);
pub const TCP_CONNECTIONS_ACTIVE_BY_PEER: Def = def(
    "tcp_connections_active_by_peer",
    Kind::Gauge,
    "Open outbound TCP connections of the service per remote ip:port; at most \
     64 peers per service, the rest as peer=\"__other__\".",
    &["service", "peer"],
);
pub const AGENT_REQUESTS: Def = def(
    "agent_requests_total",
    Kind::Counter,
    "HTTP requests the service answered, by method, route template, status code and \
     authentication scheme (jwt, bearer, api_key, basic, session, none).",
    &["service", "method", "endpoint", "status", "auth_type"],
);
pub const AGENT_REQUESTS_ABANDONED: Def = def(
    "agent_requests_abandoned_total",
    Kind::Counter,
    "HTTP requests the service read whose connection closed before any response to them \
     was written: the client gave up (nginx logs these as 499) or the server dropped the \
     connection. Not in agent_requests_total, which counts answered requests (an answer \
     written after the client left is counted there).",
    &["service", "method", "endpoint"],
);
pub const AGENT_REQUEST_DURATION: Def = def(
    "agent_request_duration_seconds",
    Kind::Histogram,
    "Time from the first byte of a request read by the service to the last byte of its \
     response written.",
    &["service", "method", "endpoint"],
);
pub const AGENT_RESPONSE_FIRST_BYTE: Def = def(
    "agent_response_first_byte_seconds",
    Kind::Histogram,
    "Time from the first byte of a request read by the service to the first byte of its \
     response body written (for streamed responses the first chunk or token; the head for \
     a response without a body).",
    &["service", "method", "endpoint"],
);
pub const AGENT_REQUESTS_BY_PRINCIPAL: Def = def(
    "agent_requests_by_principal_total",
    Kind::Counter,
    "Requests per principal (JWT sub claim or API key) as an HMAC-SHA-256 pseudonym; only \
     when enabled with a secret, at most a configured number of principals, the rest as \
     __other__.",
    &["service", "auth_type", "principal"],
);
pub const AUTH_LOGIN: Def = def(
    "auth_login_total",
    Kind::Counter,
    "Login attempts, by identity provider and outcome (route rules of family login).",
    &["service", "provider", "success"],
);
pub const AUTH_TOKEN_REFRESH: Def = def(
    "auth_token_refresh_total",
    Kind::Counter,
    "Token refreshes, by identity provider and outcome (route rules of family \
     token_refresh).",
    &["service", "provider", "success"],
);
pub const AUTH_FAILED_ATTEMPTS: Def = def(
    "auth_failed_attempts_total",
    Kind::Counter,
    "Failed logins and token refreshes, by reason: an allowlisted error field of the \
     response, else the configured status mapping (401 invalid_credentials, 403 forbidden, \
     423 locked, 429 rate_limited by default), else other.",
    &["service", "reason"],
);
pub const AGENT_INVOCATIONS: Def = def(
    "agent_invocations_total",
    Kind::Counter,
    "Agent invocations, by agent and status (success or error).",
    &["service", "agent_name", "status"],
);
pub const AGENT_EXECUTION_DURATION: Def = def(
    "agent_execution_duration_seconds",
    Kind::Histogram,
    "Duration of agent invocations, from the request's first byte to the response's last \
     (the end of the stream for streamed responses).",
    &["service", "agent_name"],
);
pub const AGENT_TOKENS_USED: Def = def(
    "agent_tokens_used_total",
    Kind::Counter,
    "Tokens agent invocations reported in their responses' usage objects, by type (input, \
     output, and any further type the usage names, e.g. cached).",
    &["service", "agent_name", "token_type"],
);
pub const TOOL_INVOCATIONS: Def = def(
    "tool_invocations_total",
    Kind::Counter,
    "Tool executions, by tool and status (success or error).",
    &["service", "tool_name", "status"],
);
pub const TOOL_EXECUTION_DURATION: Def = def(
    "tool_execution_duration_seconds",
    Kind::Histogram,
    "Duration of tool executions, from the request's first byte to the response's last.",
    &["service", "tool_name"],
);
pub const DB_QUERIES: Def = def(
    "db_queries_total",
    Kind::Counter,
    "Statements the service ran on its database connections, by system (postgresql), \
     type (the statement's leading keyword from a fixed set, other, or unknown for a \
     statement prepared before loupe started) and status (ok or error).",
    &["service", "db_system", "query_type", "status"],
);
pub const DB_QUERY_DURATION: Def = def(
    "db_query_duration_seconds",
    Kind::Histogram,
    "Time from writing a statement to reading its completion (for pipelined statements, \
     from the write that carried them).",
    &["service", "db_system", "query_type"],
);
pub const DB_POOL_SIZE: Def = def(
    "db_pool_size",
    Kind::Gauge,
    "Open connections from the service to the database, as seen from outside the \
     process (a connection opened before loupe started counts from the start, by its port \
     5432 or 3306, until its bytes say otherwise).",
    &["service", "db_system"],
);
pub const DB_POOL_CHECKED_OUT: Def = def(
    "db_pool_checked_out",
    Kind::Gauge,
    "Database connections of the service with a statement in flight or inside a \
     transaction (from the transaction status the server reports).",
    &["service", "db_system"],
);
pub const REDIS_OPERATIONS: Def = def(
    "redis_operations_total",
    Kind::Counter,
    "Redis commands the service sent, by lower-case command name (common commands by \
     name, the rest as other), counted when answered (or, unanswered, when the \
     connection closed); pipelined and queued (MULTI) commands count one by one.",
    &["service", "operation"],
);
pub const REDIS_OPERATION_DURATION: Def = def(
    "redis_operation_duration_seconds",
    Kind::Histogram,
    "Time from writing a Redis command to reading its reply (for pipelined commands, \
     from the write that carried them).",
    &["service", "operation"],
);
pub const REDIS_OPERATION_ERRORS: Def = def(
    "redis_operation_errors_total",
    Kind::Counter,
    "Redis commands answered with an error reply, or never answered because the \
     connection closed first.",
    &["service", "operation"],
);
pub const REDIS_CONNECTIONS_ACTIVE: Def = def(
    "redis_connections_active",
    Kind::Gauge,
    "Open connections from the service to Redis that loupe has seen carry a command \
     (an idle pooled connection opened before loupe started counts from its first \
     command).",
    &["service"],
);
pub const HTTP_CLIENT_REQUESTS: Def = def(
    "http_client_requests_total",
    Kind::Counter,
    "HTTP/1.x calls the service made (plain or through OpenSSL), by the Host header it \
     sent (bounded per service; beyond, __other__), method and response status (unknown \
     when the response head was not seen), counted when the response ended.",
    &["service", "host", "method", "status"],
);
pub const HTTP_CLIENT_REQUEST_DURATION: Def = def(
    "http_client_request_duration_seconds",
    Kind::Histogram,
    "Time from writing a call's first byte to reading its response's last byte.",
    &["service", "host"],
);
pub const LLM_TOKENS_USED: Def = def(
    "llm_tokens_used_total",
    Kind::Counter,
    "Tokens reported in the usage object of a model provider's response ([llm] in the \
     configuration), by model as the response names it and token type (input, output, \
     cache_read_input, ...); for a stream, the last value of each type.",
    &["service", "host", "model", "token_type"],
);
pub const LLM_REQUEST_DURATION: Def = def(
    "llm_request_duration_seconds",
    Kind::Histogram,
    "Time of a call to a model provider, from its first byte written to the response's \
     last byte read.",
    &["service", "host", "model"],
);
pub const LLM_TIME_TO_FIRST_TOKEN: Def = def(
    "llm_time_to_first_token_seconds",
    Kind::Histogram,
    "For a streamed (text/event-stream) model response: time from the call's first byte \
     written to the first byte of the response body read.",
    &["service", "host", "model"],
);
pub const REDIS_SERVER_CONNECTED_CLIENTS: Def = def(
    "redis_server_connected_clients",
    Kind::Gauge,
    "Clients connected to the Redis server (its INFO, from the Redis collector).",
    &[],
);
pub const REDIS_SERVER_BLOCKED_CLIENTS: Def = def(
    "redis_server_blocked_clients",
    Kind::Gauge,
    "Clients blocked in a blocking command (BLPOP...), from the server's INFO.",
    &[],
);
pub const REDIS_SERVER_OPS_PER_SECOND: Def = def(
    "redis_server_ops_per_second",
    Kind::Gauge,
    "Commands per second the server reports (instantaneous_ops_per_sec).",
    &[],
);
pub const REDIS_SERVER_MEMORY_USED: Def = def(
    "redis_server_memory_used_bytes",
    Kind::Gauge,
    "Memory the Redis server uses (used_memory).",
    &[],
);
pub const REDIS_SERVER_COMMANDS_PROCESSED: Def = def(
    "redis_server_commands_processed_total",
    Kind::Counter,
    "Commands the Redis server processed, from all its clients (total_commands_processed; \
     follows the server's counter, a restart of the server shows as a reset).",
    &[],
);
pub const REDIS_SERVER_KEYSPACE_HITS: Def = def(
    "redis_server_keyspace_hits_total",
    Kind::Counter,
    "Successful key lookups on the Redis server.",
    &[],
);
pub const REDIS_SERVER_KEYSPACE_MISSES: Def = def(
    "redis_server_keyspace_misses_total",
    Kind::Counter,
    "Failed key lookups on the Redis server.",
    &[],
);
pub const REDIS_SERVER_COMMANDS: Def = def(
    "redis_server_commands_total",
    Kind::Counter,
    "Calls of each command on the Redis server, from all its clients (INFO commandstats).",
    &["cmd"],
);
pub const REDIS_SERVER_COMMAND_DURATION: Def = def(
    "redis_server_command_duration_seconds_total",
    Kind::Counter,
    "Time the Redis server spent executing each command (INFO commandstats).",
    &["cmd"],
);
pub const REDIS_SERVER_KEYSPACE_KEYS: Def = def(
    "redis_server_keyspace_keys",
    Kind::Gauge,
    "Keys in each database of the Redis server.",
    &["db"],
);
pub const REDIS_SERVER_KEYSPACE_EXPIRES: Def = def(
    "redis_server_keyspace_expires",
    Kind::Gauge,
    "Keys with an expiry in each database of the Redis server.",
    &["db"],
);
pub const USERS_TOTAL: Def = def(
    "users_total",
    Kind::Gauge,
    "Rows in the service's users table (database collector). A gauge despite its _total \
     suffix: the name is kept because existing dashboards use it.",
    &[],
);
pub const API_KEYS_ACTIVE: Def = def(
    "api_keys_active",
    Kind::Gauge,
    "API keys that are active and not expired (database collector).",
    &[],
);
pub const SESSIONS_ACTIVE: Def = def(
    "sessions_active",
    Kind::Gauge,
    "Sessions whose expiry lies in the future (database collector).",
    &[],
);
pub const DB_SERVER_CONNECTIONS: Def = def(
    "db_server_connections",
    Kind::Gauge,
    "The service's connections as the database server lists them (PostgreSQL \
     pg_stat_activity, MySQL/MariaDB processlist; database collector), by state: active, \
     idle, idle_in_transaction, idle_in_transaction_aborted (PostgreSQL) or other.",
    &["service", "state"],
);
pub const COLLECTOR_QUERY_SUCCESS: Def = def(
    "loupe_collector_query_success",
    Kind::Gauge,
    "1 when the collector's query (a business gauge, a custom query by its metric name, or \
     db_server_connections) worked in its last run, 0 when it failed (a missing table or \
     column, a bad value column, too many rows: the metric it feeds is then absent).",
    &["collector", "query"],
);
pub const COLLECTOR_UP: Def = def(
    "loupe_collector_up",
    Kind::Gauge,
    "1 when the collector's last run succeeded, 0 when it failed or timed out.",
    &["collector"],
);
pub const COLLECTOR_DURATION: Def = def(
    "loupe_collector_duration_seconds",
    Kind::Gauge,
    "How long the collector's last run took.",
    &["collector"],
);
pub const COLLECTOR_LAST_SUCCESS: Def = def(
    "loupe_collector_last_success_timestamp_seconds",
    Kind::Gauge,
    "When the collector last succeeded (Unix time).",
    &["collector"],
);
pub const COLLECTOR_ERRORS: Def = def(
    "loupe_collector_errors_total",
    Kind::Counter,
    "Runs of the collector that failed or timed out.",
    &["collector"],
);
pub const RULE_ERRORS: Def = def(
    "loupe_rule_errors_total",
    Kind::Counter,
    "Fields a route rule could not read, by reason (not_captured, truncated, malformed_json, \
     gzip, missing_field, not_numeric); the request itself is still counted.",
    &["service", "rule", "reason"],
);
pub const LABEL_OVERFLOW: Def = def(
    "loupe_label_overflow_total",
    Kind::Counter,
    "Values of a label fed from request data that were counted as __other__ because the \
     service reached the label's budget of distinct values.",
    &["service", "label"],
);
pub const UNPARSED_CONNECTIONS: Def = def(
    "loupe_unparsed_connections_total",
    Kind::Counter,
    "Inbound connections loupe saw but could not parse as HTTP/1.x, by reason (http2, tls: \
     TLS not through a hooked OpenSSL, unknown_protocol, malformed_http).",
    &["service", "reason"],
);
pub const ENDPOINT_OVERFLOW: Def = def(
    "loupe_endpoint_overflow_total",
    Kind::Counter,
    "Requests counted under endpoint=\"__other__\" because the service reached its budget \
     of distinct endpoints.",
    &["service"],
);
pub const ROUTE_TEMPLATES: Def = def(
    "loupe_route_templates",
    Kind::Gauge,
    "Route templates known for the service's endpoint label (configuration and OpenAPI \
     document).",
    &["service"],
);
pub const CAPTURE_CONNECTIONS: Def = def(
    "loupe_capture_connections",
    Kind::Gauge,
    "Connections whose bytes loupe is parsing.",
    &[],
);
pub const BUILD_INFO: Def = def(
    "loupe_build_info",
    Kind::Gauge,
    "Always 1; the version label says which loupe is running.",
    &["version"],
);
pub const TARGETS: Def = def(
    "loupe_targets",
    Kind::Gauge,
    "Processes of the service loupe currently tracks (0: waiting for the target).",
    &["service"],
);
pub const PROGRAMS_ATTACHED: Def = def(
    "loupe_programs_attached",
    Kind::Gauge,
    "eBPF programs loupe has attached.",
    &[],
);
pub const EVENTS: Def = def(
    "loupe_events_total",
    Kind::Counter,
    "Records received from the probes, by kind.",
    &["kind"],
);
pub const EVENTS_LOST: Def = def(
    "loupe_events_lost_total",
    Kind::Counter,
    "Records the probes could not hand over because the ring buffer was full.",
    &[],
);
pub const MAP_FULL: Def = def(
    "loupe_map_full_total",
    Kind::Counter,
    "Inserts into a kernel map that failed because the map was full.",
    &[],
);
pub const TLS_HOOKED_PROCESSES: Def = def(
    "loupe_tls_hooked_processes",
    Kind::Gauge,
    "The service's processes whose OpenSSL is hooked by uprobes (their TLS is read in \
     plaintext); 0 while none maps OpenSSL, or with [http] tls = false.",
    &["service"],
);
pub const TRACKED_SOCKETS: Def = def(
    "loupe_tracked_sockets",
    Kind::Gauge,
    "TCP socket fds of the service's processes that the probes know of.",
    &["service"],
);

/// Metrics loupe defines.
pub const ALL: &[Def] = &[
    AGENT_REQUESTS,
    AGENT_REQUESTS_ABANDONED,
    AGENT_REQUEST_DURATION,
    AGENT_RESPONSE_FIRST_BYTE,
    AGENT_REQUESTS_BY_PRINCIPAL,
    AUTH_LOGIN,
    AUTH_TOKEN_REFRESH,
    AUTH_FAILED_ATTEMPTS,
    AGENT_INVOCATIONS,
    AGENT_EXECUTION_DURATION,
    AGENT_TOKENS_USED,
    TOOL_INVOCATIONS,
    TOOL_EXECUTION_DURATION,
    DB_QUERIES,
    DB_QUERY_DURATION,
    DB_POOL_SIZE,
    DB_POOL_CHECKED_OUT,
    REDIS_OPERATIONS,
    REDIS_OPERATION_DURATION,
    REDIS_OPERATION_ERRORS,
    REDIS_CONNECTIONS_ACTIVE,
    HTTP_CLIENT_REQUESTS,
    HTTP_CLIENT_REQUEST_DURATION,
    LLM_TOKENS_USED,
    LLM_REQUEST_DURATION,
    LLM_TIME_TO_FIRST_TOKEN,
    REDIS_SERVER_CONNECTED_CLIENTS,
    REDIS_SERVER_BLOCKED_CLIENTS,
    REDIS_SERVER_OPS_PER_SECOND,
    REDIS_SERVER_MEMORY_USED,
    REDIS_SERVER_COMMANDS_PROCESSED,
    REDIS_SERVER_KEYSPACE_HITS,
    REDIS_SERVER_KEYSPACE_MISSES,
    REDIS_SERVER_COMMANDS,
    REDIS_SERVER_COMMAND_DURATION,
    REDIS_SERVER_KEYSPACE_KEYS,
    REDIS_SERVER_KEYSPACE_EXPIRES,
    USERS_TOTAL,
    API_KEYS_ACTIVE,
    SESSIONS_ACTIVE,
    DB_SERVER_CONNECTIONS,
    COLLECTOR_QUERY_SUCCESS,
    COLLECTOR_UP,
    COLLECTOR_DURATION,
    COLLECTOR_LAST_SUCCESS,
    COLLECTOR_ERRORS,
    TCP_CONNECTIONS_ACTIVE,
    TCP_CONNECTIONS_OPENED,
    TCP_CONNECTIONS_ACTIVE_BY_PEER,
    BUILD_INFO,
    TARGETS,
    PROGRAMS_ATTACHED,
    EVENTS,
    EVENTS_LOST,
    MAP_FULL,
    TRACKED_SOCKETS,
    TLS_HOOKED_PROCESSES,
    UNPARSED_CONNECTIONS,
    ENDPOINT_OVERFLOW,
    RULE_ERRORS,
    LABEL_OVERFLOW,
    ROUTE_TEMPLATES,
    CAPTURE_CONNECTIONS,
];

/// The standard process metrics of the Prometheus client library (loupe's
/// own CPU, memory, file descriptors), exported beside loupe's.
pub const PROCESS: &[Def] = &[
    def(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        &[],
    ),
    def(
        "process_max_fds",
        Kind::Gauge,
        "Maximum number of open file descriptors.",
        &[],
    ),
    def(
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors.",
        &[],
    ),
    def(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        &[],
    ),
    def(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        &[],
    ),
    def(
        "process_threads",
        Kind::Gauge,
        "Number of OS threads in the process.",
        &[],
    ),
    def(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
        &[],
    ),
];

/// The definition of an exported family, if it is catalogued.
pub fn find(name: &str) -> Option<&'static Def> {
    ALL.iter().chain(PROCESS).find(|def| def.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for def in ALL.iter().chain(PROCESS) {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            // The one documented exception: a gauge kept under its old name.
            let exception = def.name == USERS_TOTAL.name;
            assert_eq!(
                def.kind == Kind::Counter || exception,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
            assert!(!def.help.is_empty());
        }
    }

    #[test]
    fn buckets_ascend() {
        for set in [buckets::HTTP, buckets::DATABASE, buckets::EXECUTION] {
            assert!(set.windows(2).all(|pair| pair[0] < pair[1]), "{set:?}");
        }
    }
}
