//! TCP states as numbered by the kernel (`include/net/tcp_states.h`), and the
//! protocol and address-family numbers the probes compare against.
pub const ESTABLISHED: u32 = 1;
pub const SYN_SENT: u32 = 2;
pub const SYN_RECV: u32 = 3;
pub const FIN_WAIT1: u32 = 4;
pub const FIN_WAIT2: u32 = 5;
pub const TIME_WAIT: u32 = 6;
pub const CLOSE: u32 = 7;
pub const CLOSE_WAIT: u32 = 8;
pub const LAST_ACK: u32 = 9;
pub const LISTEN: u32 = 10;
pub const CLOSING: u32 = 11;
pub const NEW_SYN_RECV: u32 = 12;

pub const IPPROTO_TCP: u16 = 6;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The kernel's name of a TCP state, for logs and `/proc` parsing tests.
pub const fn state_name(state: u32) -> &'static str {
    match state {
        ESTABLISHED => "ESTABLISHED",
        SYN_SENT => "SYN_SENT",
        SYN_RECV => "SYN_RECV",
        FIN_WAIT1 => "FIN_WAIT1",
        FIN_WAIT2 => "FIN_WAIT2",
        TIME_WAIT => "TIME_WAIT",
        CLOSE => "CLOSE",
        CLOSE_WAIT => "CLOSE_WAIT",
        LAST_ACK => "LAST_ACK",
        LISTEN => "LISTEN",
        CLOSING => "CLOSING",
        NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "unknown",
    }
}
