//! Threads that were blocked in `accept` when loupe attached, under
//! fexit: a fexit program runs only for calls that begin after it is
//! attached, so the connection such a call returns (a JVM's acceptor
//! thread, a pre-threaded server) would never be filed. Their processes
//! go in the probes' `LATE_ACCEPTS`, where the data probes look an unknown
//! fd up in the task's file table, until every such thread has run again
//! (its context switches moved) at two upkeep ticks in a row: by then the
//! call has returned and its fd is in `/proc`, where the agent files what
//! the probes have not yet.
use std::collections::HashMap;

/// A process's threads blocked in `accept`: `(tid, context switches)`
/// when they were found.
struct Blocked {
    threads: Vec<(u32, u64)>,
    /// Every thread had run again at the last tick.
    woken: bool,
}

/// The processes in `LATE_ACCEPTS`, as the agent follows them.
#[derive(Default)]
pub struct LateAccepts {
    processes: HashMap<u32, Blocked>,
}

impl LateAccepts {
    /// Follows `pid`'s `threads` (none: nothing to follow). Returns whether
    /// the process is new here.
    pub fn add(&mut self, pid: u32, threads: Vec<(u32, u64)>) -> bool {
        if threads.is_empty() || self.processes.contains_key(&pid) {
            return false;
        }
        let blocked = Blocked {
            threads,
            woken: false,
        };
        self.processes.insert(pid, blocked);
        true
    }

    /// Stops following `pid`; whether it was followed.
    pub fn remove(&mut self, pid: u32) -> bool {
        self.processes.remove(&pid).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// One upkeep tick. `switches(pid, tid)` reads a thread's context
    /// switches now (`None`: gone). Returns the processes whose threads
    /// have all run again, at this tick and the one before; they are no
    /// longer followed.
    pub fn settle(&mut self, switches: impl Fn(u32, u32) -> Option<u64>) -> Vec<u32> {
        let mut settled = Vec::new();
        for (&pid, blocked) in &mut self.processes {
            let woken = blocked
                .threads
                .iter()
                .all(|&(tid, then)| switches(pid, tid).is_none_or(|now| now != then));
            if woken && blocked.woken {
                settled.push(pid);
            }
            blocked.woken = woken;
        }
        for pid in &settled {
            self.processes.remove(pid);
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_settles_a_tick_after_all_its_threads_ran() {
        let mut late = LateAccepts::default();
        assert!(late.add(7, vec![(7, 10), (8, 20)]));
        assert!(!late.add(7, vec![(7, 10)]), "followed already");
        assert!(!late.add(9, Vec::new()), "no blocked thread");
        // Thread 8 still sleeps in its accept.
        assert!(
            late.settle(|_, tid| Some(if tid == 7 { 11 } else { 20 }))
                .is_empty()
        );
        // Both have run: settled at the next tick, not this one.
        assert!(late.settle(|_, _| Some(30)).is_empty());
        assert_eq!(late.settle(|_, _| Some(30)), [7]);
        assert!(late.is_empty());
    }

    #[test]
    fn a_thread_that_is_gone_counts_as_woken() {
        let mut late = LateAccepts::default();
        late.add(7, vec![(8, 20)]);
        assert!(late.settle(|_, _| None).is_empty());
        assert_eq!(late.settle(|_, _| None), [7]);
    }

    #[test]
    fn a_thread_that_never_ran_keeps_its_process_followed() {
        let mut late = LateAccepts::default();
        late.add(7, vec![(8, 20)]);
        for _ in 0..3 {
            assert!(late.settle(|_, _| Some(20)).is_empty());
        }
        assert!(late.remove(7));
        assert!(!late.remove(7));
        assert!(late.is_empty());
    }
}
