//! Which fds of a tracked process are TCP sockets (`FDS`), so that data
//! probes can skip files, pipes and Unix sockets in the kernel.
//!
//! A syscall's fd argument is stashed per thread at entry (`PENDING_FD`);
//! `connect` and `listen` fds are filed by the TCP state probe when the socket
//! enters `SYN_SENT` or `LISTEN` inside that syscall, `accept` fds at exit when
//! the listening fd is a known TCP listener. The agent seeds `FDS` from `/proc`
//! for processes it attaches to.
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use loupe_common::{
    layout::syscall,
    maps::{FdInfo, FdKey, ROLE_INBOUND, ROLE_LISTENER},
};

use crate::{
    data::report_close,
    maps::{FDS, PENDING_FD, current, field, insert, maybe_tracked, tracked},
};

#[inline(always)]
fn stash_fd(ctx: &TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) || tracked(tgid).is_none() {
        return 0;
    }
    let fd: u64 = field(ctx, syscall::ARG0);
    insert(&PENDING_FD, &tid, &(fd as u32));
    0
}

/// `syscalls:sys_enter_connect`: remember the fd for the `SYN_SENT` transition.
#[tracepoint]
pub fn loupe_connect(ctx: TracePointContext) -> u32 {
    stash_fd(&ctx)
}

/// `syscalls:sys_enter_listen`: remember the fd for the `LISTEN` transition.
#[tracepoint]
pub fn loupe_listen(ctx: TracePointContext) -> u32 {
    stash_fd(&ctx)
}

/// `syscalls:sys_enter_accept` and `sys_enter_accept4`: remember the listening fd.
#[tracepoint]
pub fn loupe_accept(ctx: TracePointContext) -> u32 {
    stash_fd(&ctx)
}

/// `syscalls:sys_exit_accept` and `sys_exit_accept4`: file the new fd as an
/// inbound TCP connection when the listening fd is a TCP listener.
#[tracepoint]
pub fn loupe_accept_ret(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) {
        return 0;
    }
    let Some(target) = tracked(tgid) else {
        return 0;
    };
    let Some(listen_fd) = PENDING_FD.get_ptr(tid) else {
        return 0;
    };
    // SAFETY: pointer from a successful lookup of plain data.
    let listen_fd = unsafe { *listen_fd };
    let _ = PENDING_FD.remove(tid);
    let ret: i64 = field(&ctx, syscall::RET);
    if ret < 0 || !is_listener(tgid, target.parent, listen_fd) {
        return 0;
    }
    let info = FdInfo::new(target.service, ROLE_INBOUND, new_conn_id());
    insert(
        &FDS,
        &FdKey {
            tgid,
            fd: ret as u32,
        },
        &info,
    );
    0
}

/// Whether `fd` is a TCP listener of `tgid`, or inherited from its parent
/// (a pre-forked worker accepting on its parent's socket).
#[inline(always)]
fn is_listener(tgid: u32, parent: u32, fd: u32) -> bool {
    let role = |tgid| {
        FDS.get_ptr(FdKey { tgid, fd }).map(|info| {
            // SAFETY: pointer from a successful lookup of plain data.
            unsafe { (*info).role }
        })
    };
    match role(tgid) {
        Some(role) => role == ROLE_LISTENER,
        None => parent != 0 && role(parent) == Some(ROLE_LISTENER),
    }
}

/// `syscalls:sys_enter_close`: the fd no longer names the socket. The
/// connection itself ends when its state becomes `CLOSE` (other processes
/// may still hold it).
#[tracepoint]
pub fn loupe_close(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current();
    if !maybe_tracked(tgid) {
        return 0;
    }
    let fd: u64 = field(&ctx, syscall::ARG0);
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    // Look up first: a lookup is lock-free, a delete of a missing key is not.
    if let Some(info) = FDS.get_ptr(key) {
        // SAFETY: pointer from a successful lookup of plain data.
        report_close(tgid, key.fd, unsafe { &*info });
        let _ = FDS.remove(key);
    }
    0
}

/// A connection id: the time of the insert, unique enough within a process.
#[inline(always)]
pub fn new_conn_id() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}
