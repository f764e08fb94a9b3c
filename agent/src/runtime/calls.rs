//! HTTP calls the services make (plain, or through OpenSSL), and the model
//! provider and MCP calls among them, exported under bounded `host` and `model`
//! labels (see `enrich::calls`).
use super::{
    mcp,
    otel::{ModelLabels, address_and_port},
    state::State,
};
use crate::{
    enrich::llm::{self, ModelCall},
    export::otel::http_method,
    protocols::http1::exchange::Exchange,
};

impl State {
    pub(super) fn publish_call(&mut self, service: u32, call: &Exchange) {
        let id = self.id(service);
        let sent_host = call
            .headers
            .iter()
            .find(|(header, _)| header == "host")
            .map_or("unknown", |(_, value)| value.as_str());
        let host = self.enrich.calls.hosts.label(service, sent_host);
        let status = call
            .status
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let counted = [host.as_str(), call.method.as_str(), &status];
        self.export.metrics.client_requests.of(&id, &counted).inc();
        let seconds = call.end_ns.saturating_sub(call.start_ns) as f64 / 1e9;
        let duration = &self.export.metrics.client_duration;
        let duration = if self.export.metrics.otel.is_some() {
            let (address, port) = address_and_port(&host);
            let labels = [
                host.as_str(),
                http_method(call.method),
                address,
                port,
                call.status.map_or("", |_| status.as_str()),
                call.version.as_str(),
            ];
            duration.of(&id, &labels)
        } else {
            duration.of(&id, &[host.as_str()])
        };
        duration.observe(seconds);
        let side = mcp::Side::Client {
            host: host.as_str(),
        };
        if self.publish_mcp(service, side, call) {
            return;
        }
        let Some(body) = &call.response_body else {
            return;
        };
        if !self.enrich.calls.llm.host_allowed(sent_host) {
            return;
        }
        let (model_call, requested) = llm::read_exchange(call, body, &self.enrich.calls.llm);
        let timing = (
            seconds,
            call.first_byte_ns.saturating_sub(call.start_ns) as f64 / 1e9,
        );
        let labels = (host.as_str(), status.as_str());
        self.publish_model_call(service, labels, &call.path, &model_call, requested, timing);
    }

    /// A model call on `path` to `host` that answered `status`, asking for
    /// model `requested`; `(seconds, first)`: its time, and its time to
    /// the first byte of the answer's body.
    fn publish_model_call(
        &mut self,
        service: u32,
        (host, status): (&str, &str),
        path: &str,
        model_call: &ModelCall,
        requested: Option<String>,
        (seconds, first): (f64, f64),
    ) {
        let id = self.id(service);
        let model = self.enrich.calls.models.label(service, &model_call.model);
        let error_type = match &model_call.error_type {
            Some(kind) => self.enrich.calls.error_types.label(service, kind),
            None => String::new(),
        };
        let counted = [
            host,
            model_call.provider,
            model.as_str(),
            status,
            &error_type,
        ];
        self.export.metrics.llm_requests.of(&id, &counted).inc();
        let requested = requested.map(|m| self.enrich.calls.models.label(service, &m));
        let labels = ModelLabels {
            host,
            model: &model,
            requested: requested.as_deref().unwrap_or_default(),
            error_type: &error_type,
        };
        let streamed = model_call.streamed.then_some(first);
        self.otel_model_call(&id, path, model_call, &labels, (seconds, streamed));
        if model_call.error_type.is_some() {
            return;
        }
        if let Some(err) = model_call.unread {
            let labels = ["llm", err.as_str()];
            self.export.metrics.rule_errors.of(&id, &labels).inc();
            return;
        }
        let labels = [host, model.as_str()];
        self.export
            .metrics
            .llm_duration
            .of(&id, &labels)
            .observe(seconds);
        for (phase, reported) in &model_call.durations {
            let labels = [host, model.as_str(), phase];
            self.export
                .metrics
                .llm_provider_duration
                .of(&id, &labels)
                .observe(*reported);
        }
        if model_call.streamed {
            self.export
                .metrics
                .llm_first_token
                .of(&id, &labels)
                .observe(first);
        }
        let prices = &self.enrich.calls.llm.prices;
        if !prices.is_empty() {
            match prices.of(&model_call.model) {
                Some(price) => {
                    let dollars = llm::prices::cost(model_call, price);
                    self.export
                        .metrics
                        .llm_cost
                        .of(&id, &labels)
                        .inc_by(dollars);
                }
                None => {
                    let unpriced = [model.as_str()];
                    self.export.metrics.llm_unpriced.of(&id, &unpriced).inc();
                }
            }
        }
        for (kind, count) in &model_call.tokens {
            let kind = self.enrich.calls.token_types.label(service, kind);
            let labels = [host, model.as_str(), kind.as_str()];
            self.export
                .metrics
                .llm_tokens
                .of(&id, &labels)
                .inc_by(*count);
        }
    }
}
