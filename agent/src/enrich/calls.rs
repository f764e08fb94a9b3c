//! HTTP calls the services make: which of their headers and bodies are
//! kept (the `Host`, and the answers of model calls), and the budgets of
//! their `host`, `model` and `token_type` labels.
use crate::{
    enrich::llm::LlmConfig,
    export::{Clock, LabelLimit},
    protocols::http1::{auth::AuthConfig, exchange::BodyWants, head::Method},
};

/// Distinct token types per service (usage objects name their own).
const MAX_TOKEN_TYPES: usize = 16;
/// Distinct error types of model calls per service (providers name their
/// own).
const MAX_ERROR_TYPES: usize = 16;

pub struct Calls {
    pub llm: LlmConfig,
    /// Keeps the `Host` header of each call, and nothing else of its
    /// headers (no credentials).
    pub auth: AuthConfig,
    pub hosts: LabelLimit,
    pub models: LabelLimit,
    pub token_types: LabelLimit,
    pub error_types: LabelLimit,
}

impl Calls {
    /// `max_hosts`: distinct `host` values per service.
    pub fn new(llm: &LlmConfig, max_hosts: usize, clock: &Clock) -> Self {
        Self {
            llm: llm.clone(),
            auth: AuthConfig {
                api_key_headers: Vec::new(),
                session_cookies: Vec::new(),
                principal: None,
                label_headers: vec!["host".to_owned()],
            },
            hosts: LabelLimit::new(max_hosts, clock),
            models: LabelLimit::new(llm.max_models, clock),
            token_types: LabelLimit::new(MAX_TOKEN_TYPES, clock),
            error_types: LabelLimit::new(MAX_ERROR_TYPES, clock),
        }
    }

    /// Which bodies to keep: those of model calls (the request for the
    /// model it asks for, the answer for the rest).
    pub fn bodies(&self, method: &Method, path: &str) -> BodyWants {
        let model_call = *method == Method::Post && self.llm.is_model_call(path);
        let kept = if model_call { self.llm.max_body } else { 0 };
        BodyWants {
            request: kept,
            response: kept,
            ..BodyWants::default()
        }
    }
}
