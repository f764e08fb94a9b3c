//! loupe's kernel programs. They stay thin: check that the current process is
//! tracked (first step of every probe that can tell), read stable tracepoint
//! fields, update the ownership maps, and hand records to userspace through
//! one ring buffer. Every decision that needs more than a map lookup is made
//! in userspace.
//!
//! Hooks used (all work without kprobes or fentry):
//! - `task:task_newtask`, `sched:sched_process_{exec,exit}`: follow a target's
//!   children, programs and exit.
//! - `syscalls:sys_enter_{connect,listen,accept,accept4,close}` and
//!   `sys_exit_accept{,4}`: which fds of a tracked process are TCP sockets.
//! - `sock:inet_sock_set_state`: TCP connection lifecycle, keyed by socket.
//! - `syscalls:sys_exit_*` of the data syscalls: bytes on captured connections.
//! - uprobes on OpenSSL's `SSL_read`/`SSL_write` (and `_ex`) and `SSL_free`
//!   in the processes the agent attaches them to: TLS plaintext.
#![no_std]
// Inline assembly (`args::min`) is unstable for BPF; the probes build with nightly.
#![feature(asm_experimental_arch)]
#![no_main]

mod args;
mod check;
mod data;
mod emit;
mod files;
mod frames;
mod maps;
mod process;
mod sockets;
mod tcp_state;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach a panic; this is never run.
    loop {}
}

/// The kernel requires a GPL-compatible licence for `bpf_probe_read_kernel`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
