//! The data syscalls of tracked connections: what a service reads and writes
//! on its TCP sockets.
//!
//! Syscall exits only: the arguments are still in the registers the kernel
//! saved at syscall entry, so nothing is stashed at entry and no map is
//! written per syscall. Two hooks share the logic below:
//! - the exit tracepoints of the data syscalls (`syscalls:sys_exit_{read,
//!   recvfrom,readv,recvmsg,write,sendto,writev,sendmsg,sendfile64,splice}`), the
//!   registers found with `bpf_task_pt_regs` (5.15+); the default, since
//!   they run for those syscalls only;
//! - `tp_btf/sys_exit` ([`loupe_sys_exit_rx`], [`loupe_sys_exit_tx`]): every
//!   syscall exit, the
//!   registers read straight from the BTF-typed `pt_regs`; for older
//!   kernels;
//! - `fexit` on each syscall's function (`__x64_sys_*`, `__arm64_sys_*`),
//!   where the kernel allows fentry/fexit (the cheapest: no trace record
//!   per call).
//!
//! The order of checks keeps the common cases cheap: another syscall, a
//! failed or empty one, an untracked process, an fd that is not a captured
//! TCP socket, all return before any copy.
//!
//! What is copied (limits in `loupe_common::event`), so that no count
//! depends on how a runtime cuts its bytes into syscalls:
//! - every read and every write: its first `CAPTURE_MAX` bytes, gathered
//!   across the buffers of a vectored call (`writev` of a head and a body,
//!   node-postgres's Parse/Bind/Execute/Sync in one `writev`);
//! - a write longer than that (and a long read on a connection the process
//!   opened): also its last `CAPTURE_TAIL` (`CAPTURE_CLIENT_TAIL`) bytes,
//!   where a chunked body or a database's reply ends; the first record then
//!   carries `DATA_MORE`;
//! - under a capture budget (`FdInfo::capture`: the service's route rules
//!   read response bodies, set when a request starts; or the agent wants a
//!   client's reply whole, e.g. a model call's): every write (for a client,
//!   every read) from its start, in up to `CAPTURE_PIECES` records, until
//!   the budget is spent;
//! - `sendfile` and `splice`: the length only.
use aya_ebpf::{
    cty::c_void,
    helpers::generated::bpf_probe_read_user as read_user_raw,
    macros::{btf_tracepoint, fexit, tracepoint},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};
use loupe_common::{
    event::{
        CAPTURE_CLIENT_TAIL, CAPTURE_GATHER, CAPTURE_MAX, CAPTURE_PIECES, CAPTURE_SMALL,
        CAPTURE_TAIL, DATA_CONTINUED, DATA_MORE, DATA_NONE, DATA_OUTBOUND, DATA_SAME_SYSCALL,
        DATA_TAIL, DIR_RX, DIR_TX, Data, DataHeader, KIND_CLOSE, KIND_DATA,
    },
    layout::{syscall, user},
    maps::{
        CAPTURE_ROUTE_WORDS, CAPTURE_ROUTES_LEN, CONN_SEEDED, COUNTER_EVENTS_LOST, FRAMING_NONE,
        FdInfo, FdKey, ROLE_INBOUND, ROLE_OUTBOUND, SWITCH_CAPTURE_INBOUND,
        SWITCH_CAPTURE_OUTBOUND, SWITCH_CAPTURE_ROUTES,
    },
};

use crate::{
    args::{
        ARCH, Args, Frame, Source, cap, frame_args, frame_value, iovecs, last_bytes, min,
        read_iovec, read_two_iovecs, syscall_args,
    },
    emit::{header, submit},
    files::late_accepted,
    frames,
    maps::{
        CAPTURE_ROUTES, EVENTS, FDS, bump, current, field, maybe_tracked, switch, switch_value,
        take_raise,
    },
};

/// Whether the agent asked for this connection's bytes.
#[inline(always)]
pub fn captured_role(role: u32) -> bool {
    (role == ROLE_INBOUND && switch(SWITCH_CAPTURE_INBOUND))
        || (role == ROLE_OUTBOUND && switch(SWITCH_CAPTURE_OUTBOUND))
}

/// The connection the current syscall is on, if captured. `args` is called
/// only for a tracked process (it may cost helper calls). `LATE`: an fd
/// `FDS` does not know may be a connection returned by an `accept` that
/// began before fexit was attached ([`late_accepted`]).
#[inline(always)]
fn connection<const LATE: bool>(
    ret: i64,
    args: impl FnOnce() -> Option<Args>,
) -> Option<(u64, Args, u32, *mut FdInfo)> {
    let (ret, args, tgid) = tracked_call(ret, args)?;
    let fd = args.arg0 as u32;
    let info = match FDS.get_ptr_mut(FdKey { tgid, fd }) {
        Some(info) => info,
        None if LATE => late_accepted(tgid, fd)?,
        None => return None,
    };
    Some((ret, args, tgid, captured(info)?))
}

/// A syscall of a tracked process that moved bytes: `(bytes, arguments,
/// process)`.
#[inline(always)]
fn tracked_call(ret: i64, args: impl FnOnce() -> Option<Args>) -> Option<(u64, Args, u32)> {
    if ret <= 0 {
        return None;
    }
    let (tgid, _) = current();
    if !maybe_tracked(tgid) {
        return None;
    }
    Some((ret as u64, args()?, tgid))
}

/// The fd map's entry of `fd`, if it is a captured connection.
#[inline(always)]
fn captured_fd(tgid: u32, fd: u32) -> Option<*mut FdInfo> {
    captured(FDS.get_ptr_mut(FdKey { tgid, fd })?)
}

/// `info`, if its connection is captured.
#[inline(always)]
fn captured(info: *mut FdInfo) -> Option<*mut FdInfo> {
    // SAFETY: pointer from a successful lookup of plain data.
    captured_role(unsafe { (*info).role }).then_some(info)
}

/// Writes a data record with up to `N` bytes copied from `src`.
#[inline(always)]
fn emit_bytes<const N: usize>(head: DataHeader, src: u64, n: u64) {
    emit_inspected::<N>(head, src, n, Inspect::NOTHING);
}

/// [`emit_bytes`], with `inspect` run on the copied bytes before the
/// record is handed over. Returns whether they start with the HTTP/2
/// preface `inspect` looked for: the record is then dropped, for the
/// caller to walk the syscall's frames instead.
#[inline(always)]
fn emit_inspected<const N: usize>(
    mut head: DataHeader,
    src: u64,
    n: u64,
    inspect: Inspect,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Data<N>>(0) else {
        bump(COUNTER_EVENTS_LOST);
        return false;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: a field of the reserved record.
    let n = cap::<N>(unsafe { launder(record, n) });
    if n > 0 {
        // SAFETY: `n <= N` bytes into the record's reserved byte array from
        // a user address, through the checked helper.
        let rc = unsafe {
            read_user_raw(
                core::ptr::addr_of_mut!((*record).bytes).cast::<c_void>(),
                n as u32,
                src as *const c_void,
            )
        };
        if rc == 0 {
            head.captured = n as u32;
            // SAFETY: the record's bytes, `N` of them.
            let bytes = unsafe { core::ptr::addr_of!((*record).bytes) }.cast();
            if inspect.run::<N>(bytes, n) {
                entry.discard(0);
                return true;
            }
        } else {
            head.flags |= DATA_NONE;
        }
    }
    // SAFETY: the header field of the reserved record.
    unsafe { core::ptr::addr_of_mut!((*record).head).write(head) };
    submit(entry);
    false
}

/// What a served connection's read that starts a request is looked at
/// for, in its record before it is handed over: whether one of the route
/// prefixes (`CAPTURE_ROUTES`) starts it (the response's capture budget is
/// then set before the response is written), and whether the client's
/// HTTP/2 preface does (also looked for at the start of a connection the
/// process opened).
#[derive(Clone, Copy)]
struct Inspect {
    /// The connection, or null: nothing to look at.
    info: *mut FdInfo,
    /// `CAPTURE_ROUTES` entries in use.
    routes: u32,
    preface: bool,
}

/// The client's preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, as three
/// little-endian words.
const PREFACE: [u64; 3] = [
    u64::from_le_bytes(*b"PRI * HT"),
    u64::from_le_bytes(*b"TP/2.0\r\n"),
    u64::from_le_bytes(*b"\r\nSM\r\n\r\n"),
];

impl Inspect {
    const NOTHING: Self = Self {
        info: core::ptr::null_mut(),
        routes: 0,
        preface: false,
    };

    /// `captured` bytes at `bytes`, in a record with room for `N`; returns
    /// whether they start with the HTTP/2 preface it looks for.
    #[inline(always)]
    fn run<const N: usize>(self, bytes: *const u8, captured: u64) -> bool {
        if self.info.is_null() {
            return false;
        }
        if self.preface && N >= 8 * PREFACE.len() && captured >= 8 * PREFACE.len() as u64 {
            let words = bytes.cast::<u64>();
            // SAFETY: within the record's `N` bytes (checked above), 8-byte
            // aligned like every ring record's byte array.
            if (0..PREFACE.len()).all(|i| unsafe { words.add(i).read() } == PREFACE[i]) {
                return true;
            }
        }
        if self.routes == 0 || N < 8 * CAPTURE_ROUTE_WORDS {
            return false;
        }
        let mut line = [0u64; CAPTURE_ROUTE_WORDS];
        for (i, word) in line.iter_mut().enumerate() {
            // SAFETY: within the record's `N` bytes (checked above); ring
            // records are 8-byte aligned, and so is their byte array.
            *word = unsafe { bytes.cast::<u64>().add(i).read() };
        }
        let mut budget = 0;
        for i in 0..CAPTURE_ROUTES_LEN {
            if i >= self.routes {
                break;
            }
            if let Some(route) = CAPTURE_ROUTES.get(i)
                && route.matches(&line, captured as u32)
            {
                budget = route.budget;
                break;
            }
        }
        // SAFETY: in-place update of the looked-up value.
        unsafe { (*self.info).capture = budget };
        false
    }
}

/// `value`, stored in the reserved record's `len` field (which the header
/// overwrites later) and read back. The verifier does not follow values
/// through ring-buffer memory: the bound a copy needs then comes from `cap`
/// alone, and the syscall's length, from which `value` was computed, is not
/// marked precise. Otherwise every comparison on that length (is there a
/// tail, is the first buffer shorter) splits the states the verifier must
/// walk through the copies, past its limit on vectored calls.
///
/// # Safety
/// `record` points to a reserved ring-buffer record.
#[inline(always)]
unsafe fn launder<const N: usize>(record: *mut Data<N>, value: u64) -> u64 {
    // SAFETY: the caller's record; volatile so that the round trip stays.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*record).head.len);
        slot.write_volatile(value);
        slot.read_volatile()
    }
}

#[inline(always)]
fn data_header(tgid: u32, info: *const FdInfo, fd: u32, dir: u16, len: u64) -> DataHeader {
    // SAFETY: pointer from a successful lookup of plain data.
    let (conn, service, role) = unsafe { ((*info).conn, (*info).service, (*info).role) };
    DataHeader {
        header: header(KIND_DATA, tgid),
        conn,
        len,
        fd,
        service,
        dir,
        flags: if role == ROLE_OUTBOUND {
            DATA_OUTBOUND
        } else {
            0
        },
        captured: 0,
    }
}

/// What [`emit_first`] handed over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum First {
    /// The syscall's first bytes; no record of its last is to follow.
    Head,
    /// Its first bytes, with `DATA_MORE`: a record of its last is to follow.
    HeadBeforeTail,
    /// Nothing: its bytes start with the HTTP/2 preface, and are to be
    /// walked frame by frame.
    Preface,
}

impl First {
    #[inline(always)]
    fn of(tail: bool) -> Self {
        if tail {
            Self::HeadBeforeTail
        } else {
            Self::Head
        }
    }
}

/// The first bytes of the syscall (up to `CAPTURE_MAX`, gathered across
/// the buffers of a vectored call), in the smallest record that holds
/// them. With `with_tail`, a record with its last bytes is to follow if
/// these do not reach its end (`DATA_MORE` says so).
#[inline(always)]
fn emit_first(
    mut head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    with_tail: bool,
    inspect: Inspect,
) -> First {
    let want = min(ret, CAPTURE_MAX as u64);
    let (buf, buf_len) = match iovecs(source, args) {
        None => (args.arg1, ret),
        // Two buffers in one read where there are two (a head and a body).
        Some((iov, count)) => match match count {
            0 => None,
            1 => read_iovec(iov).map(|first| [first, (0, 0)]),
            _ => read_two_iovecs(iov),
        } {
            Some(pair @ [(_, len), _]) if len < want && count > 1 => {
                return if want <= CAPTURE_SMALL as u64 {
                    emit_gathered::<CAPTURE_SMALL, { 2 * CAPTURE_SMALL }>(
                        head, iov, count, ret, pair, with_tail, inspect,
                    )
                } else {
                    emit_gathered::<CAPTURE_MAX, CAPTURE_GATHER>(
                        head, iov, count, ret, pair, with_tail, inspect,
                    )
                };
            }
            Some([first, _]) => first,
            None => {
                head.flags |= DATA_NONE;
                emit_bytes::<0>(head, 0, 0);
                return First::Head;
            }
        },
    };
    let tail = with_tail && ret > CAPTURE_MAX as u64;
    if tail {
        head.flags |= DATA_MORE;
    }
    let n = min(buf_len, want);
    let preface = if n <= CAPTURE_SMALL as u64 {
        emit_inspected::<CAPTURE_SMALL>(head, buf, n, inspect)
    } else {
        emit_inspected::<CAPTURE_MAX>(head, buf, n, inspect)
    };
    if preface {
        First::Preface
    } else {
        First::of(tail)
    }
}

/// The first (up to `N`, at most `CAPTURE_MAX`) of the `ret` bytes of a
/// vectored syscall, gathered from its buffers into one record of `R =
/// 2 N` bytes (a short write, such as nginx's head and small body, takes a
/// small one); `pair` is its first two `iovec`s, already read. Returns what
/// [`emit_first`] does; a tail is to follow also when more buffers than
/// `MAX_IOVECS` (or an unreadable one) cut the gathering short.
#[inline(always)]
fn emit_gathered<const N: usize, const R: usize>(
    mut head: DataHeader,
    iov: u64,
    count: u64,
    ret: u64,
    pair: [(u64, u64); 2],
    with_tail: bool,
    inspect: Inspect,
) -> First {
    let want = min(ret, N as u64);
    let Some(mut entry) = EVENTS.reserve::<Data<R>>(0) else {
        bump(COUNTER_EVENTS_LOST);
        return First::Head;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: the byte array of the reserved record.
    let bytes = unsafe { core::ptr::addr_of_mut!((*record).bytes) }.cast::<u8>();
    let mut copied = 0u64;
    for i in 0..user::MAX_IOVECS as u64 {
        if i > 0 && (i >= count || copied >= want) {
            break;
        }
        let (base, len) = match i {
            0 | 1 => pair[i as usize],
            _ => match read_iovec(iov + i * user::IOVEC_SIZE as u64) {
                Some(next) => next,
                None => break,
            },
        };
        // Bounded for the verifier: an offset below `N` and a length of at
        // most `N` stay inside the record's `R = 2 N` bytes.
        // SAFETY: a field of the reserved record.
        let at = min(unsafe { launder(record, copied) }, N as u64 - 1);
        // SAFETY: as above.
        let n = cap::<N>(unsafe { launder(record, min(len, want - copied)) });
        // SAFETY: `at + n <= R` bytes into the reserved
        // record, from a user address, through the checked helper.
        let rc = unsafe {
            read_user_raw(
                bytes.add(at as usize).cast::<c_void>(),
                n as u32,
                base as *const c_void,
            )
        };
        if rc != 0 {
            break;
        }
        copied = at + n;
    }
    head.captured = copied as u32;
    if copied == 0 {
        head.flags |= DATA_NONE;
    }
    if inspect.run::<R>(bytes, copied) {
        entry.discard(0);
        return First::Preface;
    }
    let tail = with_tail && (copied < want || ret > CAPTURE_MAX as u64);
    if tail {
        head.flags |= DATA_MORE;
    }
    // SAFETY: the header field of the reserved record.
    unsafe { core::ptr::addr_of_mut!((*record).head).write(head) };
    submit(entry);
    First::of(tail)
}

/// The first bytes of the syscall and, when `with_tail` and they do not
/// cover it, its last `T` bytes in a second record. Returns whether they
/// start with the HTTP/2 preface `inspect` looked for (nothing was handed
/// over).
#[inline(always)]
fn emit_ends<const T: usize>(
    mut head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    with_tail: bool,
    inspect: Inspect,
) -> bool {
    match emit_first(head, source, args, ret, with_tail, inspect) {
        First::HeadBeforeTail => {
            head.flags |= DATA_SAME_SYSCALL;
            emit_last::<T>(head, source, args, ret);
            false
        }
        First::Head => false,
        First::Preface => true,
    }
}

#[inline(always)]
fn on_rx<const LATE: bool>(ret: i64, args: impl FnOnce() -> Option<Args>, source: Source) -> u32 {
    let Some((ret, args, tgid, info)) = connection::<LATE>(ret, args) else {
        return 0;
    };
    // A peek leaves the bytes queued: the read that takes them is the one
    // that counts (a server telling protocols apart peeks first).
    let flags = match source {
        Source::BufFlags => args.arg3,
        Source::Msg => args.arg2,
        Source::Buf | Source::Iov => 0,
    };
    if flags & user::MSG_PEEK != 0 {
        return 0;
    }
    rx(ret, &args, tgid, info, source);
    0
}

/// `ret` bytes read on the connection `info` (`args.arg0` is its fd).
#[inline(always)]
pub fn rx(ret: u64, args: &Args, tgid: u32, info: *mut FdInfo, source: Source) {
    take_raise(tgid, info);
    // SAFETY: in-place reads and updates of the looked-up value (no map
    // write). On a served connection, a read after a write (or the first)
    // starts a request: compared with the route prefixes, it sets the
    // capture budget of its response; or it starts with HTTP/2's preface.
    let (budget, inspect, framing) = unsafe {
        let starts = (*info).last_dir != u32::from(DIR_RX) && (*info).role == ROLE_INBOUND;
        (*info).last_dir = u32::from(DIR_RX);
        let framing = (*info).framing;
        let routes = if starts {
            switch_value(SWITCH_CAPTURE_ROUTES)
        } else {
            0
        };
        let preface = starts && framing == FRAMING_NONE;
        let inspect = if routes > 0 || preface {
            Inspect {
                info,
                routes,
                preface,
            }
        } else {
            Inspect::NOTHING
        };
        ((*info).capture, inspect, framing)
    };
    let head = data_header(tgid, info, args.arg0 as u32, DIR_RX, ret);
    if framing != FRAMING_NONE {
        frames::syscall(head, source, args, ret, info, 0);
        return;
    }
    let outbound = head.flags & DATA_OUTBOUND != 0;
    if outbound
        && budget > 0
        && let Some(copied) =
            emit_pieces::<CAPTURE_CLIENT_TAIL>(head, source, args, ret, u64::from(budget))
    {
        // A reply the agent wants whole (a model call's usage comes last):
        // copied from its start, within the budget.
        // SAFETY: in-place update of the looked-up value.
        unsafe { (*info).capture = budget.saturating_sub(copied as u32) };
        return;
    }
    // A long reply to a client: its end too (where a database says it is
    // ready for the next query).
    if emit_ends::<CAPTURE_CLIENT_TAIL>(head, source, args, ret, outbound, inspect) {
        frames::start(head, source, args, ret, info, 0);
    }
}

#[inline(always)]
fn on_tx<const LATE: bool>(ret: i64, args: impl FnOnce() -> Option<Args>, source: Source) -> u32 {
    let Some((ret, args, tgid, info)) = connection::<LATE>(ret, args) else {
        return 0;
    };
    tx(ret, &args, tgid, info, source);
    0
}

/// `ret` bytes written on the connection `info` (`args.arg0` is its fd).
#[inline(always)]
pub fn tx(ret: u64, args: &Args, tgid: u32, info: *mut FdInfo, source: Source) {
    take_raise(tgid, info);
    // SAFETY: in-place reads and updates of the looked-up value.
    let (first, budget, framing, opening) = unsafe {
        let outbound = (*info).role == ROLE_OUTBOUND;
        let state = (
            (*info).last_dir != u32::from(DIR_TX) || outbound,
            (*info).capture,
            (*info).framing,
            (*info).last_dir == 0 && outbound,
        );
        (*info).last_dir = u32::from(DIR_TX);
        state
    };
    let head = data_header(tgid, info, args.arg0 as u32, DIR_TX, ret);
    if framing != FRAMING_NONE {
        frames::syscall(head, source, args, ret, info, 1);
        return;
    }
    // A response's first write gets its usual capture on top of the budget.
    let head_room = if first { CAPTURE_MAX as u64 } else { 0 };
    if budget > 0
        && let Some(copied) =
            emit_pieces::<CAPTURE_TAIL>(head, source, args, ret, u64::from(budget) + head_room)
    {
        let spent = copied.saturating_sub(head_room);
        // SAFETY: in-place update of the looked-up value.
        unsafe { (*info).capture = budget.saturating_sub(spent as u32) };
        return;
    }
    // Every write from its start, wherever a head begins (pipelined
    // responses, a 103 before the 200, a head split across writes). A
    // client's first write may be HTTP/2's preface.
    let inspect = if opening {
        Inspect {
            info,
            routes: 0,
            preface: true,
        }
    } else {
        Inspect::NOTHING
    };
    if emit_ends::<CAPTURE_TAIL>(head, source, args, ret, true, inspect) {
        frames::start(head, source, args, ret, info, 1);
    }
}

/// Copies the start of a syscall in up to `CAPTURE_PIECES` records (all
/// of it, within `budget` and its first buffer), then its last `T` bytes if
/// that did not cover it; returns the bytes copied from the start. `None`,
/// with nothing copied, for a vectored call whose first buffer is shorter:
/// it is copied like any other (its first `CAPTURE_MAX` bytes, gathered,
/// and its end).
#[inline(always)]
fn emit_pieces<const T: usize>(
    head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    budget: u64,
) -> Option<u64> {
    let mut want = min(min(ret, budget), (CAPTURE_PIECES * CAPTURE_MAX) as u64);
    let (buf, buf_len) = match iovecs(source, args) {
        None => (args.arg1, ret),
        Some((iov, count)) => match if count > 0 { read_iovec(iov) } else { None } {
            Some((_, len)) if len < want && count > 1 => return None,
            Some(first) => first,
            None => return None,
        },
    };
    want = min(want, buf_len);
    let tail = want < ret;
    // Each round's offset is a constant (the loop is unrolled): the
    // verifier then sees the same state in every round instead of one per
    // path through the previous rounds (Linux 6.1 hit its 1M-instruction
    // limit on a running offset).
    for round in 0..CAPTURE_PIECES {
        let offset = (round * CAPTURE_MAX) as u64;
        if offset >= want {
            break;
        }
        let mut piece = head;
        if round > 0 {
            piece.flags |= DATA_CONTINUED;
        }
        if offset + (CAPTURE_MAX as u64) < want || tail {
            piece.flags |= DATA_MORE;
        }
        emit_bytes::<CAPTURE_MAX>(piece, buf + offset, want - offset);
    }
    if tail {
        let mut last = head;
        last.flags |= DATA_SAME_SYSCALL;
        emit_last::<T>(last, source, args, ret);
    }
    Some(want)
}

/// The last (up to) `N` bytes of the syscall.
#[inline(always)]
fn emit_last<const N: usize>(mut head: DataHeader, source: Source, args: &Args, ret: u64) {
    head.flags |= DATA_TAIL;
    match last_bytes(source, args, ret) {
        Some((end, available)) => {
            let n = if available < N as u64 {
                available
            } else {
                N as u64
            };
            emit_bytes::<N>(head, end - n, n);
        }
        None => {
            head.flags |= DATA_NONE;
            emit_bytes::<0>(head, 0, 0);
        }
    }
}

/// `sys_exit_read`.
#[tracepoint]
pub fn loupe_rx_buf(ctx: TracePointContext) -> u32 {
    on_rx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Buf)
}

/// `sys_exit_recvfrom`.
#[tracepoint]
pub fn loupe_rx_from(ctx: TracePointContext) -> u32 {
    on_rx::<false>(field(&ctx, syscall::RET), syscall_args, Source::BufFlags)
}

/// `sys_exit_readv`.
#[tracepoint]
pub fn loupe_rx_iov(ctx: TracePointContext) -> u32 {
    on_rx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Iov)
}

/// `sys_exit_recvmsg`.
#[tracepoint]
pub fn loupe_rx_msg(ctx: TracePointContext) -> u32 {
    on_rx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Msg)
}

/// `sys_exit_write`, `sys_exit_sendto`.
#[tracepoint]
pub fn loupe_tx_buf(ctx: TracePointContext) -> u32 {
    on_tx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Buf)
}

/// `sys_exit_writev`.
#[tracepoint]
pub fn loupe_tx_iov(ctx: TracePointContext) -> u32 {
    on_tx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Iov)
}

/// `sys_exit_sendmsg`.
#[tracepoint]
pub fn loupe_tx_msg(ctx: TracePointContext) -> u32 {
    on_tx::<false>(field(&ctx, syscall::RET), syscall_args, Source::Msg)
}

/// `sys_exit_sendfile64`: the length only (the bytes come from a file). The
/// socket is the first argument.
#[tracepoint]
pub fn loupe_tx_file(ctx: TracePointContext) -> u32 {
    on_sendfile(field(&ctx, syscall::RET), syscall_args)
}

#[inline(always)]
fn on_sendfile(ret: i64, args: impl FnOnce() -> Option<Args>) -> u32 {
    let Some((ret, args, tgid, info)) = connection::<false>(ret, args) else {
        return 0;
    };
    emit_length(tgid, info, args.arg0 as u32, DIR_TX, ret);
    0
}

/// `sys_exit_splice`: the length only, like `sendfile`. Bytes go from
/// `fd_in` (first argument) to `fd_out` (third): a socket on either side
/// (Go's `io.Copy` between two connections splices, a proxy's answer).
#[tracepoint]
pub fn loupe_splice(ctx: TracePointContext) -> u32 {
    on_splice(field(&ctx, syscall::RET), syscall_args)
}

#[inline(always)]
fn on_splice(ret: i64, args: impl FnOnce() -> Option<Args>) -> u32 {
    let Some((ret, args, tgid)) = tracked_call(ret, args) else {
        return 0;
    };
    let (out, into) = (args.arg2 as u32, args.arg0 as u32);
    if let Some(info) = captured_fd(tgid, out) {
        emit_length(tgid, info, out, DIR_TX, ret);
    } else if let Some(info) = captured_fd(tgid, into) {
        emit_length(tgid, info, into, DIR_RX, ret);
    }
    0
}

/// A record of `len` bytes moved on `fd` in direction `dir` without
/// passing through the process's memory (nothing to copy).
#[inline(always)]
fn emit_length(tgid: u32, info: *mut FdInfo, fd: u32, dir: u16, len: u64) {
    // SAFETY: in-place update of the looked-up value.
    unsafe { (*info).last_dir = u32::from(dir) };
    let mut head = data_header(tgid, info, fd, dir, len);
    head.flags |= DATA_NONE;
    emit_bytes::<0>(head, 0, 0);
}

/// The data syscalls' numbers on [`ARCH`].
const NR: loupe_common::arch::Numbers = ARCH.numbers;
const READ: u64 = NR.read;
const RECVFROM: u64 = NR.recvfrom;
const READV: u64 = NR.readv;
const RECVMSG: u64 = NR.recvmsg;
const WRITE: u64 = NR.write;
const SENDTO: u64 = NR.sendto;
const WRITEV: u64 = NR.writev;
const SENDMSG: u64 = NR.sendmsg;
const SENDFILE: u64 = NR.sendfile;
const SPLICE: u64 = NR.splice;

/// `tp_btf/sys_exit` (all syscalls, where BTF tracepoints are allowed), the
/// reads: one program instead of four syscall tracepoints. The arguments
/// are loads from the BTF-typed `pt_regs` (no helper calls); other
/// syscalls return after a comparison.
#[btf_tracepoint(function = "sys_exit")]
pub fn loupe_sys_exit_rx(ctx: BtfTracePointContext) -> i32 {
    let (regs, ret, nr) = sys_exit_args(&ctx);
    // One copy of the read path, its source a value: four inlined copies
    // (each with the HTTP/2 walk's loop) were more than the verifier of
    // Linux 6.1 could check in time.
    let source = match nr {
        READ => Source::Buf,
        RECVFROM => Source::BufFlags,
        READV => Source::Iov,
        RECVMSG => Source::Msg,
        _ => return 0,
    };
    on_rx::<false>(ret, regs_args(regs), source) as i32
}

/// `tp_btf/sys_exit`, the writes (and `sendfile`, `splice`): a program of
/// their own, as the verifier of older kernels refuses one for all.
#[btf_tracepoint(function = "sys_exit")]
pub fn loupe_sys_exit_tx(ctx: BtfTracePointContext) -> i32 {
    let (regs, ret, nr) = sys_exit_args(&ctx);
    let source = match nr {
        WRITE | SENDTO => Source::Buf,
        WRITEV => Source::Iov,
        SENDMSG => Source::Msg,
        SENDFILE => return on_sendfile(ret, regs_args(regs)) as i32,
        SPLICE => return on_splice(ret, regs_args(regs)) as i32,
        _ => return 0,
    };
    on_tx::<false>(ret, regs_args(regs), source) as i32
}

/// The syscall frame, return value and number of a `sys_exit` record.
#[inline(always)]
fn sys_exit_args(ctx: &BtfTracePointContext) -> (*const Frame, i64, u64) {
    let regs: *const Frame = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    (regs, ret, frame_value(regs, ARCH.nr))
}

/// The syscall's arguments from its BTF-typed frame, when needed.
#[inline(always)]
fn regs_args(regs: *const Frame) -> impl FnOnce() -> Option<Args> {
    move || Some(frame_args(regs))
}

/// `fexit` on a data syscall's function (kernels that allow fentry/fexit;
/// the agent names the function at load time): runs for that syscall
/// only, without a trace record, and leaves untracked processes a
/// trampoline call instead of the tracepoint path. The function's one
/// argument is the syscall's `pt_regs`; the return value follows it.
macro_rules! data_fexit {
    ($program:ident, $on:expr $(, $source:expr)?) => {
        #[fexit]
        pub fn $program(ctx: FExitContext) -> i32 {
            let regs: *const Frame = ctx.arg(0);
            let ret: i64 = ctx.arg(1);
            $on(ret, regs_args(regs) $(, $source)?) as i32
        }
    };
}

data_fexit!(loupe_fx_read, on_rx::<true>, Source::Buf);
data_fexit!(loupe_fx_recvfrom, on_rx::<true>, Source::BufFlags);
data_fexit!(loupe_fx_readv, on_rx::<true>, Source::Iov);
data_fexit!(loupe_fx_recvmsg, on_rx::<true>, Source::Msg);
data_fexit!(loupe_fx_write, on_tx::<true>, Source::Buf);
data_fexit!(loupe_fx_sendto, on_tx::<true>, Source::Buf);
data_fexit!(loupe_fx_writev, on_tx::<true>, Source::Iov);
data_fexit!(loupe_fx_sendmsg, on_tx::<true>, Source::Msg);
data_fexit!(loupe_fx_sendfile, on_sendfile);
data_fexit!(loupe_fx_splice, on_splice);

/// Tells the agent that a captured connection's fd was closed (called by
/// the `close` probe before it forgets the fd).
#[inline(always)]
pub fn report_close(tgid: u32, fd: u32, info: &FdInfo) {
    if info.last_dir == 0 && info.conn & CONN_SEEDED == 0 {
        // No data seen: nothing to finish (a connection from before loupe
        // may be counted in a pool gauge all the same).
        return;
    }
    let mut head = data_header(tgid, info, fd, 0, 0);
    head.header.kind = KIND_CLOSE;
    head.flags = DATA_NONE;
    emit_bytes::<0>(head, 0, 0);
}
