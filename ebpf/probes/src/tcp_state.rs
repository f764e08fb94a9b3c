//! `sock:inet_sock_set_state`: the lifecycle of TCP connections owned by
//! tracked services.
//!
//! This tracepoint fires for every TCP socket on the host, often in softirq
//! context where the current process is unrelated, so ownership never comes
//! from the current PID except for the two transitions only a syscall makes:
//! `CLOSE -> SYN_SENT` (inside `connect`) and `CLOSE -> LISTEN` (inside
//! `listen`). A passive open (`SYN_RECV -> ESTABLISHED`) belongs to the
//! service that listens on its local port in its network namespace. From then
//! on the socket is known by its address in `SOCKETS` until it reaches `CLOSE`.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use loupe_common::{
    event::{KIND_TCP_STATE, TCP_FLAG_ADOPTED, TcpState},
    layout::inet_sock_set_state as f,
    maps::{
        COUNTER_PROCESS_CHANGES, DIRECTION_INBOUND, DIRECTION_OUTBOUND, FdInfo, FdKey, ListenKey,
        ROLE_LISTENER, ROLE_OUTBOUND, SWITCH_PREEXISTING, SockOwner, TupleKey,
    },
    tcp,
};

use crate::{
    emit::{emit, header},
    files::new_conn_id,
    maps::{
        FDS, LISTENERS, PREEXISTING, SOCKETS, bump, current, field, insert, kernel_offsets,
        maybe_tracked, read_kernel, switch, tracked,
    },
    sockets::take_stashed,
};

#[tracepoint]
pub fn loupe_tcp_state(ctx: TracePointContext) -> u32 {
    let _ = on_state(&ctx);
    0
}

/// A 16-byte address field (arrays are copied with the helper: the verifier
/// refuses byte loads through a moved context pointer).
#[inline(always)]
fn address(ctx: &TracePointContext, offset: usize) -> Result<[u8; 16], i32> {
    // SAFETY: offsets checked against the tracepoint's format by the agent.
    unsafe { ctx.read_at(offset) }
}

#[inline(always)]
fn on_state(ctx: &TracePointContext) -> Result<(), i32> {
    if field::<u16>(ctx, f::PROTOCOL) != tcp::IPPROTO_TCP {
        return Ok(());
    }
    let skaddr: u64 = field(ctx, f::SKADDR);
    let old = field::<i32>(ctx, f::OLDSTATE) as u32;
    let new = field::<i32>(ctx, f::NEWSTATE) as u32;

    // A socket we already own: report the transitions userspace counts.
    if let Some(owner) = SOCKETS.get_ptr(skaddr) {
        // SAFETY: pointer from a successful lookup of plain data.
        let owner = unsafe { *owner };
        if new == tcp::CLOSE {
            let _ = SOCKETS.remove(skaddr);
        }
        if new == tcp::ESTABLISHED || new == tcp::CLOSE {
            emit(record(ctx, skaddr, owner, old, new)?);
        }
        return Ok(());
    }

    if old == tcp::CLOSE && (new == tcp::SYN_SENT || new == tcp::LISTEN) {
        if new == tcp::LISTEN {
            // Any process's new listener may be a port a service selects.
            bump(COUNTER_PROCESS_CHANGES);
        }
        return on_syscall_transition(ctx, skaddr, new);
    }

    if old == tcp::SYN_RECV && new == tcp::ESTABLISHED {
        let netns = netns_of(skaddr);
        let key = ListenKey {
            netns,
            port: field(ctx, f::SPORT),
            _pad: 0,
        };
        if let Some(owner) = LISTENERS.get_ptr(key) {
            let owner = SockOwner {
                // SAFETY: pointer from a successful lookup of plain data.
                service: unsafe { (*owner).service },
                direction: DIRECTION_INBOUND,
            };
            insert(&SOCKETS, &skaddr, &owner);
            let mut event = record(ctx, skaddr, owner, old, new)?;
            event.netns = netns;
            emit(event);
        }
        return Ok(());
    }

    // A connection that was open before the agent attached.
    if !switch(SWITCH_PREEXISTING) {
        return Ok(());
    }
    let tuple = tuple(ctx)?;
    if let Some(owner) = PREEXISTING.get_ptr(tuple) {
        // SAFETY: pointer from a successful lookup of plain data.
        let owner = unsafe { *owner };
        let _ = PREEXISTING.remove(tuple);
        if new != tcp::CLOSE {
            insert(&SOCKETS, &skaddr, &owner);
        }
        let mut event = record(ctx, skaddr, owner, old, new)?;
        event.flags = TCP_FLAG_ADOPTED;
        emit(event);
    }
    Ok(())
}

/// `connect` (`SYN_SENT`) or `listen` (`LISTEN`) by the current process.
#[inline(always)]
fn on_syscall_transition(ctx: &TracePointContext, skaddr: u64, new: u32) -> Result<(), i32> {
    let (tgid, tid) = current();
    if !maybe_tracked(tgid) {
        return Ok(());
    }
    let Some(target) = tracked(tgid) else {
        return Ok(());
    };
    let (owner, role, netns) = if new == tcp::SYN_SENT {
        let owner = SockOwner {
            service: target.service,
            direction: DIRECTION_OUTBOUND,
        };
        insert(&SOCKETS, &skaddr, &owner);
        (owner, ROLE_OUTBOUND, 0)
    } else {
        let owner = SockOwner {
            service: target.service,
            direction: 0,
        };
        let netns = netns_of(skaddr);
        let key = ListenKey {
            netns,
            port: field(ctx, f::SPORT),
            _pad: 0,
        };
        insert(&LISTENERS, &key, &owner);
        (owner, ROLE_LISTENER, netns)
    };
    if let Some(fd) = take_stashed(tid) {
        let info = FdInfo::new(target.service, role, new_conn_id());
        insert(&FDS, &FdKey { tgid, fd }, &info);
    }
    let mut event = record(ctx, skaddr, owner, tcp::CLOSE, new)?;
    event.netns = netns;
    emit(event);
    Ok(())
}

#[inline(always)]
fn tuple(ctx: &TracePointContext) -> Result<TupleKey, i32> {
    // For AF_INET the tracepoint stores IPv4-mapped addresses in the v6 fields.
    Ok(TupleKey {
        sport: field(ctx, f::SPORT),
        dport: field(ctx, f::DPORT),
        _pad: 0,
        saddr: address(ctx, f::SADDR_V6)?,
        daddr: address(ctx, f::DADDR_V6)?,
    })
}

/// The record of a transition; `flags` and `netns` are filled in by the
/// callers that know them.
#[inline(always)]
fn record(
    ctx: &TracePointContext,
    skaddr: u64,
    owner: SockOwner,
    oldstate: u32,
    newstate: u32,
) -> Result<TcpState, i32> {
    let (tgid, _) = current();
    Ok(TcpState {
        header: header(KIND_TCP_STATE, tgid),
        skaddr,
        owner,
        oldstate,
        newstate,
        flags: 0,
        netns: 0,
        tuple: tuple(ctx)?,
    })
}

/// Inode number of the socket's network namespace, read through offsets the
/// agent resolved from BTF; 0 when they are unknown.
#[inline(always)]
fn netns_of(skaddr: u64) -> u32 {
    let offsets = kernel_offsets();
    if offsets.valid == 0 {
        return 0;
    }
    let Some(net) = read_kernel::<u64>(skaddr + u64::from(offsets.sock_net)) else {
        return 0;
    };
    read_kernel::<u32>(net + u64::from(offsets.net_inum)).unwrap_or(0)
}
