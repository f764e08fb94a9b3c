//! The standard process metrics of loupe itself, from the Prometheus client
//! library's collector, with `process_cpu_seconds_total` at the resolution
//! the kernel keeps (clock ticks) instead of the library's whole seconds,
//! as the Go and Python clients report it.
use prometheus::{
    core::{Collector, Desc},
    process_collector::ProcessCollector,
    proto::MetricFamily,
};

const CPU: &str = "process_cpu_seconds_total";

pub struct SelfProcess {
    inner: ProcessCollector,
    ticks_per_second: f64,
}

impl SelfProcess {
    pub fn new() -> Self {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            inner: ProcessCollector::for_self(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }
}

/// User plus system CPU time, in clock ticks, from the text of
/// `/proc/self/stat` (fields 14 and 15; the command name in parentheses
/// may hold spaces, so fields are counted after its closing one).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

impl Collector for SelfProcess {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        let ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_ticks(&stat));
        if let Some(ticks) = ticks {
            let seconds = ticks as f64 / self.ticks_per_second;
            for family in families.iter_mut().filter(|f| f.name() == CPU) {
                for metric in family.mut_metric().iter_mut() {
                    let mut counter = metric.get_counter().clone();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_after_a_command_name_with_spaces() {
        let stat = "42 (a) b) R 1 42 42 0 -1 4194304 100 0 0 0 123 45 0 0 20 0 3 0 999 1000 50";
        assert_eq!(cpu_ticks(stat), Some(168));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn cpu_seconds_at_tick_resolution() {
        // Burn a little CPU, then compare with the ticks the kernel counts.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 30 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let process = SelfProcess::new();
        let families = process.collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == CPU)
            .expect("cpu family");
        let value = cpu.get_metric()[0].get_counter().get_value();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let seconds = cpu_ticks(&stat).unwrap() as f64 / process.ticks_per_second;
        assert!(value > 0.0, "{value}");
        // Within two ticks of the kernel's count (the library's whole
        // seconds would be up to a second off).
        assert!(
            (seconds - value).abs() <= 0.02 && seconds - value >= 0.0,
            "{value} {seconds}"
        );
    }
}
