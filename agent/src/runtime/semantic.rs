//! From a finished exchange that a route rule matches to the business
//! metrics: logins, token refreshes, failed attempts, agent and tool runs,
//! token usage. Label values fed from request data are bounded per service.
use std::time::Instant;

use super::state::State;
use crate::{
    enrich::rules::{
        FED_LABELS, Family,
        eval::{Observation, evaluate},
    },
    export::{OTHER, catalogue},
    protocols::http1::exchange::Exchange,
};

/// Series-clock keys of the bounded labels, and their scope slot.
const SLOTS: [(&str, &str); 4] = [
    ("provider slot", FED_LABELS[0]),
    ("agent_name slot", FED_LABELS[1]),
    ("tool_name slot", FED_LABELS[2]),
    ("token_type slot", FED_LABELS[3]),
];
const SLOTS_PER_SERVICE: u32 = SLOTS.len() as u32;

fn slot_of(label: &str) -> u32 {
    SLOTS.iter().position(|(_, l)| *l == label).unwrap_or(0) as u32
}

fn outcome(success: bool) -> &'static str {
    if success { "success" } else { "error" }
}

impl State {
    /// A bounded value of a label fed from request data.
    fn rule_label(
        &mut self,
        service: u32,
        name: &str,
        label: &str,
        value: &str,
        now: Instant,
    ) -> String {
        let slot = slot_of(label);
        let bounded = self
            .enrich
            .rule_labels
            .label(service * SLOTS_PER_SERVICE + slot, value);
        if bounded == OTHER {
            self.export
                .metrics
                .label_overflow
                .with_label_values(&[name, label])
                .inc();
            self.export
                .clock
                .touch(catalogue::LABEL_OVERFLOW.name, &[name, label], now);
        } else {
            self.export
                .clock
                .touch(SLOTS[slot as usize].0, &[name, &bounded], now);
        }
        bounded
    }

    pub(super) fn release_rule_slot(&mut self, key: &str, service: u32, value: &str) {
        if let Some(slot) = SLOTS.iter().position(|(k, _)| *k == key) {
            self.enrich
                .rule_labels
                .release(service * SLOTS_PER_SERVICE + slot as u32, value);
        }
    }

    /// Applies the first rule matching the exchange, if any.
    pub(super) fn publish_rule(&mut self, service: u32, exchange: &Exchange, now: Instant) {
        let name = self.name(service).to_owned();
        let Some(rule) = self.enrich.rules.matching(
            crate::export::service_name(&name),
            &exchange.method,
            &exchange.path,
        ) else {
            return;
        };
        let seen = evaluate(rule, &self.enrich.rules.semantic, exchange);
        let rule_name = rule.name.clone();
        for err in &seen.errors {
            let labels = [name.as_str(), rule_name.as_str(), err.as_str()];
            self.export
                .metrics
                .rule_errors
                .with_label_values(&labels)
                .inc();
            self.export
                .clock
                .touch(catalogue::RULE_ERRORS.name, &labels, now);
        }
        self.record(service, &name, &seen, now);
    }

    fn record(&mut self, service: u32, name: &str, seen: &Observation, now: Instant) {
        let subject = self.rule_label(service, name, seen.family.label(), &seen.subject, now);
        let tokens: Vec<(String, u64)> = seen
            .tokens
            .iter()
            .map(|(kind, count)| {
                (
                    self.rule_label(service, name, "token_type", kind, now),
                    *count,
                )
            })
            .collect();
        let (m, clock) = (&self.export.metrics, &mut self.export.clock);
        let subject = subject.as_str();
        match seen.family {
            Family::Login | Family::TokenRefresh => {
                let (counter, def) = if seen.family == Family::Login {
                    (&m.logins, catalogue::AUTH_LOGIN)
                } else {
                    (&m.token_refreshes, catalogue::AUTH_TOKEN_REFRESH)
                };
                let success = if seen.success { "true" } else { "false" };
                let labels = [name, subject, success];
                counter.with_label_values(&labels).inc();
                clock.touch(def.name, &labels, now);
                if let Some(reason) = &seen.failure_reason {
                    let labels = [name, reason.as_str()];
                    m.auth_failures.with_label_values(&labels).inc();
                    clock.touch(catalogue::AUTH_FAILED_ATTEMPTS.name, &labels, now);
                }
            }
            Family::Agent => {
                let labels = [name, subject, outcome(seen.success)];
                m.agent_invocations.with_label_values(&labels).inc();
                clock.touch(catalogue::AGENT_INVOCATIONS.name, &labels, now);
                let timed = [name, subject];
                m.agent_duration
                    .with_label_values(&timed)
                    .observe(seen.seconds);
                clock.touch(catalogue::AGENT_EXECUTION_DURATION.name, &timed, now);
                for (kind, count) in &tokens {
                    let labels = [name, subject, kind.as_str()];
                    m.agent_tokens.with_label_values(&labels).inc_by(*count);
                    clock.touch(catalogue::AGENT_TOKENS_USED.name, &labels, now);
                }
            }
            Family::Tool => {
                let labels = [name, subject, outcome(seen.success)];
                m.tool_invocations.with_label_values(&labels).inc();
                clock.touch(catalogue::TOOL_INVOCATIONS.name, &labels, now);
                let timed = [name, subject];
                m.tool_duration
                    .with_label_values(&timed)
                    .observe(seen.seconds);
                clock.touch(catalogue::TOOL_EXECUTION_DURATION.name, &timed, now);
            }
        }
    }
}
