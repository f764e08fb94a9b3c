//! Which fds of a tracked process are TCP sockets (`FDS`), so that data
//! probes can skip files, pipes and Unix sockets in the kernel.
//!
//! A syscall's fd argument is stashed per thread at entry (`PENDING_FD`);
//! `connect` and `listen` fds are filed by the TCP state probe when the socket
//! enters `SYN_SENT` or `LISTEN` inside that syscall, `accept` fds at exit when
//! the listening fd is a known TCP listener, `dup` fds at exit (from the
//! old fd's entry, or the task's file table). The agent seeds `FDS` from
//! `/proc` for processes it attaches to.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use loupe_common::{
    layout::{S_IFMT, S_IFSOCK, syscall},
    maps::{
        DIRECTION_OUTBOUND, FdInfo, FdKey, ROLE_INBOUND, ROLE_LISTENER, ROLE_OUTBOUND, SockOwner,
    },
};

use crate::{
    data::report_close,
    maps::{
        FDS, PENDING_FD, SOCKETS, current, field, insert, kernel_offsets, maybe_tracked, tracked,
    },
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

/// The fd [`stash_fd`] kept for thread `tid`'s current syscall, taken out.
#[inline(always)]
pub fn take_stashed(tid: u32) -> Option<u32> {
    let fd = PENDING_FD.get_ptr(tid)?;
    // SAFETY: pointer from a successful lookup of plain data.
    let fd = unsafe { *fd };
    let _ = PENDING_FD.remove(tid);
    Some(fd)
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
    let Some(listen_fd) = take_stashed(tid) else {
        return 0;
    };
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
    forget_fd(FdKey {
        tgid,
        fd: fd as u32,
    });
    0
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

/// `syscalls:sys_enter_dup`, `sys_enter_dup2`, `sys_enter_dup3`: remember
/// the old fd.
#[tracepoint]
pub fn loupe_dup(ctx: TracePointContext) -> u32 {
    stash_fd(&ctx)
}

/// `syscalls:sys_exit_dup`, `sys_exit_dup2`, `sys_exit_dup3`: the new fd
/// names the same connection as the old one. A forked child's inherited
/// fds are not in `FDS` (the agent files them when it hears of the fork,
/// often after the child has used them): such an old fd is looked up in
/// the task's file table. This is how a forking server's child that moves
/// its connection to stdin/stdout (busybox httpd, inetd-style services) is
/// seen.
#[tracepoint]
pub fn loupe_dup_ret(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) {
        return 0;
    }
    let Some(old) = take_stashed(tid) else {
        return 0;
    };
    let ret: i64 = field(&ctx, syscall::RET);
    if ret < 0 || ret as u32 == old {
        return 0;
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
                return 0;
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
    0
}

/// Reads a kernel pointer-sized (or smaller) value at `addr`.
#[inline(always)]
fn read_kernel<T>(addr: u64) -> Option<T> {
    // SAFETY: a checked kernel read (`bpf_probe_read_kernel` faults safely).
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The owner of the TCP socket behind the current task's `fd`, if it is a
/// socket of a tracked service: `task->files->fdt->fd[fd]`, a socket inode,
/// its `struct socket`'s `sk`, looked up in `SOCKETS`.
#[inline(always)]
fn socket_owner(fd: u32) -> Option<SockOwner> {
    let offsets = kernel_offsets();
    if offsets.files_valid == 0 {
        return None;
    }
    let o = offsets.files;
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task + u64::from(o.task_files))?;
    let fdt: u64 = read_kernel(files + u64::from(o.files_fdt))?;
    let max_fds: u32 = read_kernel(fdt + u64::from(o.fdt_max_fds))?;
    if fd >= max_fds {
        return None;
    }
    let array: u64 = read_kernel(fdt + u64::from(o.fdt_fd))?;
    let file: u64 = read_kernel(array + u64::from(fd) * 8)?;
    if file == 0 {
        return None;
    }
    let inode: u64 = read_kernel(file + u64::from(o.file_inode))?;
    let mode: u16 = read_kernel(inode + u64::from(o.inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = read_kernel(file + u64::from(o.file_private))?;
    let sk: u64 = read_kernel(socket + u64::from(o.socket_sk))?;
    // SAFETY: pointer from a successful lookup of plain data.
    SOCKETS.get_ptr(sk).map(|owner| unsafe { *owner })
}

/// A connection id: the time of the insert, unique enough within a process.
#[inline(always)]
pub fn new_conn_id() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}
