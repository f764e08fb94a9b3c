//! Field offsets the probes read, and the kernel-struct offsets the agent
//! resolves at load time.
//!
//! Tracepoint records have a stable layout in practice, but the probes do not
//! take that on faith: the agent compares every offset listed here with the
//! tracepoint's `format` file before attaching (see `agent/src/kernel/tracefs.rs`)
//! and refuses to attach a probe whose layout differs.
use crate::assert_size;

/// One field a probe reads from a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// A tracepoint, the probe attached to it, and the fields that probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracepoint {
    pub category: &'static str,
    pub name: &'static str,
    /// Name of the program (its function name in `ebpf/probes`).
    pub program: &'static str,
    pub fields: &'static [Field],
}

const fn field(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

/// `sock:inet_sock_set_state`, fired on every TCP state change.
pub mod inet_sock_set_state {
    use super::{Field, field};
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 36;
    pub const SADDR_V6: usize = 40;
    pub const DADDR_V6: usize = 56;
    pub const FIELDS: &[Field] = &[
        field("skaddr", SKADDR, 8),
        field("oldstate", OLDSTATE, 4),
        field("newstate", NEWSTATE, 4),
        field("sport", SPORT, 2),
        field("dport", DPORT, 2),
        field("family", FAMILY, 2),
        field("protocol", PROTOCOL, 2),
        field("saddr", SADDR, 4),
        field("daddr", DADDR, 4),
        field("saddr_v6", SADDR_V6, 16),
        field("daddr_v6", DADDR_V6, 16),
    ];
}

/// `task:task_newtask`, fired in the parent when a task is created.
pub mod task_newtask {
    use super::{Field, field};
    pub const PID: usize = 8;
    pub const CLONE_FLAGS: usize = 32;
    pub const FIELDS: &[Field] = &[field("pid", PID, 4), field("clone_flags", CLONE_FLAGS, 8)];
    /// `CLONE_THREAD` from `include/uapi/linux/sched.h`.
    pub const CLONE_THREAD: u64 = 0x0001_0000;
}

/// Syscall tracepoints (`syscalls:sys_enter_*` / `sys_exit_*`): arguments are
/// 8-byte slots from offset 16; the return value sits at offset 16.
pub mod syscall {
    use super::{Field, field};
    pub const ARG0: usize = 16;
    pub const RET: usize = 16;
    pub const ENTER_FD: &[Field] = &[field("fd", ARG0, 8)];
    /// `dup(fildes)`.
    pub const ENTER_FILDES: &[Field] = &[field("fildes", ARG0, 8)];
    /// `dup2(oldfd, newfd)`, `dup3(oldfd, newfd, flags)`.
    pub const ENTER_OLDFD: &[Field] = &[field("oldfd", ARG0, 8)];
    pub const EXIT_RET: &[Field] = &[field("ret", RET, 8)];
}

/// The tracepoints the agent always attaches, with their programs.
pub const TRACEPOINTS: &[Tracepoint] = &[
    Tracepoint {
        category: "sock",
        name: "inet_sock_set_state",
        program: "loupe_tcp_state",
        fields: inet_sock_set_state::FIELDS,
    },
    Tracepoint {
        category: "task",
        name: "task_newtask",
        program: "loupe_newtask",
        fields: task_newtask::FIELDS,
    },
    Tracepoint {
        category: "sched",
        name: "sched_process_exit",
        program: "loupe_exit",
        fields: &[],
    },
    Tracepoint {
        category: "sched",
        name: "sched_process_exec",
        program: "loupe_exec",
        fields: &[],
    },
];

/// The syscalls that tell which fds are TCP sockets, through their
/// tracepoints (where [`CONTROL_FUNCTIONS`] do not load).
pub const CONTROL_TRACEPOINTS: &[Tracepoint] = &[
    enter("sys_enter_connect", "loupe_stash_fd", syscall::ENTER_FD),
    enter("sys_enter_listen", "loupe_stash_fd", syscall::ENTER_FD),
    enter("sys_enter_accept", "loupe_stash_fd", syscall::ENTER_FD),
    enter("sys_enter_accept4", "loupe_stash_fd", syscall::ENTER_FD),
    exit("sys_exit_accept", "loupe_accept_ret"),
    exit("sys_exit_accept4", "loupe_accept_ret"),
    enter("sys_enter_close", "loupe_close", syscall::ENTER_FD),
    enter("sys_enter_dup", "loupe_stash_fd", syscall::ENTER_FILDES),
    enter("sys_enter_dup2", "loupe_stash_fd", syscall::ENTER_OLDFD),
    enter("sys_enter_dup3", "loupe_stash_fd", syscall::ENTER_OLDFD),
    exit("sys_exit_dup", "loupe_dup_ret"),
    exit("sys_exit_dup2", "loupe_dup_ret"),
    exit("sys_exit_dup3", "loupe_dup_ret"),
];

impl Tracepoint {
    /// The syscall of a `syscalls:sys_enter_*` or `sys_exit_*` tracepoint.
    pub fn syscall(&self) -> Option<&'static str> {
        if self.category != "syscalls" {
            return None;
        }
        let name = self.name;
        name.strip_prefix("sys_enter_")
            .or_else(|| name.strip_prefix("sys_exit_"))
    }
}

/// A program attached with fentry or fexit to the kernel function a
/// syscall enters through (its name is the architecture's prefix, e.g.
/// `__x64_sys_`, and the syscall's; see [`crate::arch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionHook {
    pub syscall: &'static str,
    pub program: &'static str,
}

const fn function(syscall: &'static str, program: &'static str) -> FunctionHook {
    FunctionHook { syscall, program }
}

/// The same syscalls as [`CONTROL_TRACEPOINTS`], through fentry/fexit on
/// their functions (kernels that allow it).
pub const CONTROL_FUNCTIONS: &[FunctionHook] = &[
    function("connect", "loupe_fe_connect"),
    function("listen", "loupe_fe_listen"),
    function("accept", "loupe_fx_accept"),
    function("accept4", "loupe_fx_accept4"),
    function("close", "loupe_fe_close"),
    function("dup", "loupe_fx_dup"),
    function("dup2", "loupe_fx_dup2"),
    function("dup3", "loupe_fx_dup3"),
];

/// The BTF tracepoint (`tp_btf`) programs that capture the data syscalls
/// from the raw `sys_exit` tracepoint, where the kernel allows it: one for
/// the reads, one for the writes (a program for all of them is too large
/// for the verifier of Linux 6.1).
pub const SYS_EXIT_PROGRAMS: &[&str] = &["loupe_sys_exit_rx", "loupe_sys_exit_tx"];
pub const SYS_EXIT_TRACEPOINT: &str = "sys_exit";

/// The data syscalls' own tracepoints: the fallback for kernels without
/// BTF tracepoints (each syscall exit costs a trace record there).
pub const DATA_TRACEPOINTS: &[Tracepoint] = &[
    exit("sys_exit_read", "loupe_rx_buf"),
    exit("sys_exit_recvfrom", "loupe_rx_from"),
    exit("sys_exit_readv", "loupe_rx_iov"),
    exit("sys_exit_recvmsg", "loupe_rx_msg"),
    exit("sys_exit_write", "loupe_tx_buf"),
    exit("sys_exit_sendto", "loupe_tx_buf"),
    exit("sys_exit_writev", "loupe_tx_iov"),
    exit("sys_exit_sendmsg", "loupe_tx_msg"),
    exit("sys_exit_sendfile64", "loupe_tx_file"),
    exit("sys_exit_splice", "loupe_splice"),
];

/// The data syscalls through fexit on their functions (kernels that allow
/// it; instead of [`DATA_TRACEPOINTS`]).
pub const DATA_FUNCTIONS: &[FunctionHook] = &[
    function("read", "loupe_fx_read"),
    function("recvfrom", "loupe_fx_recvfrom"),
    function("readv", "loupe_fx_readv"),
    function("recvmsg", "loupe_fx_recvmsg"),
    function("write", "loupe_fx_write"),
    function("sendto", "loupe_fx_sendto"),
    function("writev", "loupe_fx_writev"),
    function("sendmsg", "loupe_fx_sendmsg"),
    function("sendfile64", "loupe_fx_sendfile"),
    function("splice", "loupe_fx_splice"),
];

const fn enter(name: &'static str, program: &'static str, fields: &'static [Field]) -> Tracepoint {
    Tracepoint {
        category: "syscalls",
        name,
        program,
        fields,
    }
}

const fn exit(name: &'static str, program: &'static str) -> Tracepoint {
    Tracepoint {
        category: "syscalls",
        name,
        program,
        fields: syscall::EXIT_RET,
    }
}

/// An OpenSSL function the TLS uprobes hook: its symbol, the program run at
/// its entry, and the one run at its return (none for `SSL_free`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsHook {
    pub symbol: &'static str,
    pub entry: &'static str,
    pub ret: Option<&'static str>,
}

/// The functions through which an OpenSSL user reads and writes plaintext,
/// and the one that ends a connection. `SSL_read`/`SSL_write` return the
/// byte count; the `_ex` forms (OpenSSL 1.1.1+, used by CPython) write it
/// through their fourth argument.
pub const TLS_HOOKS: &[TlsHook] = &[
    tls("SSL_read", "loupe_ssl_call", Some("loupe_ssl_rx")),
    tls("SSL_read_ex", "loupe_ssl_call_ex", Some("loupe_ssl_rx")),
    tls("SSL_write", "loupe_ssl_call", Some("loupe_ssl_tx")),
    tls("SSL_write_ex", "loupe_ssl_call_ex", Some("loupe_ssl_tx")),
    tls("SSL_free", "loupe_ssl_free", None),
];

const fn tls(symbol: &'static str, entry: &'static str, ret: Option<&'static str>) -> TlsHook {
    TlsHook { symbol, entry, ret }
}

/// User-space ABI layouts the data probes read (stable, and the same on
/// x86_64 and arm64).
pub mod user {
    /// `struct iovec`: base pointer, then length.
    pub const IOVEC_SIZE: usize = 16;
    /// `struct user_msghdr`: `msg_iov`, followed by `msg_iovlen`.
    pub const MSG_IOV: usize = 16;
    /// iovecs looked at per syscall (`writev` of headers plus body uses 2).
    pub const MAX_IOVECS: usize = 32;
    /// `recv*` flag: the bytes stay queued for the next read (a peek).
    pub const MSG_PEEK: u64 = 2;
}

/// Name of the probes' global holding [`KernelOffsets`].
pub const KERNEL_OFFSETS_GLOBAL: &str = "KERNEL_OFFSETS";

/// Offsets inside kernel structs, resolved by the agent from the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`) because rustc emits no CO-RE
/// relocations. When `valid` is 0 the probes do not read kernel memory and
/// network namespaces are not told apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    /// `offsetof(struct sock, __sk_common.skc_net)`: the `struct net *`.
    pub sock_net: u32,
    /// `offsetof(struct net, ns.inum)`.
    pub net_inum: u32,
    /// 1 when the file-table offsets below are resolved: the probes may
    /// then find the socket behind an fd they were not told about (a forked
    /// child moving an inherited connection with `dup2`).
    pub files_valid: u32,
    pub files: FileOffsets,
}
assert_size!(KernelOffsets, 48);

/// The path from a task to the socket behind one of its fds:
/// `task->files->fdt->fd[n]`, that file's `f_inode->i_mode` (is it a
/// socket?) and `((struct socket *)private_data)->sk`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOffsets {
    /// `offsetof(struct task_struct, files)`.
    pub task_files: u32,
    /// `offsetof(struct files_struct, fdt)`.
    pub files_fdt: u32,
    /// `offsetof(struct fdtable, max_fds)`.
    pub fdt_max_fds: u32,
    /// `offsetof(struct fdtable, fd)`.
    pub fdt_fd: u32,
    /// `offsetof(struct file, f_inode)`.
    pub file_inode: u32,
    /// `offsetof(struct file, private_data)`.
    pub file_private: u32,
    /// `offsetof(struct inode, i_mode)`.
    pub inode_mode: u32,
    /// `offsetof(struct socket, sk)`.
    pub socket_sk: u32,
}
assert_size!(FileOffsets, 32);

/// `S_IFMT` and `S_IFSOCK` from `include/uapi/linux/stat.h`.
pub const S_IFMT: u16 = 0o170_000;
pub const S_IFSOCK: u16 = 0o140_000;

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, `Copy`, no padding (size asserted), any bit pattern is valid.
unsafe impl aya::Pod for KernelOffsets {}
