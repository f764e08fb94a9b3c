//! Following a target's children and noticing its exit.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use loupe_common::{
    event::{KIND_PROCESS_EXEC, KIND_PROCESS_EXIT, KIND_PROCESS_FORK, Process},
    layout::task_newtask,
    maps::{COUNTER_PROCESS_CHANGES, Target},
};

use crate::{
    emit::{emit, header},
    maps::{TRACKED, bump, current, field, insert, mark_tracked, maybe_tracked, tracked},
};

/// `task:task_newtask` runs in the parent when it creates a task. A new
/// process (not a thread) of a tracked parent is tracked before it runs, so
/// none of its early syscalls are missed.
#[tracepoint]
pub fn loupe_newtask(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current();
    if !maybe_tracked(tgid) {
        return 0;
    }
    let Some(parent) = tracked(tgid) else {
        return 0;
    };
    let flags: u64 = field(&ctx, task_newtask::CLONE_FLAGS);
    if flags & task_newtask::CLONE_THREAD != 0 {
        return 0;
    }
    let child = field::<i32>(&ctx, task_newtask::PID) as u32;
    let target = Target {
        service: parent.service,
        parent: tgid,
    };
    insert(&TRACKED, &child, &target);
    mark_tracked(child);
    emit(Process {
        header: header(KIND_PROCESS_FORK, tgid),
        pid: child,
        service: parent.service,
    });
    0
}

/// Reports `kind` for the current process if it is tracked.
#[inline(always)]
fn report_self(kind: u32, tgid: u32) -> u32 {
    if !maybe_tracked(tgid) {
        return 0;
    }
    if let Some(target) = tracked(tgid) {
        emit(Process {
            header: header(kind, tgid),
            pid: tgid,
            service: target.service,
        });
    }
    0
}

/// `sched:sched_process_exit` runs for every exiting thread; only the main
/// thread of a tracked process is reported. The agent removes the process
/// after confirming it is gone, so a main thread that exits early (the rest
/// of the process living on) does not lose the process.
#[tracepoint]
pub fn loupe_exit(_ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if tgid != tid || !maybe_tracked(tgid) || tracked(tgid).is_none() {
        return 0;
    }
    bump(COUNTER_PROCESS_CHANGES);
    report_self(KIND_PROCESS_EXIT, tgid)
}

/// `sched:sched_process_exec`: a tracked process replaced its program (same
/// PID, still tracked). Its close-on-exec fds were closed without `close()`,
/// so the agent files its fds again.
/// Any process's `exec` may make it one a service selects (by command
/// line, container or pod): counted for the agent's `/proc` scans.
#[tracepoint]
pub fn loupe_exec(_ctx: TracePointContext) -> u32 {
    bump(COUNTER_PROCESS_CHANGES);
    let (tgid, _) = current();
    report_self(KIND_PROCESS_EXEC, tgid)
}
