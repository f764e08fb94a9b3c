//! From a finished exchange that a route rule matches to the business
//! metrics: logins, token refreshes, failed attempts, agent and tool runs,
//! token usage. Label values fed from request data are bounded per service.
use super::state::State;
use crate::{
    enrich::rules::{
        FED_LABELS, Family,
        eval::{Observation, evaluate},
    },
    export::{OTHER, ServiceId},
    protocols::http1::exchange::Exchange,
};

/// Budgets per service: one per label fed from request data.
const SLOTS_PER_SERVICE: u32 = FED_LABELS.len() as u32;

fn slot_of(label: &str) -> u32 {
    FED_LABELS.iter().position(|l| *l == label).unwrap_or(0) as u32
}

fn outcome(success: bool) -> &'static str {
    if success { "success" } else { "error" }
}

impl State {
    /// A bounded value of a label fed from request data.
    fn rule_label(&mut self, service: u32, id: &ServiceId, label: &str, value: &str) -> String {
        let slot = slot_of(label);
        let bounded = self
            .enrich
            .rule_labels
            .label(service * SLOTS_PER_SERVICE + slot, value);
        if bounded == OTHER {
            self.export.metrics.label_overflow.of(id, &[label]).inc();
        }
        bounded
    }

    /// Applies the rule the exchange matched when it was parsed, if any.
    pub(super) fn publish_rule(&mut self, service: u32, exchange: &Exchange) {
        let Some(rule) = exchange.rule.and_then(|rule| self.enrich.rules.get(rule)) else {
            return;
        };
        let id = self.id(service);
        let seen = evaluate(rule, &self.enrich.rules.semantic, exchange);
        let rule_name = rule.name.clone();
        for err in &seen.errors {
            let labels = [rule_name.as_str(), err.as_str()];
            self.export.metrics.rule_errors.of(&id, &labels).inc();
        }
        self.record(service, &id, &seen);
    }

    fn record(&mut self, service: u32, id: &ServiceId, seen: &Observation) {
        let subject = self.rule_label(service, id, seen.family.label(), &seen.subject);
        let tokens: Vec<(String, u64)> = seen
            .tokens
            .iter()
            .map(|(kind, count)| (self.rule_label(service, id, "token_type", kind), *count))
            .collect();
        let m = &self.export.metrics;
        let subject = subject.as_str();
        match seen.family {
            Family::Login | Family::TokenRefresh => {
                let counter = if seen.family == Family::Login {
                    &m.logins
                } else {
                    &m.token_refreshes
                };
                let success = if seen.success { "true" } else { "false" };
                let labels = [subject, success];
                counter.of(id, &labels).inc();
                if let Some(reason) = &seen.failure_reason {
                    let labels = [reason.as_str()];
                    m.auth_failures.of(id, &labels).inc();
                }
            }
            Family::Agent => {
                let labels = [subject, outcome(seen.success)];
                m.agent_invocations.of(id, &labels).inc();
                let timed = [subject];
                m.agent_duration.of(id, &timed).observe(seen.seconds);
                for (kind, count) in &tokens {
                    let labels = [subject, kind.as_str()];
                    m.agent_tokens.of(id, &labels).inc_by(*count);
                }
            }
            Family::Tool => {
                let labels = [subject, outcome(seen.success)];
                m.tool_invocations.of(id, &labels).inc();
                let timed = [subject];
                m.tool_duration.of(id, &timed).observe(seen.seconds);
            }
        }
    }
}
