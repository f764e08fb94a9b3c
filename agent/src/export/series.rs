//! Keeping the exposition bounded: a clock per label set that expires series
//! idle for longer than the TTL, and a cap on distinct values of a label.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use super::OTHER;

type SeriesKey = (&'static str, Vec<String>);

/// When each series was last written or seen live.
#[derive(Debug)]
pub struct SeriesClock {
    ttl: Duration,
    last: HashMap<SeriesKey, Instant>,
}

impl SeriesClock {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: HashMap::new(),
        }
    }

    pub fn touch(&mut self, name: &'static str, labels: &[&str], now: Instant) {
        let key = (name, labels.iter().map(|&l| l.to_owned()).collect());
        self.last.insert(key, now);
    }

    /// Forgets and returns the series idle for longer than the TTL.
    pub fn sweep(&mut self, now: Instant) -> Vec<SeriesKey> {
        let ttl = self.ttl;
        let expired: Vec<SeriesKey> = self
            .last
            .iter()
            .filter(|&(_, &at)| now.saturating_duration_since(at) > ttl)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.last.remove(key);
        }
        expired
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// At most `max` distinct values of a label per scope; the rest share
/// [`OTHER`]. A value keeps its slot until released.
#[derive(Debug)]
pub struct LabelLimit {
    max: usize,
    scopes: HashMap<u32, HashSet<String>>,
}

impl LabelLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            scopes: HashMap::new(),
        }
    }

    /// The label value to export for `value` in `scope`.
    pub fn label(&mut self, scope: u32, value: &str) -> String {
        let values = self.scopes.entry(scope).or_default();
        if values.contains(value) {
            return value.to_owned();
        }
        if values.len() < self.max {
            values.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }

    /// Frees the slot of `value` (its series expired).
    pub fn release(&mut self, scope: u32, value: &str) {
        if let Some(values) = self.scopes.get_mut(&scope) {
            values.remove(value);
            if values.is_empty() {
                self.scopes.remove(&scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_only_idle_series() {
        let start = Instant::now();
        let mut clock = SeriesClock::new(Duration::from_secs(60));
        clock.touch("m", &["a"], start);
        clock.touch("m", &["b"], start);
        clock.touch("m", &["b"], start + Duration::from_secs(50));
        assert!(clock.sweep(start + Duration::from_secs(60)).is_empty());
        let expired = clock.sweep(start + Duration::from_secs(61));
        assert_eq!(expired, vec![("m", vec!["a".to_owned()])]);
        assert_eq!(clock.len(), 1);
        assert_eq!(clock.sweep(start + Duration::from_secs(111)).len(), 1);
        assert!(clock.is_empty());
    }

    #[test]
    fn caps_values_per_scope_and_frees_released_slots() {
        let mut limit = LabelLimit::new(2);
        assert_eq!(limit.label(1, "p1"), "p1");
        assert_eq!(limit.label(1, "p2"), "p2");
        assert_eq!(limit.label(1, "p3"), OTHER);
        assert_eq!(limit.label(1, "p1"), "p1", "a held slot stays");
        assert_eq!(limit.label(2, "p3"), "p3", "scopes are independent");
        limit.release(1, "p1");
        assert_eq!(limit.label(1, "p3"), "p3");
        assert_eq!(limit.label(1, "p1"), OTHER);
    }
}
