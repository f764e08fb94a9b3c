//! The current syscall's arguments and where its bytes are (one buffer,
//! or an `iovec` array), for the data probes and the HTTP/2 walk; and the
//! clamps their copies are bounded with, laid out for the verifier.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs},
};
use loupe_common::layout::user;

/// The argument registers of the current syscall (x86_64 order in
/// `pt_regs`: rdx, rsi, rdi are adjacent; r10 holds the fourth).
#[repr(C)]
pub struct Args {
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r10: u64,
}

/// The arguments from the registers saved at syscall entry: loads from the
/// BTF-typed `pt_regs` (a checked `bpf_probe_read_kernel` instead cost about
/// 60 ns more per syscall here).
#[inline(always)]
pub fn syscall_args() -> Option<Args> {
    // SAFETY: helpers without preconditions; `regs` is a BTF-typed kernel
    // pointer, so the verifier checks (and guards) each load.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
        Some(Args {
            rdx: (*regs).rdx,
            rsi: (*regs).rsi,
            rdi: (*regs).rdi,
            r10: (*regs).r10,
        })
    }
}

/// Where the syscall's bytes are.
#[derive(Clone, Copy)]
pub enum Source {
    /// `buf` argument in rsi (read, write, sendto).
    Buf,
    /// `buf` in rsi, `flags` in r10 (recvfrom).
    BufFlags,
    /// `iovec` array in rsi, count in rdx (readv, writev).
    Iov,
    /// `user_msghdr` in rsi (recvmsg, sendmsg).
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
        Source::Iov => Some((args.rsi, args.rdx)),
        Source::Msg => {
            // `msg_iov` and `msg_iovlen` are adjacent: one read.
            // SAFETY: a checked user-memory read.
            let [iov, count] = unsafe {
                bpf_probe_read_user((args.rsi + user::MSG_IOV as u64) as *const [u64; 2])
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
        return Some((args.rsi + ret, ret));
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
