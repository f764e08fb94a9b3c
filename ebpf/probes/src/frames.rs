//! HTTP/2 connections: each syscall's bytes are copied by following its
//! frames, so that every frame header and every header block reaches the
//! agent (its header tables depend on all of them) however the runtime
//! cut the frames into syscalls, and a large DATA payload costs one
//! header read, not a copy.
//!
//! A connection turns to this mode when a read it accepted, or the first
//! write of one it opened, starts with the client's preface
//! (`data::Inspect`). From then on each direction keeps where it stands in
//! its frames (`FdInfo::walks`) between syscalls, and each syscall is
//! walked in steps (a callback the kernel calls once per element of
//! `FRAMES_STEPS_MAP`, so that the verifier checks one step, not every
//! path through thousands; `bpf_for_each_map_elem` is in Linux 5.13,
//! `bpf_loop` only from 5.17): a frame header (all 9 octets, or what this
//! syscall holds of them), then its payload, copied for the frame types
//! the connection's state needs and for DATA within the capture budget
//! (a model call's answer), skipped otherwise. The copies are gathered as
//! pieces (`event::Piece`) in a per-CPU scratch record and handed over in
//! records of at most `FRAMES_ROOM` bytes.
use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_for_each_map_elem, bpf_probe_read_user as read_user_raw},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use loupe_common::{
    event::{
        CAPTURE_MAX, DATA_CONTINUED, DATA_FRAMES, DATA_MORE, DATA_NONE, Data, DataHeader,
        FRAMES_COPY, FRAMES_ROOM, FRAMES_STEPS, Piece,
    },
    layout::user,
    maps::{
        BODIES_REQUESTS, BODIES_RESPONSES, COUNTER_EVENTS_LOST, FRAME_PREFACE, FRAMING_HTTP2,
        FRAMING_LOST, FdInfo, FrameWalk, Messages, ROLE_INBOUND, STREAM_MESSAGES_CAPACITY,
        SWITCH_HTTP2_BODIES, StreamKey,
    },
};

use crate::{
    args::{Args, Source, iovecs, min, read_iovec},
    emit::{emit, wake_flags},
    maps::{EVENTS, bump, switch_value},
};

/// A walk's state and the record its pieces are gathered in: a data
/// header and room for `FRAMES_ROOM` bytes, doubled so that the verifier
/// can bound a copy of up to `FRAMES_ROOM` bytes at an offset below
/// `FRAMES_ROOM`. In a map, not on the stack: the verifier then knows
/// nothing of the walk's offsets from one step to the next, and checks a
/// step once instead of once per offset it could reach.
#[repr(C)]
struct Scratch {
    walker: Walker,
    head: DataHeader,
    bytes: [u8; 2 * FRAMES_ROOM],
}

#[map]
static STREAM_MESSAGES: LruHashMap<StreamKey, Messages> =
    LruHashMap::with_max_entries(STREAM_MESSAGES_CAPACITY, 0);

#[map]
static FRAMES_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The walk's loop: `bpf_for_each_map_elem` calls [`each_step`] once per
/// element, in order, until it returns 1. The values are not used.
#[map]
static FRAMES_STEPS_MAP: Array<u8> = Array::with_max_entries(FRAMES_STEPS, 0);

const HEADER: u32 = 9;
/// A message prefix: a flag octet and a 4-octet length.
const PREFIX: u32 = 5;
const DATA: u32 = 0x0;
const END_STREAM: u32 = 0x1;
const PADDED: u32 = 0x8;
/// Bits of `FrameWalk::flags` above the frame's own: a padded DATA
/// frame's next octet is its pad length, which then sits in bits 16-23.
const PAD_NEXT: u32 = 0x100;
const PAD_SHIFT: u32 = 16;
const NO_PIECE: u64 = u64::MAX;

/// Frame types whose payloads are copied whole: HEADERS, RST_STREAM,
/// SETTINGS, PUSH_PROMISE, GOAWAY, CONTINUATION, and the preface.
#[inline(always)]
fn kept(kind: u32) -> bool {
    matches!(kind, 0x1 | 0x3 | 0x4 | 0x5 | 0x7 | 0x9 | FRAME_PREFACE)
}

/// A walk through one syscall.
#[repr(C)]
struct Walker {
    /// The syscall's bytes: `iovec` array (0 for a plain buffer), its
    /// length, the next `iovec` to walk, and the bytes transferred.
    iov: u64,
    count: u64,
    index: u64,
    ret: u64,
    /// The buffer being walked: its user address and length, the offset
    /// reached in it, and its offset in the syscall.
    src: u64,
    seg: u64,
    pos: u64,
    at: u64,
    /// Bytes used in the record.
    out: u64,
    /// Where the last piece's descriptor is in the record, and the
    /// syscall offset its bytes end at (`NO_PIECE`: none in this record).
    piece: u64,
    piece_end: u64,
    /// DATA payload bytes that may still be copied.
    budget: u64,
    /// The connection and the direction (`STREAM_MESSAGES` keys).
    conn: u64,
    side: u32,
    _pad: u32,
    walk: FrameWalk,
    /// Records handed over so far.
    records: u32,
    failed: u32,
}

/// A syscall on a connection whose frames the probes follow
/// (`FdInfo::framing` set): walked, or its length alone once the frames
/// were lost. `side`: 0 for a read, 1 for a write.
#[inline(always)]
pub fn syscall(
    mut head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    info: *mut FdInfo,
    side: usize,
) {
    // SAFETY: a read of the looked-up value.
    if unsafe { (*info).framing } == FRAMING_HTTP2 {
        walk(head, source, args, ret, info, side);
    } else {
        head.flags |= DATA_FRAMES | DATA_NONE;
        emit(Data::<0> { head, bytes: [] });
    }
}

/// The syscall in `head` started with the client's HTTP/2 preface, on the
/// side `preface` (0: read, 1: written): the connection's frames are
/// followed from it on, this syscall's first.
#[inline(always)]
pub fn start(
    head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    info: *mut FdInfo,
    preface: usize,
) {
    let mut walks = [FrameWalk::START; 2];
    walks[preface & 1] = FrameWalk::PREFACE;
    // SAFETY: in-place updates of the looked-up value.
    unsafe {
        (*info).framing = FRAMING_HTTP2;
        (*info).walks = walks;
    }
    walk(head, source, args, ret, info, preface);
}

/// The syscall's `ret` bytes on a connection under `FRAMING_HTTP2`, in
/// direction `side` (0: received, 1: sent); `head` is its data header.
#[inline(always)]
fn walk(
    mut head: DataHeader,
    source: Source,
    args: &Args,
    ret: u64,
    info: *mut FdInfo,
    side: usize,
) {
    let Some(scratch) = FRAMES_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    head.flags |= DATA_FRAMES;
    let (iov, count) = iovecs(source, args).unwrap_or((0, 0));
    // SAFETY: the per-CPU scratch (only this CPU uses it while the program
    // runs) and the looked-up connection.
    let w = unsafe {
        (*scratch).head = head;
        let w = &mut (*scratch).walker;
        *w = Walker {
            iov,
            count,
            index: 0,
            ret,
            // A plain buffer is the one to walk; `iovec`s are read in turn.
            src: args.arg1,
            seg: if iov == 0 { ret } else { 0 },
            pos: 0,
            at: 0,
            out: 0,
            piece: NO_PIECE,
            piece_end: NO_PIECE,
            budget: own_budget(info, side) + allowance(info, side),
            conn: (*info).conn,
            side: (side & 1) as u32,
            _pad: 0,
            walk: (*info).walks[side & 1],
            records: 0,
            failed: 0,
        };
        w
    };
    // SAFETY: `each_step` has the callback's signature; it finds the walk
    // in the scratch map. The map pointer is the map's definition, which
    // the loader turns into the map.
    unsafe {
        bpf_for_each_map_elem(
            core::ptr::addr_of!(FRAMES_STEPS_MAP)
                .cast_mut()
                .cast::<c_void>(),
            each_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    if w.at + w.pos < ret {
        w.failed = 1;
    }
    if w.failed != 0 {
        // SAFETY: in-place update of the looked-up value.
        unsafe { (*info).framing = FRAMING_LOST };
        w.out = 0;
        // SAFETY: the scratch record.
        unsafe { (*scratch).head.flags |= DATA_NONE };
    } else {
        // SAFETY: in-place updates of the looked-up value.
        unsafe {
            (*info).walks[side & 1] = w.walk;
            // The allowance is spent first.
            if own_budget(info, side) > 0 {
                (*info).capture = min(u64::from((*info).capture), w.budget) as u32;
            }
        }
    }
    flush(scratch, false);
}

/// The connection's capture budget, for DATA in the direction of its
/// answers (written on a served connection, read on one the service
/// opened): a request body written after the agent raised it does not
/// spend what the answer needs.
#[inline(always)]
fn own_budget(info: *const FdInfo, side: usize) -> u64 {
    // SAFETY: reads of the looked-up value.
    let (role, capture) = unsafe { ((*info).role, (*info).capture) };
    let answers = if role == ROLE_INBOUND { 1 } else { 0 };
    if side & 1 == answers {
        u64::from(capture)
    } else {
        0
    }
}

/// DATA bytes of one syscall copied whatever the connection's budget, as
/// much as HTTP/1's first bytes of a syscall: on a served connection, in
/// the directions whose bodies route rules read (`SWITCH_HTTP2_BODIES`);
/// on one the service opened, its requests (written: side 1), as HTTP/1
/// copies a call's writes (the model a model call asks for).
#[inline(always)]
fn allowance(info: *const FdInfo, side: usize) -> u64 {
    // SAFETY: a read of the looked-up value.
    if unsafe { (*info).role } != ROLE_INBOUND {
        return if side & 1 == 1 { CAPTURE_MAX as u64 } else { 0 };
    }
    let read = if side & 1 == 0 {
        BODIES_REQUESTS
    } else {
        BODIES_RESPONSES
    };
    if switch_value(SWITCH_HTTP2_BODIES) & read != 0 {
        CAPTURE_MAX as u64
    } else {
        0
    }
}

/// The callback of the walk's loop: one [`step`] per element of
/// `FRAMES_STEPS_MAP`.
#[inline(never)]
extern "C" fn each_step(
    _map: *mut c_void,
    _key: *mut c_void,
    _value: *mut c_void,
    _ctx: *mut c_void,
) -> i64 {
    step()
}

/// One step: the next buffer of a vectored syscall, the rest of a frame
/// header, or a run of payload. Returns 1 to stop (the syscall is walked,
/// or a copy failed).
#[inline(always)]
fn step() -> i64 {
    let Some(scratch) = FRAMES_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    if w.failed != 0 {
        return 1;
    }
    if w.pos >= w.seg {
        w.at += w.seg;
        w.pos = 0;
        w.seg = 0;
        if w.at >= w.ret || w.iov == 0 || w.index >= w.count {
            return 1;
        }
        let Some((base, len)) = read_iovec(w.iov + w.index * user::IOVEC_SIZE as u64) else {
            w.failed = 1;
            return 1;
        };
        w.index += 1;
        w.src = base;
        w.seg = min(len, w.ret - w.at);
        return 0;
    }
    let rest = w.seg - w.pos;
    if w.walk.have < HEADER {
        header_step(scratch, rest)
    } else if w.walk.head & 0xff == DATA {
        data_step(scratch, rest)
    } else {
        payload_step(scratch, rest)
    }
}

/// The octet at `at` in the scratch record (below `FRAMES_ROOM + 16`).
#[inline(always)]
fn octet(scratch: *mut Scratch, at: u64) -> u32 {
    // SAFETY: within the scratch record's `2 * FRAMES_ROOM` bytes.
    u32::from(unsafe {
        *(*scratch)
            .bytes
            .as_ptr()
            .add(min(at, FRAMES_ROOM as u64 + 16) as usize)
    })
}

/// The next octets of a frame header (`rest` left in the buffer).
#[inline(always)]
fn header_step(scratch: *mut Scratch, rest: u64) -> i64 {
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    if w.walk.have == 0 {
        w.walk.head = 0;
        w.walk.flags = 0;
        w.walk.stream = 0;
    }
    let n = min(u64::from(HEADER - w.walk.have), rest);
    let Some(start) = copy(scratch, n) else {
        return 1;
    };
    // SAFETY: as above.
    let w = unsafe { &mut (*scratch).walker };
    let walk = &mut w.walk;
    for k in 0..u64::from(HEADER) {
        if k >= n {
            break;
        }
        let octet = octet(scratch, start + k);
        match u64::from(walk.have) + k {
            0..4 => walk.head = (walk.head << 8) | octet,
            4 => walk.flags = octet,
            _ => walk.stream = (walk.stream << 8) | octet,
        }
    }
    walk.have += n as u32;
    w.pos += n;
    if walk.have == HEADER {
        walk.left = walk.head >> 8;
        if walk.head & 0xff == DATA {
            if walk.flags & PADDED != 0 {
                walk.flags |= PAD_NEXT;
            }
            data_starts(w);
        }
        frame_ends_if_done(w);
    }
    0
}

/// A run of a payload other than DATA's: copied for the kept types,
/// skipped otherwise.
#[inline(always)]
fn payload_step(scratch: *mut Scratch, rest: u64) -> i64 {
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    let mut take = min(u64::from(w.walk.left), rest);
    if kept(w.walk.head & 0xff) {
        take = min(take, FRAMES_COPY as u64);
        if copy(scratch, take).is_none() {
            return 1;
        }
    }
    // SAFETY: as above.
    let w = unsafe { &mut (*scratch).walker };
    w.walk.left -= take as u32;
    w.pos += take;
    frame_ends_if_done(w);
    0
}

/// A run of a DATA payload: a padded frame's pad length (copied), the
/// octets of a message prefix (copied), of a message (skipped, or copied
/// within the capture budget), or padding (skipped).
#[inline(always)]
fn data_step(scratch: *mut Scratch, rest: u64) -> i64 {
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    if w.walk.flags & PAD_NEXT != 0 {
        let Some(start) = copy(scratch, 1) else {
            return 1;
        };
        // SAFETY: as above.
        let w = unsafe { &mut (*scratch).walker };
        w.walk.flags = (w.walk.flags & !PAD_NEXT) | (octet(scratch, start) << PAD_SHIFT);
        w.walk.left -= 1;
        w.pos += 1;
        frame_ends_if_done(w);
        return 0;
    }
    let pad = w.walk.flags >> PAD_SHIFT;
    if w.walk.left <= pad {
        let take = min(u64::from(w.walk.left), rest);
        w.walk.left -= take as u32;
        w.pos += take;
        frame_ends_if_done(w);
        return 0;
    }
    let n = min(u64::from(w.walk.left - pad), rest);
    let messages = w.walk.messages;
    let take = if messages.left == 0 {
        let take = min(u64::from(PREFIX - messages.have), n);
        let Some(start) = copy(scratch, take) else {
            return 1;
        };
        // SAFETY: as above.
        let w = unsafe { &mut (*scratch).walker };
        let m = &mut w.walk.messages;
        for k in 0..u64::from(PREFIX) {
            if k >= take {
                break;
            }
            // The flag octet, then the length's four.
            if u64::from(m.have) + k > 0 {
                m.len = (m.len << 8) | octet(scratch, start + k);
            }
        }
        m.have += take as u32;
        if m.have == PREFIX {
            m.left = m.len;
            m.have = 0;
            m.len = 0;
        }
        take
    } else {
        let mut take = min(n, u64::from(messages.left));
        if w.budget > 0 {
            take = min(min(take, w.budget), FRAMES_COPY as u64);
            if copy(scratch, take).is_none() {
                return 1;
            }
        }
        // SAFETY: as above.
        let w = unsafe { &mut (*scratch).walker };
        w.budget = w.budget.saturating_sub(take);
        w.walk.messages.left -= take as u32;
        take
    };
    // SAFETY: as above.
    let w = unsafe { &mut (*scratch).walker };
    w.walk.left -= take as u32;
    w.pos += take;
    frame_ends_if_done(w);
    0
}

/// The key of the stream of the DATA frame being walked.
#[inline(always)]
fn stream_key(w: &Walker) -> StreamKey {
    StreamKey {
        conn: w.conn,
        stream: w.walk.stream & 0x7fff_ffff,
        side: w.side,
    }
}

/// A DATA frame starts: where its stream stands in its messages.
#[inline(always)]
fn data_starts(w: &mut Walker) {
    match STREAM_MESSAGES.get_ptr(stream_key(w)) {
        Some(found) => {
            // SAFETY: a pointer from a successful lookup of plain data.
            w.walk.messages = unsafe { *found };
            w.walk.stored = 1;
        }
        None => {
            w.walk.messages = Messages::default();
            w.walk.stored = 0;
        }
    }
}

/// If the frame's payload is all walked: the next octet is a header, and
/// a DATA frame's stream keeps where it stands for its next one (or
/// forgets it, at a message boundary or the stream's end).
#[inline(always)]
fn frame_ends_if_done(w: &mut Walker) {
    if w.walk.left != 0 {
        return;
    }
    w.walk.have = 0;
    if w.walk.head & 0xff != DATA {
        return;
    }
    let messages = w.walk.messages;
    let idle = messages.left == 0 && messages.have == 0;
    let key = stream_key(w);
    if w.walk.flags & END_STREAM != 0 || idle {
        if w.walk.stored != 0 {
            let _ = STREAM_MESSAGES.remove(key);
        }
    } else {
        let _ = STREAM_MESSAGES.insert(key, messages, 0);
    }
    w.walk.stored = 0;
}

/// Copies the next `n` (at most `FRAMES_COPY`) bytes of the buffer into
/// the record, as a new piece or the end of the last one; returns where in
/// the record they are.
#[inline(always)]
fn copy(scratch: *mut Scratch, n: u64) -> Option<u64> {
    let n = min(n, FRAMES_COPY as u64);
    let piece_size = size_of::<Piece>() as u64;
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    if w.out + piece_size + n > FRAMES_ROOM as u64 {
        flush(scratch, true);
    }
    // SAFETY: as above.
    let w = unsafe { &mut (*scratch).walker };
    let at = w.at + w.pos;
    // SAFETY: the scratch record's bytes; every offset is clamped below
    // `FRAMES_ROOM` and every length to at most `FRAMES_ROOM`, inside the
    // `2 * FRAMES_ROOM` bytes.
    unsafe {
        let bytes = (*scratch).bytes.as_mut_ptr();
        if w.piece_end == at {
            let len = bytes
                .add(min(w.piece, FRAMES_ROOM as u64) as usize + 4)
                .cast::<u32>();
            len.write_unaligned(len.read_unaligned() + n as u32);
        } else {
            let out = min(w.out, FRAMES_ROOM as u64);
            bytes
                .add(out as usize)
                .cast::<Piece>()
                .write_unaligned(Piece {
                    at: at as u32,
                    len: n as u32,
                });
            w.piece = out;
            w.out = out + piece_size;
        }
        let out = min(w.out, FRAMES_ROOM as u64);
        let rc = read_user_raw(
            bytes.add(out as usize).cast::<c_void>(),
            n as u32,
            (w.src + w.pos) as *const c_void,
        );
        if rc != 0 {
            w.failed = 1;
            return None;
        }
        w.out = out + n;
        w.piece_end = at + n;
        Some(out)
    }
}

/// Hands the record over; `more`: another record of the syscall follows.
#[inline(always)]
fn flush(scratch: *mut Scratch, more: bool) {
    // SAFETY: the per-CPU scratch.
    let w = unsafe { &mut (*scratch).walker };
    let out = min(w.out, FRAMES_ROOM as u64);
    // SAFETY: the scratch record, `out` bytes of it filled.
    unsafe {
        let head = &mut (*scratch).head;
        head.captured = out as u32;
        if w.records > 0 {
            head.flags |= DATA_CONTINUED;
        }
        if more {
            head.flags |= DATA_MORE;
        } else {
            head.flags &= !DATA_MORE;
        }
        let size = size_of::<DataHeader>() + out as usize;
        let record =
            core::slice::from_raw_parts(core::ptr::addr_of!((*scratch).head).cast::<u8>(), size);
        if EVENTS.output::<[u8]>(record, wake_flags()).is_err() {
            bump(COUNTER_EVENTS_LOST);
        }
    }
    w.records += 1;
    w.out = 0;
    w.piece = NO_PIECE;
    w.piece_end = NO_PIECE;
}
