//! What a task's fd names when the probes were not told: the socket behind
//! it, read from the task's file table (`task->files->fdt->fd[n]`, offsets
//! from BTF) and looked up in `SOCKETS`. The fd probes use it for fds they
//! did not see being made (a forked child's inherited socket, an `accept`
//! entered before the process was tracked), the data probes for the
//! connections of `LATE_ACCEPTS` processes.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_ktime_get_ns};
use loupe_common::{
    layout::{S_IFMT, S_IFSOCK},
    maps::{DIRECTION_INBOUND, FdInfo, FdKey, ROLE_INBOUND, SWITCH_LATE_ACCEPTS, SockOwner},
};

use crate::maps::{FDS, LATE_ACCEPTS, SOCKETS, insert, kernel_offsets, read_kernel, switch};

/// The owner of the TCP socket behind the current task's `fd`, if it is a
/// socket of a tracked service: `task->files->fdt->fd[fd]`, a socket inode,
/// its `struct socket`'s `sk`, looked up in `SOCKETS`.
#[inline(always)]
pub fn socket_owner(fd: u32) -> Option<SockOwner> {
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

/// The entry for `fd`, unknown to `FDS`, of process `tgid` when it is in
/// `LATE_ACCEPTS` and the fd is an inbound connection of a tracked
/// service: filed now, so that its first syscall is read like the rest.
/// Only the fexit data programs call this: under the tracepoints, the
/// `accept` exit itself files such a connection.
#[inline(always)]
pub fn late_accepted(tgid: u32, fd: u32) -> Option<*mut FdInfo> {
    if !switch(SWITCH_LATE_ACCEPTS) || LATE_ACCEPTS.get_ptr(tgid).is_none() {
        return None;
    }
    let owner = socket_owner(fd)?;
    if owner.direction != DIRECTION_INBOUND {
        return None;
    }
    let key = FdKey { tgid, fd };
    insert(
        &FDS,
        &key,
        &FdInfo::new(owner.service, ROLE_INBOUND, new_conn_id()),
    );
    FDS.get_ptr_mut(key)
}
