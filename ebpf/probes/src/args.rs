//! The current syscall's arguments and where its bytes are (one buffer,
//! or an `iovec` array), for the data probes and the HTTP/2 walk; and the
//! clamps their copies are bounded with, laid out for the verifier.
use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs};
use loupe_common::{
    arch::{Arch, Slot},
    layout::user,
};

/// The architecture the probes are built for (`agent/build.rs` sets
/// `bpf_target_arch` from the agent's target).
#[cfg(bpf_target_arch = "x86_64")]
pub const ARCH: Arch = loupe_common::arch::X86_64;
#[cfg(bpf_target_arch = "aarch64")]
pub const ARCH: Arch = loupe_common::arch::AARCH64;
#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("build the probes through agent/build.rs (bpf_target_arch x86_64 or aarch64)");

/// The kernel's saved syscall frame (`struct pt_regs`), read only at the
/// offsets of [`ARCH`].
pub enum Frame {}

/// The first four arguments of the current syscall.
pub struct Args {
    /// The fd (`splice`: `fd_in`).
    pub arg0: u64,
    /// The buffer, `iovec` array or `msghdr`.
    pub arg1: u64,
    /// The length, `iovec` count, `recvmsg` flags, or `splice`'s `fd_out`.
    pub arg2: u64,
    /// `recvfrom` flags.
    pub arg3: u64,
}

/// The value of `slot` in the frame at `regs`. Built for a BTF-typed
/// pointer, each is one load at a constant offset, which the verifier
/// checks against the kernel's `struct pt_regs`.
#[inline(always)]
pub fn frame_value(regs: *const Frame, slot: Slot) -> u64 {
    // SAFETY: `regs` is a BTF-typed kernel pointer; the verifier guards the
    // load (the agent checked `slot` against the kernel's BTF).
    unsafe {
        let at = regs.cast::<u8>().add(slot.offset as usize);
        if slot.size == 4 {
            u64::from(*at.cast::<u32>())
        } else {
            *at.cast::<u64>()
        }
    }
}

/// The syscall's arguments from its frame at `regs` (plain loads; no
/// helper call).
#[inline(always)]
pub fn frame_args(regs: *const Frame) -> Args {
    let [a0, a1, a2, a3] = ARCH.args;
    Args {
        arg0: frame_value(regs, a0),
        arg1: frame_value(regs, a1),
        arg2: frame_value(regs, a2),
        arg3: frame_value(regs, a3),
    }
}

/// The arguments from the registers saved at syscall entry: loads from the
/// BTF-typed `pt_regs` (a checked `bpf_probe_read_kernel` instead cost about
/// 60 ns more per syscall here).
#[inline(always)]
pub fn syscall_args() -> Option<Args> {
    // SAFETY: helpers without preconditions.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const Frame;
    Some(frame_args(regs))
}

/// Where the syscall's bytes are.
#[derive(Clone, Copy)]
pub enum Source {
    /// A buffer, the second argument (read, write, sendto).
    Buf,
    /// A buffer, and flags in the fourth argument (recvfrom).
    BufFlags,
    /// An `iovec` array, its count in the third argument (readv, writev).
    Iov,
    /// A `user_msghdr`, the second argument (recvmsg, sendmsg).
    Msg,
}

/// `(base, len)` of the `struct iovec` at `addr`, in one user read (each
/// user read costs about as much as a copy of a few hundred bytes).
#[inline(always)]
pub fn read_iovec(addr: u64) -> Option<(u64, u64)> {
    // SAFETY: a checked user-memory read.
    let [base, len] = unsafe { bpf_probe_read_user(addr as *const [u64; 2]) }.ok()?;
    Some((base, len))
}

/// The first two `struct iovec`s at `addr`, in one user read (the array
/// must hold two).
#[inline(always)]
pub fn read_two_iovecs(addr: u64) -> Option<[(u64, u64); 2]> {
    // SAFETY: a checked user-memory read.
    let [b0, l0, b1, l1] = unsafe { bpf_probe_read_user(addr as *const [u64; 4]) }.ok()?;
    Some([(b0, l0), (b1, l1)])
}

/// `(iovec array, count)` of the syscall, or `None` for a plain buffer.
#[inline(always)]
pub fn iovecs(source: Source, args: &Args) -> Option<(u64, u64)> {
    match source {
        Source::Buf | Source::BufFlags => None,
        Source::Iov => Some((args.arg1, args.arg2)),
        Source::Msg => {
            // `msg_iov` and `msg_iovlen` are adjacent: one read.
            // SAFETY: a checked user-memory read.
            let [iov, count] = unsafe {
                bpf_probe_read_user((args.arg1 + user::MSG_IOV as u64) as *const [u64; 2])
            }
            .ok()?;
            Some((iov, count))
        }
    }
}

/// `(end address, bytes available before it)` of the last byte transferred.
#[inline(always)]
pub fn last_bytes(source: Source, args: &Args, ret: u64) -> Option<(u64, u64)> {
    let Some((iov, count)) = iovecs(source, args) else {
        return Some((args.arg1 + ret, ret));
    };
    let mut left = ret;
    for i in 0..user::MAX_IOVECS as u64 {
        if i >= count {
            break;
        }
        let (base, len) = read_iovec(iov + i * user::IOVEC_SIZE as u64)?;
        if left <= len {
            return Some((base + left, left));
        }
        left -= len;
    }
    None
}

/// `n`, at most `N`. The comparison is written in assembly so that the
/// compiler cannot fold it into arithmetic the verifier of older kernels
/// loses track of (Linux 6.1 refused the copies: "R2 min value is
/// negative").
#[inline(always)]
pub fn cap<const N: usize>(n: u64) -> u64 {
    min(n, N as u64)
}

/// `n`, at most `max`, in assembly laid out for the verifier: it walks the
/// fall-through first, so the path that keeps `n` (a range) reaches the
/// join first, and the clamped one (a constant, or `max`'s range, inside
/// it) is pruned there instead of doubling the states after every clamp.
#[inline(always)]
pub fn min(n: u64, max: u64) -> u64 {
    let mut n = n;
    // SAFETY: register arithmetic only.
    unsafe {
        core::arch::asm!(
            "if {n} > {max} goto 2f",
            "goto 3f",
            "2:",
            "{n} = {max}",
            "3:",
            n = inout(reg) n,
            max = in(reg) max,
            options(pure, nomem, nostack),
        );
    }
    n
}
