//! What differs between the architectures loupe runs on: where a syscall's
//! number and arguments sit in the frame the kernel saves at syscall entry
//! (`struct pt_regs`), the kernel functions the syscalls enter through, the
//! data syscalls' numbers, and the syscalls an architecture does not have.
//!
//! The probes are built for one architecture (`bpf_target_arch`, set by
//! `agent/build.rs` from the agent's target) and read the frame at the
//! offsets below. Before loading anything, the agent checks that the running
//! kernel is of that architecture and that its BTF puts every member read
//! at the same offset (`agent/src/kernel/arch.rs`).

/// One value the probes read from the syscall frame: `member` (an array's
/// element `index`) of the kernel's `struct pt_regs`, `size` bytes at
/// `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub member: &'static str,
    pub index: u32,
    pub offset: u32,
    pub size: u32,
}

const fn reg(member: &'static str, offset: u32) -> Slot {
    Slot {
        member,
        index: 0,
        offset,
        size: 8,
    }
}

/// arm64's `regs[index]`, at the start of its `pt_regs`.
const fn regs(index: u32) -> Slot {
    Slot {
        member: "regs",
        index,
        offset: index * 8,
        size: 8,
    }
}

/// Numbers of the syscalls the `tp_btf/sys_exit` programs tell apart, and
/// of `accept` and `accept4`, which the agent looks for in
/// `/proc/PID/task/TID/syscall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbers {
    pub read: u64,
    pub recvfrom: u64,
    pub readv: u64,
    pub recvmsg: u64,
    pub write: u64,
    pub sendto: u64,
    pub writev: u64,
    pub sendmsg: u64,
    pub sendfile: u64,
    pub splice: u64,
    pub accept: u64,
    pub accept4: u64,
}

/// One architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// As Rust (`std::env::consts::ARCH`) and `uname -m` name it.
    pub name: &'static str,
    /// Prefix of the syscall functions fentry and fexit attach to
    /// (`__x64_sys_read`).
    pub syscall_prefix: &'static str,
    /// The first four syscall arguments, still valid when the syscall
    /// returns.
    pub args: [Slot; 4],
    /// The syscall number.
    pub nr: Slot,
    pub numbers: Numbers,
    /// Syscalls the architecture does not have (their hooks are skipped).
    pub missing: &'static [&'static str],
}

impl Arch {
    /// Whether the architecture has the syscall `name` (`dup2`).
    pub fn has_syscall(&self, name: &str) -> bool {
        !self.missing.contains(&name)
    }
}

/// x86_64: `arch/x86/include/asm/ptrace.h`; numbers from
/// `arch/x86/entry/syscalls/syscall_64.tbl`.
pub const X86_64: Arch = Arch {
    name: "x86_64",
    syscall_prefix: "__x64_sys_",
    args: [
        reg("di", 112),
        reg("si", 104),
        reg("dx", 96),
        reg("r10", 56),
    ],
    nr: reg("orig_ax", 120),
    numbers: Numbers {
        read: 0,
        recvfrom: 45,
        readv: 19,
        recvmsg: 47,
        write: 1,
        sendto: 44,
        writev: 20,
        sendmsg: 46,
        sendfile: 40,
        splice: 275,
        accept: 43,
        accept4: 288,
    },
    missing: &[],
};

/// arm64: `arch/arm64/include/asm/ptrace.h`. `regs[0]` holds the return
/// value once the syscall has run; the first argument stays in `orig_x0`.
/// The numbers are the generic ones (`include/uapi/asm-generic/unistd.h`),
/// which have no `dup2`.
pub const AARCH64: Arch = Arch {
    name: "aarch64",
    syscall_prefix: "__arm64_sys_",
    args: [reg("orig_x0", 272), regs(1), regs(2), regs(3)],
    nr: Slot {
        member: "syscallno",
        index: 0,
        offset: 280,
        size: 4,
    },
    numbers: Numbers {
        read: 63,
        recvfrom: 207,
        readv: 65,
        recvmsg: 212,
        write: 64,
        sendto: 206,
        writev: 66,
        sendmsg: 211,
        sendfile: 71,
        splice: 76,
        accept: 202,
        accept4: 242,
    },
    missing: &["dup2"],
};

/// Every architecture loupe is built for.
pub const ARCHES: &[Arch] = &[X86_64, AARCH64];

/// The architecture called `name`.
pub fn by_name(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|arch| arch.name == name)
}
