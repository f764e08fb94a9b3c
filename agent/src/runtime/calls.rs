//! HTTP calls the services make (plain, or through OpenSSL), and the model
//! provider calls among them: parsed with the server's parser from the
//! other end (see `client`), exported under bounded `host` and `model`
//! labels.
use std::time::Instant;

use super::state::State;
use crate::{
    config::{Config, llm::LlmConfig},
    enrich::llm,
    export::{LabelLimit, catalogue},
    protocols::http1::{
        auth::AuthConfig,
        exchange::{BodyWants, Exchange},
        head::Method,
    },
};

/// Distinct token types per service (usage objects name their own).
const MAX_TOKEN_TYPES: usize = 16;

pub struct Calls {
    pub llm: LlmConfig,
    /// Keeps the `Host` header of each call, and nothing else of its
    /// headers (no credentials).
    pub auth: AuthConfig,
    hosts: LabelLimit,
    models: LabelLimit,
    token_types: LabelLimit,
}

impl Calls {
    pub fn new(config: &Config) -> Self {
        Self {
            llm: config.llm.clone(),
            auth: AuthConfig {
                api_key_headers: Vec::new(),
                session_cookies: Vec::new(),
                principal: None,
                label_headers: vec!["host".to_owned()],
            },
            hosts: LabelLimit::new(config.http.max_client_hosts),
            models: LabelLimit::new(config.llm.max_models),
            token_types: LabelLimit::new(MAX_TOKEN_TYPES),
        }
    }

    /// Which response bodies to keep: those of model calls.
    pub fn bodies(&self, method: &Method, path: &str) -> BodyWants {
        let model_call = *method == Method::parse("POST") && self.llm.is_model_call(path);
        BodyWants {
            request: 0,
            response: if model_call { self.llm.max_body } else { 0 },
        }
    }
}

impl State {
    pub(super) fn publish_call(&mut self, service: u32, call: &Exchange, now: Instant) {
        let name = self.name(service).to_owned();
        let sent_host = call
            .headers
            .iter()
            .find(|(header, _)| header == "host")
            .map_or("unknown", |(_, value)| value.as_str());
        let host = self.calls.hosts.label(service, sent_host);
        let status = call
            .status
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let counted = [name.as_str(), host.as_str(), call.method.as_str(), &status];
        self.metrics
            .client_requests
            .with_label_values(&counted)
            .inc();
        self.clock
            .touch(catalogue::HTTP_CLIENT_REQUESTS.name, &counted, now);
        let seconds = call.end_ns.saturating_sub(call.start_ns) as f64 / 1e9;
        let timed = [name.as_str(), host.as_str()];
        self.metrics
            .client_duration
            .with_label_values(&timed)
            .observe(seconds);
        self.clock
            .touch(catalogue::HTTP_CLIENT_REQUEST_DURATION.name, &timed, now);
        let Some(body) = &call.response_body else {
            return;
        };
        if !self.calls.llm.host_allowed(sent_host) {
            return;
        }
        let model_call = match llm::read_call(body, &self.calls.llm) {
            Ok(model_call) => model_call,
            Err(err) => {
                let labels = [name.as_str(), "llm", err.as_str()];
                self.metrics.rule_errors.with_label_values(&labels).inc();
                self.clock.touch(catalogue::RULE_ERRORS.name, &labels, now);
                return;
            }
        };
        let model = self.calls.models.label(service, &model_call.model);
        let labels = [name.as_str(), host.as_str(), model.as_str()];
        self.metrics
            .llm_duration
            .with_label_values(&labels)
            .observe(seconds);
        self.clock
            .touch(catalogue::LLM_REQUEST_DURATION.name, &labels, now);
        if body.event_stream {
            let first = call.first_byte_ns.saturating_sub(call.start_ns) as f64 / 1e9;
            self.metrics
                .llm_first_token
                .with_label_values(&labels)
                .observe(first);
            self.clock
                .touch(catalogue::LLM_TIME_TO_FIRST_TOKEN.name, &labels, now);
        }
        for (kind, count) in &model_call.tokens {
            let kind = self.calls.token_types.label(service, kind);
            let labels = [name.as_str(), host.as_str(), model.as_str(), kind.as_str()];
            self.metrics
                .llm_tokens
                .with_label_values(&labels)
                .inc_by(*count);
            self.clock
                .touch(catalogue::LLM_TOKENS_USED.name, &labels, now);
        }
    }
}
