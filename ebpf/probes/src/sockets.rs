//! Which fds of a tracked process are TCP sockets (`FDS`), so that data
//! probes can skip files, pipes and Unix sockets in the kernel.
//!
//! A syscall's fd argument is stashed per thread at entry (`PENDING_FD`);
//! `connect` and `listen` fds are filed by the TCP state probe when the socket
//! enters `SYN_SENT` or `LISTEN` inside that syscall, `accept` fds at exit when
//! the listening fd is a known TCP listener (or, for an `accept` entered
//! before the process was tracked, when the task's file table shows a socket
//! of a tracked service), `dup` fds at exit (from the old fd's entry, or the
//! task's file table). The agent seeds `FDS` from `/proc` for processes it
//! attaches to.
//!
//! Each syscall is hooked by its tracepoints, or, where the kernel allows
//! fentry/fexit, by programs on its function (`__x64_sys_*`,
//! `__arm64_sys_*`; no syscall
//! tracepoint then: every syscall on the host skips the tracepoint path).
//! Both call the same functions below.
use aya_ebpf::{
    macros::{fentry, fexit, tracepoint},
    programs::{FEntryContext, FExitContext, TracePointContext},
};
use loupe_common::{
    layout::syscall,
    maps::{
        DIRECTION_INBOUND, DIRECTION_OUTBOUND, FdInfo, FdKey, ROLE_INBOUND, ROLE_LISTENER,
        ROLE_OUTBOUND,
    },
};

use crate::{
    args::{ARCH, Frame, frame_value},
    data::report_close,
    files::{new_conn_id, socket_owner},
    maps::{FDS, PENDING_FD, current, field, insert, maybe_tracked, tracked},
};

/// Keeps `fd` for the current thread's syscall (a tracked process only).
#[inline(always)]
fn stash(fd: u64) {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) || tracked(tgid).is_none() {
        return;
    }
    insert(&PENDING_FD, &tid, &(fd as u32));
}

/// The fd [`stash`] kept for thread `tid`'s current syscall, taken out.
#[inline(always)]
pub fn take_stashed(tid: u32) -> Option<u32> {
    let fd = PENDING_FD.get_ptr(tid)?;
    // SAFETY: pointer from a successful lookup of plain data.
    let fd = unsafe { *fd };
    let _ = PENDING_FD.remove(tid);
    Some(fd)
}

/// `accept` on `listen_fd` returned `ret`: the new fd is an inbound TCP
/// connection when the listening fd is a TCP listener, or when the new
/// socket itself is an inbound connection of a tracked service. The second
/// test covers a thread that was already blocked in `accept` when the agent
/// attached (a JVM's acceptor, a pre-threaded server): its entry was never
/// seen, so no listening fd was stashed (`listen_fd` is `None`), and the
/// connection it returns would otherwise go unread for its whole life.
#[inline(always)]
fn accepted(tgid: u32, listen_fd: Option<u32>, ret: i64) {
    let Some(target) = tracked(tgid) else {
        return;
    };
    if ret < 0 {
        return;
    }
    let service = match listen_fd {
        Some(fd) if is_listener(tgid, target.parent, fd) => target.service,
        _ => match socket_owner(ret as u32) {
            Some(owner) if owner.direction == DIRECTION_INBOUND => owner.service,
            _ => return,
        },
    };
    let info = FdInfo::new(service, ROLE_INBOUND, new_conn_id());
    insert(
        &FDS,
        &FdKey {
            tgid,
            fd: ret as u32,
        },
        &info,
    );
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

/// `close(fd)`: the fd no longer names the socket. The connection itself
/// ends when its state becomes `CLOSE` (other processes may still hold it).
#[inline(always)]
fn closing(fd: u64) {
    let (tgid, _) = current();
    if !maybe_tracked(tgid) {
        return;
    }
    forget_fd(FdKey {
        tgid,
        fd: fd as u32,
    });
}

/// The fd `key` no longer names what `FDS` says (closed, or replaced by
/// `dup2`).
#[inline(always)]
fn forget_fd(key: FdKey) {
    // Look up first: a lookup is lock-free, a delete of a missing key is not.
    if let Some(info) = FDS.get_ptr(key) {
        // SAFETY: pointer from a successful lookup of plain data.
        report_close(key.tgid, key.fd, unsafe { &*info });
        let _ = FDS.remove(key);
    }
}

/// `dup`, `dup2` or `dup3` of `old` returned `ret`: the new fd names the
/// same connection as the old one. A forked child's inherited fds are not
/// in `FDS` (the agent files them when it hears of the fork, often after
/// the child has used them): such an old fd is looked up in the task's
/// file table. This is how a forking server's child that moves its
/// connection to stdin/stdout (busybox httpd, inetd-style services) is
/// seen.
#[inline(always)]
fn duplicated(tgid: u32, old: u32, ret: i64) {
    if ret < 0 || ret as u32 == old {
        return;
    }
    let new = FdKey {
        tgid,
        fd: ret as u32,
    };
    // dup2 and dup3 close what the new fd named.
    forget_fd(new);
    let info = match FDS.get_ptr(FdKey { tgid, fd: old }) {
        // SAFETY: pointer from a successful lookup of plain data. The copy
        // keeps the connection id: both fds feed one stream.
        Some(info) => unsafe { *info },
        None => {
            let Some(owner) = socket_owner(old) else {
                return;
            };
            let role = if owner.direction == DIRECTION_OUTBOUND {
                ROLE_OUTBOUND
            } else {
                ROLE_INBOUND
            };
            FdInfo::new(owner.service, role, new_conn_id())
        }
    };
    insert(&FDS, &new, &info);
}

/// `syscalls:sys_enter_connect`, `sys_enter_listen`: the fd for the
/// `SYN_SENT` or `LISTEN` transition; `sys_enter_accept{,4}`: the listening
/// fd; `sys_enter_dup{,2,3}`: the old fd.
#[tracepoint]
pub fn loupe_stash_fd(ctx: TracePointContext) -> u32 {
    stash(field(&ctx, syscall::ARG0));
    0
}

/// The exit of a syscall whose entry stashed an fd, in a tracked thread:
/// `after(tgid, stashed fd, returned value)`.
#[inline(always)]
fn after_stashed(ctx: &TracePointContext, after: impl FnOnce(u32, u32, i64)) -> u32 {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) {
        return 0;
    }
    if let Some(fd) = take_stashed(tid) {
        after(tgid, fd, field(ctx, syscall::RET));
    }
    0
}

/// `syscalls:sys_exit_accept` and `sys_exit_accept4`; an exit without a
/// stashed fd is an `accept` entered before the process was tracked.
#[tracepoint]
pub fn loupe_accept_ret(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if maybe_tracked(tgid) {
        accepted(tgid, take_stashed(tid), field(&ctx, syscall::RET));
    }
    0
}

/// `syscalls:sys_enter_close`.
#[tracepoint]
pub fn loupe_close(ctx: TracePointContext) -> u32 {
    closing(field(&ctx, syscall::ARG0));
    0
}

/// `syscalls:sys_exit_dup`, `sys_exit_dup2`, `sys_exit_dup3`.
#[tracepoint]
pub fn loupe_dup_ret(ctx: TracePointContext) -> u32 {
    after_stashed(&ctx, duplicated)
}

/// The first argument of the syscall whose frame a fentry or fexit program
/// on its function gets.
#[inline(always)]
fn first_arg(regs: *const Frame) -> u64 {
    frame_value(regs, ARCH.args[0])
}

/// fentry on `connect` and `listen` (kernels that allow fentry; instead of
/// the syscall tracepoints): the fd for the TCP state probe. The agent
/// names each program's function at load time.
#[fentry]
pub fn loupe_fe_connect(ctx: FEntryContext) -> i32 {
    stash(first_arg(ctx.arg(0)));
    0
}

#[fentry]
pub fn loupe_fe_listen(ctx: FEntryContext) -> i32 {
    stash(first_arg(ctx.arg(0)));
    0
}

#[fentry]
pub fn loupe_fe_close(ctx: FEntryContext) -> i32 {
    closing(first_arg(ctx.arg(0)));
    0
}

/// fexit on a syscall that makes a new fd from its first argument:
/// `after(tgid, that fd, returned fd)` for a tracked process; no stash
/// (fexit sees both).
macro_rules! fd_fexit {
    ($program:ident, $after:ident) => {
        #[fexit]
        pub fn $program(ctx: FExitContext) -> i32 {
            let (tgid, _) = current();
            if maybe_tracked(tgid) && tracked(tgid).is_some() {
                $after(tgid, first_arg(ctx.arg(0)) as u32, ctx.arg(1));
            }
            0
        }
    };
}

/// [`accepted`] for fexit, which always knows the listening fd.
#[inline(always)]
fn accepted_on(tgid: u32, listen_fd: u32, ret: i64) {
    accepted(tgid, Some(listen_fd), ret);
}

fd_fexit!(loupe_fx_accept, accepted_on);
fd_fexit!(loupe_fx_accept4, accepted_on);
fd_fexit!(loupe_fx_dup, duplicated);
fd_fexit!(loupe_fx_dup2, duplicated);
fd_fexit!(loupe_fx_dup3, duplicated);
