//! Keeping the exposition bounded: families whose series expire once idle
//! for longer than the TTL ([`Expiring`]: using a series records its use),
//! and a cap on distinct values of a label ([`LabelLimit`]: an idle value
//! frees its slot the same way). Both read one coarse [`Clock`] that the run
//! loop advances, so that a use costs no clock read.
use std::{
    collections::{HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::core::{MetricVec, MetricVecBuilder};

use super::{Labelled, OTHER, ServiceId};

/// Milliseconds since the agent started, as of the run loop's last step.
#[derive(Clone, Debug)]
pub struct Clock {
    start: Instant,
    now_ms: Arc<AtomicU64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            now_ms: Arc::default(),
        }
    }
}

impl Clock {
    /// The run loop's time is now `now`.
    pub fn set(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.start).as_millis();
        self.now_ms
            .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// Uses last recorded before this are idle for longer than `ttl`.
    fn cutoff(&self, ttl: Duration) -> u64 {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.now().saturating_sub(ttl)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hash_of(values: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    values.hash(&mut hasher);
    hasher.finish()
}

/// A label set, and when it was last used.
type Used = (Box<[String]>, u64);

/// When each label set was last used, found by its hash without an
/// allocation (label sets with the same hash share a bucket).
#[derive(Debug, Default)]
struct Uses {
    buckets: HashMap<u64, Vec<Used>>,
}

impl Uses {
    fn record(&mut self, values: &[&str], at: u64) {
        let bucket = self.buckets.entry(hash_of(values)).or_default();
        match bucket.iter_mut().find(|(labels, _)| **labels == *values) {
            Some((_, last)) => *last = at,
            None => bucket.push((values.iter().map(|&v| v.to_owned()).collect(), at)),
        }
    }

    /// Forgets and returns the label sets last used before `cutoff`.
    fn sweep(&mut self, cutoff: u64) -> Vec<Box<[String]>> {
        let mut idle = Vec::new();
        self.buckets.retain(|_, bucket| {
            bucket.retain_mut(|(labels, last)| {
                if *last >= cutoff {
                    return true;
                }
                idle.push(std::mem::take(labels));
                false
            });
            !bucket.is_empty()
        });
        idle
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }
}

/// A labelled family whose series are removed once idle for longer than
/// the TTL. Using a series ([`Self::of`]) records its use.
#[derive(Clone)]
pub struct Expiring<V> {
    vec: Labelled<V>,
    uses: Arc<Mutex<Uses>>,
    clock: Clock,
}

impl<V> Expiring<V> {
    pub(super) fn new(vec: Labelled<V>, clock: Clock) -> Self {
        Self {
            vec,
            uses: Arc::default(),
            clock,
        }
    }

    fn record(&self, values: &[&str]) {
        lock(&self.uses).record(values, self.clock.now());
    }

    /// Keeps `service`'s series with the labels `rest` from expiring
    /// without changing it (a gauge of something still open).
    pub fn keep(&self, service: &ServiceId, rest: &[&str]) {
        let (buf, n) = self.vec.values(service, rest);
        self.record(&buf[..n]);
    }
}

impl<T: MetricVecBuilder> Expiring<MetricVec<T>> {
    /// `service`'s series with the labels `rest`, used now.
    pub fn of(&self, service: &ServiceId, rest: &[&str]) -> T::M {
        let (buf, n) = self.vec.values(service, rest);
        self.record(&buf[..n]);
        self.vec.inner.with_label_values(&buf[..n])
    }

    /// The series, made if absent, without recording a use: it stays until
    /// used and then idle (a counter that exists at 0 from the start, so
    /// that `increase()` sees its first step).
    pub fn ensure(&self, service: &ServiceId, rest: &[&str]) {
        self.vec.of(service, rest);
    }
}

/// What the exposition sweeps: a family of expiring series.
pub(super) trait Sweep: Send + Sync {
    /// Removes the series last used before `cutoff`; returns how many.
    fn sweep(&self, cutoff: u64) -> usize;
    /// Series whose use is recorded.
    #[cfg(test)]
    fn watched(&self) -> usize;
}

impl<T: MetricVecBuilder + Send + Sync> Sweep for Expiring<MetricVec<T>>
where
    T::M: Send + Sync,
{
    fn sweep(&self, cutoff: u64) -> usize {
        let idle = lock(&self.uses).sweep(cutoff);
        for labels in &idle {
            let values: Vec<&str> = labels.iter().map(String::as_str).collect();
            // Already gone when its service was retired: nothing to do.
            let _ = self.vec.remove_values(&values);
        }
        idle.len()
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        lock(&self.uses).len()
    }
}

/// The families whose series expire, swept together.
#[derive(Clone, Default)]
pub(super) struct Sweeper {
    families: Vec<Arc<dyn Sweep>>,
}

impl Sweeper {
    pub(super) fn add(&mut self, family: Arc<dyn Sweep>) {
        self.families.push(family);
    }

    pub(super) fn sweep(&self, cutoff: u64) -> usize {
        self.families.iter().map(|f| f.sweep(cutoff)).sum()
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.families.iter().map(|f| f.watched()).sum()
    }
}

/// Removes the idle series of every expiring family: those unused for
/// longer than `ttl`. Returns how many went.
pub(super) fn expire(sweeper: &Sweeper, clock: &Clock, ttl: Duration) -> usize {
    sweeper.sweep(clock.cutoff(ttl))
}

/// At most `max` distinct values of a label per scope; the rest share
/// [`OTHER`]. A value keeps its slot until it is idle for longer than the
/// TTL (then its series are gone too).
#[derive(Debug)]
pub struct LabelLimit {
    max: usize,
    clock: Clock,
    /// Per scope: each value and when it was last labelled.
    scopes: HashMap<u32, HashMap<String, u64>>,
}

impl LabelLimit {
    pub fn new(max: usize, clock: &Clock) -> Self {
        Self {
            max,
            clock: clock.clone(),
            scopes: HashMap::new(),
        }
    }

    /// The label value to export for `value` in `scope` (a use of it).
    pub fn label(&mut self, scope: u32, value: &str) -> String {
        let now = self.clock.now();
        let values = self.scopes.entry(scope).or_default();
        if let Some(last) = values.get_mut(value) {
            *last = now;
            return value.to_owned();
        }
        if values.len() < self.max {
            values.insert(value.to_owned(), now);
            return value.to_owned();
        }
        OTHER.to_owned()
    }

    /// Keeps the slot of `value` in `scope`, if it has one, from expiring.
    pub fn keep(&mut self, scope: u32, value: &str) {
        let now = self.clock.now();
        if let Some(last) = self.scopes.get_mut(&scope).and_then(|v| v.get_mut(value)) {
            *last = now;
        }
    }

    /// Frees the slots of values unused for longer than `ttl`.
    pub fn expire(&mut self, ttl: Duration) {
        let cutoff = self.clock.cutoff(ttl);
        self.scopes.retain(|_, values| {
            values.retain(|_, last| *last >= cutoff);
            !values.is_empty()
        });
    }
}

/// What a hot path worked out from label strings (a request's metric
/// handles, say), kept under a hash of its inputs for at most `period` of
/// the run loop's clock and at most `max` entries, then worked out again.
/// So each entry goes through the expiring families once per period: that
/// records its use (its series cannot expire under a kept handle while it
/// is used) and picks up a series made anew after an expiry.
pub struct Recent<V> {
    clock: Clock,
    period_ms: u64,
    since: u64,
    max: usize,
    entries: fnv::FnvHashMap<u64, V>,
}

impl<V> Recent<V> {
    /// `period` is capped at half of `ttl`, the series' idle time.
    pub fn new(clock: &Clock, period: Duration, ttl: Duration, max: usize) -> Self {
        let period = period.min(ttl / 2).as_millis();
        Self {
            clock: clock.clone(),
            period_ms: u64::try_from(period).unwrap_or(u64::MAX),
            since: clock.now(),
            max,
            entries: fnv::FnvHashMap::default(),
        }
    }

    /// The hash an entry is kept under.
    pub fn hash_of(key: &impl Hash) -> u64 {
        let mut hasher = fnv::FnvHasher::default();
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// The entry kept under `hash` if `is` accepts it (hashes collide).
    pub fn find(&mut self, hash: u64, is: impl Fn(&V) -> bool) -> Option<&V> {
        let now = self.clock.now();
        if now.saturating_sub(self.since) >= self.period_ms {
            self.entries.clear();
            self.since = now;
        }
        self.entries.get(&hash).filter(|v| is(v))
    }

    /// Keeps `value` under `hash` (replacing a colliding entry) unless
    /// `max` entries are kept already.
    pub fn keep(&mut self, hash: u64, value: V) {
        if self.entries.len() < self.max || self.entries.contains_key(&hash) {
            self.entries.insert(hash, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounterVec, Opts};

    use super::*;

    fn family(clock: &Clock) -> Expiring<IntCounterVec> {
        let vec = IntCounterVec::new(Opts::new("m", "help"), &["service"]).unwrap();
        Expiring::new(Labelled::new(vec, false), clock.clone())
    }

    #[test]
    fn expires_only_idle_series() {
        let clock = Clock::default();
        let start = clock.start;
        let counted = family(&clock);
        let mut sweeper = Sweeper::default();
        sweeper.add(Arc::new(counted.clone()));
        let ttl = Duration::from_secs(60);
        let [a, b, zero] = ["a", "b", "zero"].map(ServiceId::named);
        counted.of(&a, &[]).inc();
        counted.of(&b, &[]).inc();
        counted.ensure(&zero, &[]);
        clock.set(start + Duration::from_secs(50));
        counted.of(&b, &[]).inc();
        clock.set(start + Duration::from_secs(60));
        assert_eq!(expire(&sweeper, &clock, ttl), 0);
        clock.set(start + Duration::from_secs(61));
        assert_eq!(expire(&sweeper, &clock, ttl), 1, "a");
        assert_eq!(sweeper.watched(), 1);
        counted.keep(&b, &[]);
        clock.set(start + Duration::from_secs(111));
        assert_eq!(expire(&sweeper, &clock, ttl), 0, "kept at 61");
        clock.set(start + Duration::from_secs(122));
        assert_eq!(expire(&sweeper, &clock, ttl), 1);
        assert_eq!(sweeper.watched(), 0);
        let left: Vec<String> = prometheus::core::Collector::collect(&counted.vec.inner)[0]
            .get_metric()
            .iter()
            .map(|m| m.get_label()[0].value().to_owned())
            .collect();
        assert_eq!(left, ["zero"], "a series made, never used, stays");
    }

    #[test]
    fn recent_entries_last_one_period_and_are_bounded() {
        let clock = Clock::default();
        let start = clock.start;
        let ttl = Duration::from_secs(300);
        let mut recent = Recent::new(&clock, Duration::from_secs(1), ttl, 2);
        let [a, b, c] = ["a", "b", "c"].map(|k| Recent::<&str>::hash_of(&k));
        recent.keep(a, "a");
        recent.keep(b, "b");
        recent.keep(c, "c");
        assert_eq!(recent.find(a, |_| true), Some(&"a"));
        assert_eq!(recent.find(a, |v| *v == "x"), None, "a collision");
        assert_eq!(recent.find(c, |_| true), None, "over the bound");
        clock.set(start + Duration::from_millis(999));
        assert_eq!(recent.find(b, |_| true), Some(&"b"));
        clock.set(start + Duration::from_millis(1000));
        assert_eq!(recent.find(b, |_| true), None, "worked out again");
        let mut short = Recent::new(
            &clock,
            Duration::from_secs(1),
            Duration::from_millis(400),
            2,
        );
        short.keep(a, "a");
        clock.set(start + Duration::from_millis(1200));
        assert_eq!(short.find(a, |_| true), None, "half the TTL at most");
    }

    #[test]
    fn caps_values_per_scope_and_frees_idle_slots() {
        let clock = Clock::default();
        let start = clock.start;
        let ttl = Duration::from_secs(60);
        let mut limit = LabelLimit::new(2, &clock);
        assert_eq!(limit.label(1, "p1"), "p1");
        assert_eq!(limit.label(1, "p2"), "p2");
        assert_eq!(limit.label(1, "p3"), OTHER);
        assert_eq!(limit.label(2, "p3"), "p3", "scopes are independent");
        clock.set(start + Duration::from_secs(30));
        assert_eq!(limit.label(1, "p2"), "p2", "a held slot stays");
        clock.set(start + Duration::from_secs(61));
        limit.expire(ttl);
        assert_eq!(limit.label(1, "p3"), "p3", "p1's slot was idle");
        assert_eq!(limit.label(1, "p1"), OTHER);
    }
}
