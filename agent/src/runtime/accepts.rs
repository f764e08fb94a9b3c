//! Connections returned by an `accept` that began before fexit was
//! attached (see `targets::late_accepts`): the processes with such threads
//! enter the probes' `LATE_ACCEPTS`, and leave it once those threads have
//! run again, with their inbound connections filed from `/proc`.
use loupe_common::maps::SWITCH_LATE_ACCEPTS;
use tracing::{info, warn};

use super::state::State;
use crate::kernel::{DataHook, arch::NATIVE};

impl State {
    /// Under fexit, enters `pid` in `LATE_ACCEPTS` if some of its threads
    /// are blocked in `accept` now (their calls may predate the programs).
    /// The syscall tracepoints need nothing of the kind: the `accept` exit
    /// sees a call that began before it was attached.
    pub(super) fn watch_late_accepts(&mut self, pid: u32) {
        if self.kernel.probes.data_hook != DataHook::Fentry {
            return;
        }
        let numbers = [NATIVE.numbers.accept, NATIVE.numbers.accept4];
        let threads = self.targets.proc.threads_in(pid, &numbers);
        let blocked = threads.len();
        if !self.targets.late_accepts.add(pid, threads) {
            return;
        }
        if let Err(err) = self.kernel.probes.late_accepts.insert(pid, 1, 0) {
            warn!(pid, error = %err, "cannot follow the threads blocked in accept: the probes' map is full; the first connection each returns is not read");
            self.targets.late_accepts.remove(pid);
            return;
        }
        self.switch_late_accepts();
        info!(
            pid,
            threads = blocked,
            "threads blocked in accept since before loupe attached: their connections are looked up in the process's file table until they have run again"
        );
    }

    /// One upkeep tick: the processes whose blocked threads have all run
    /// again leave `LATE_ACCEPTS`, after their inbound connections still
    /// unknown to the probes are filed from `/proc`.
    pub(super) fn settle_late_accepts(&mut self) {
        if self.targets.late_accepts.is_empty() {
            return;
        }
        let proc = &self.targets.proc;
        let settled = self
            .targets
            .late_accepts
            .settle(|pid, tid| proc.switches(pid, tid));
        if settled.is_empty() {
            return;
        }
        for pid in settled {
            if let Some(&service) = self.targets.tracked.get(&pid) {
                self.file_accepted(pid, service);
            }
            let _ = self.kernel.probes.late_accepts.remove(&pid);
        }
        self.switch_late_accepts();
    }

    /// `pid` is no longer tracked.
    pub(super) fn forget_late_accepts(&mut self, pid: u32) {
        if self.targets.late_accepts.remove(pid) {
            let _ = self.kernel.probes.late_accepts.remove(&pid);
            self.switch_late_accepts();
        }
    }

    fn switch_late_accepts(&mut self) {
        let on = !self.targets.late_accepts.is_empty();
        self.kernel.probes.set_switch(SWITCH_LATE_ACCEPTS, on);
    }
}
