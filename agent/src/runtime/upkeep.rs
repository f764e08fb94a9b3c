//! Periodic upkeep of the [`State`]: the probes' counters, reconciling the
//! kernel maps with what userspace believes (records can be lost when the
//! ring buffer is full), fd bookkeeping, and expiry of idle series.
use std::{collections::HashSet, time::Instant};

use loupe_common::maps::{COUNTER_EVENTS_LOST, COUNTER_MAP_FULL, FdKey, SWITCH_PREEXISTING};
use tracing::warn;

use super::state::State;
use crate::capture::{connections::Direction, streams::monotonic_ns};

impl State {
    pub fn tick(&mut self, now: Instant) {
        self.export.metrics.clock.set(now);
        self.read_probe_counters();
        self.reconcile_tracked();
        self.sync_tls();
        self.reconcile_sockets();
        self.sweep_pending_fds();
        self.settle_late_accepts();
        self.kernel.probes.sweep_raises(now);
        if self.capture.conns.seeded().next().is_none() {
            // Every pre-existing connection was adopted or is gone.
            self.kernel.probes.set_switch(SWITCH_PREEXISTING, false);
        }
        self.count_fds();
        self.expire_streams(monotonic_ns());
        self.capture.self_ports.expire(now);
        self.keep_live_series();
        self.expire_series();
    }

    fn read_probe_counters(&mut self) {
        let lost = self.kernel.probes.counter(COUNTER_EVENTS_LOST);
        if lost > self.kernel.probe_lost {
            let new = lost - self.kernel.probe_lost;
            warn!(lost = new, "probe records lost: the ring buffer was full");
            self.export.metrics.events_lost.inc_by(new);
            self.kernel.probe_lost = lost;
        }
        let full = self.kernel.probes.counter(COUNTER_MAP_FULL);
        if full > self.kernel.probe_map_full {
            let new = full - self.kernel.probe_map_full;
            warn!(
                refused = new,
                "a probe map is full; some sockets are not followed"
            );
            self.export.metrics.map_full.inc_by(new);
            self.kernel.probe_map_full = full;
        }
    }

    /// OpenSSL libraries loaded (or unloaded) since the last look; the
    /// hooked processes per service.
    fn sync_tls(&mut self) {
        let mut per_service = vec![0i64; self.targets.services.len()];
        let tracked: Vec<(u32, u32)> = self.targets.tracked.iter().map(|(&p, &s)| (p, s)).collect();
        for (pid, service) in tracked {
            self.targets
                .tls
                .sync(&mut self.kernel.probes, &self.targets.proc, pid);
            if self.targets.tls.is_hooked(pid) {
                per_service[service as usize] += 1;
            }
        }
        for (index, (service, count)) in self.targets.services.iter().zip(per_service).enumerate() {
            if let Some(id) = &service.id
                && !self.targets.free.contains(&(index as u32))
            {
                self.export.metrics.tls_hooked.of(id, &[]).set(count);
            }
        }
    }

    /// Processes the probes track whose fork or exit record was lost.
    fn reconcile_tracked(&mut self) {
        let in_kernel: Vec<(u32, u32, u32)> = self
            .kernel
            .probes
            .tracked
            .iter()
            .filter_map(Result::ok)
            .map(|(pid, target)| (pid, target.service, target.parent))
            .collect();
        for (pid, service, parent) in in_kernel {
            if self.targets.tracked.contains_key(&pid) {
                // Its bit, in case a fork record was lost before the
                // agent set it (an atomic OR in shared memory: no syscall).
                self.kernel.probes.set_tracked_bit(pid, true);
                continue;
            }
            if self.targets.proc.is_running(pid) && (service as usize) < self.targets.services.len()
            {
                self.track(pid, service, parent);
            } else {
                let _ = self.kernel.probes.tracked.remove(&pid);
            }
        }
    }

    /// Connections whose `CLOSE` record was lost: the probes dropped the
    /// socket from their map, userspace still counts it.
    fn reconcile_sockets(&mut self) {
        let live: HashSet<u64> = self
            .kernel
            .probes
            .sockets
            .keys()
            .filter_map(Result::ok)
            .collect();
        for delta in self.capture.conns.close_missing(&live) {
            self.publish(&delta);
        }
    }

    /// Stashed syscall arguments of threads that died inside the syscall.
    fn sweep_pending_fds(&mut self) {
        let dead: Vec<u32> = self
            .kernel
            .probes
            .pending_fd
            .keys()
            .filter_map(Result::ok)
            .filter(|&tid| !self.targets.proc.exists(tid))
            .collect();
        for tid in dead {
            let _ = self.kernel.probes.pending_fd.remove(&tid);
        }
    }

    /// Counts the known socket fds per service and drops those of processes
    /// that are no longer tracked.
    fn count_fds(&mut self) {
        let mut per_service = vec![0i64; self.targets.services.len()];
        let keys: Vec<FdKey> = self
            .kernel
            .probes
            .fds
            .keys()
            .filter_map(Result::ok)
            .collect();
        for key in keys {
            match self.targets.tracked.get(&key.tgid) {
                Some(&service) => per_service[service as usize] += 1,
                None => {
                    let _ = self.kernel.probes.fds.remove(&key);
                }
            }
        }
        for (index, (service, count)) in self.targets.services.iter().zip(per_service).enumerate() {
            if self.targets.free.contains(&(index as u32)) {
                continue; // a gone pod's service
            }
            if let Some(id) = &service.id {
                self.export.metrics.tracked_sockets.of(id, &[]).set(count);
            }
        }
    }

    /// Series with open connections never expire.
    fn keep_live_series(&mut self) {
        let m = &self.export.metrics;
        for (index, service) in self.targets.services.iter().enumerate() {
            let Some(id) = &service.id else { continue };
            for direction in Direction::ALL {
                if self.capture.conns.active(index as u32, direction) != 0 {
                    m.tcp_active.keep(id, &[direction.as_str()]);
                }
            }
        }
        let capture = &mut self.capture;
        for (service, peer) in capture.conns.live_peers() {
            if let Some(id) = &self.targets.services[service as usize].id {
                m.tcp_active_by_peer.keep(id, &[peer]);
            }
            // The peer keeps its place in the budget too.
            capture.peers.keep(service, peer);
        }
    }

    /// Idle series go, and with them the label values only they used.
    fn expire_series(&mut self) {
        let ttl = self.export.ttl;
        self.export.metrics.expire_idle(ttl);
        let enrich = &mut self.enrich;
        for budget in [
            &mut self.capture.peers,
            &mut enrich.endpoints,
            &mut enrich.principals,
            &mut enrich.rule_labels,
            &mut enrich.calls.hosts,
            &mut enrich.calls.models,
            &mut enrich.calls.token_types,
        ] {
            budget.expire(ttl);
        }
    }
}
