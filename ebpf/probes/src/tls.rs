//! OpenSSL's plaintext, for services that terminate TLS themselves and for
//! their HTTPS clients: uprobes on `SSL_read`, `SSL_write` (and their `_ex`
//! forms) and `SSL_free` in the library (or binary) a tracked process maps.
//!
//! A connection is keyed by `(process, SSL*)`, never by fd: uvicorn's
//! asyncio TLS and Node.js use memory BIOs, so these calls do not touch the
//! socket. Its state is the same [`FdInfo`] the syscall probes keep, and
//! its bytes go through the same capture logic (`data::rx`, `data::tx`),
//! so the agent's parsers cannot tell the paths apart. The role is taken
//! from the first transfer: a connection that starts by reading serves,
//! one that starts by writing is a client's (HTTP, PostgreSQL, MySQL and
//! Redis clients all speak first once the handshake is done).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use loupe_common::{
    event::{DIR_RX, DIR_TX, TLS_FD},
    maps::{
        CONN_TLS, FRAMING_HTTP2, FdInfo, FrameWalk, ROLE_INBOUND, ROLE_OUTBOUND, TlsCall, TlsKey,
    },
};

use crate::{
    args::{Args, Source},
    data::{self, captured_role, report_close},
    maps::{TLS_CALLS, TLS_CONNS, maybe_tracked, tracked},
};

/// Entry of `SSL_read`/`SSL_write(ssl, buf, num)`.
#[uprobe]
pub fn loupe_ssl_call(ctx: ProbeContext) -> u32 {
    remember_call(&ctx, false);
    0
}

/// Entry of `SSL_read_ex`/`SSL_write_ex(ssl, buf, num, size_t *count)`.
#[uprobe]
pub fn loupe_ssl_call_ex(ctx: ProbeContext) -> u32 {
    remember_call(&ctx, true);
    0
}

#[inline(always)]
fn remember_call(ctx: &ProbeContext, ex: bool) {
    let id = bpf_get_current_pid_tgid();
    if !maybe_tracked((id >> 32) as u32) {
        return;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let len_ptr = if ex {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    // An LRU map: a full one drops its oldest call instead of refusing.
    let _ = TLS_CALLS.insert(id, TlsCall { ssl, buf, len_ptr }, 0);
}

/// Return of `SSL_read`/`SSL_read_ex`: plaintext received.
#[uretprobe]
pub fn loupe_ssl_rx(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, DIR_RX);
    0
}

/// Return of `SSL_write`/`SSL_write_ex`: plaintext sent.
#[uretprobe]
pub fn loupe_ssl_tx(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, DIR_TX);
    0
}

#[inline(always)]
fn on_return(ctx: &RetProbeContext, dir: u16) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    if !maybe_tracked(tgid) {
        return;
    }
    let Some(call) = TLS_CALLS.get_ptr(id).map(|call| {
        // SAFETY: pointer from a successful lookup of plain data.
        unsafe { *call }
    }) else {
        return;
    };
    let _ = TLS_CALLS.remove(id);
    // Both forms return an `int`.
    let ret = i64::from(ctx.ret::<i32>());
    let len = if call.len_ptr == 0 {
        if ret <= 0 {
            return;
        }
        ret as u64
    } else {
        if ret != 1 {
            return;
        }
        // SAFETY: a checked user-memory read.
        match unsafe { bpf_probe_read_user(call.len_ptr as *const u64) } {
            Ok(len) if len > 0 => len,
            _ => return,
        }
    };
    let Some(info) = connection(tgid, call.ssl, dir, call.buf, len) else {
        return;
    };
    let args = Args {
        arg0: u64::from(TLS_FD),
        arg1: call.buf,
        arg2: len,
        arg3: 0,
    };
    if dir == DIR_RX {
        data::rx(len, &args, tgid, info, Source::Buf);
    } else {
        data::tx(len, &args, tgid, info, Source::Buf);
    }
}

/// The connection's state, created on its first transfer (`len` bytes at
/// `buf`): a connection whose first plaintext is read was accepted, one
/// whose first is written was opened, unless what is written is an HTTP/2
/// server's first SETTINGS (it may write them before it reads the client's
/// preface): then it was accepted, and its frames are followed from here.
#[inline(always)]
fn connection(tgid: u32, ssl: u64, dir: u16, buf: u64, len: u64) -> Option<*mut FdInfo> {
    let key = TlsKey { tgid, _pad: 0, ssl };
    if let Some(info) = TLS_CONNS.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup of plain data.
        return captured_role(unsafe { (*info).role }).then_some(info);
    }
    let service = tracked(tgid)?.service;
    let h2_server = dir == DIR_TX && server_settings(buf, len);
    let role = if dir == DIR_RX || h2_server {
        ROLE_INBOUND
    } else {
        ROLE_OUTBOUND
    };
    if !captured_role(role) {
        return None;
    }
    let mut info = FdInfo::new(service, role, CONN_TLS | ssl);
    if h2_server {
        info.framing = FRAMING_HTTP2;
        info.walks = [FrameWalk::PREFACE, FrameWalk::START];
    }
    let _ = TLS_CONNS.insert(key, info, 0);
    TLS_CONNS.get_ptr_mut(key)
}

/// Whether the `len` bytes at `buf` start with a SETTINGS frame of the
/// connection (stream 0, not an acknowledgement, a whole number of
/// settings): what an HTTP/2 server writes first. A client writes an
/// HTTP/1 request or the preface (`PRI * ...`) first.
#[inline(always)]
fn server_settings(buf: u64, len: u64) -> bool {
    if len < 9 {
        return false;
    }
    // SAFETY: a checked user-memory read.
    let Ok(head) = (unsafe { bpf_probe_read_user(buf as *const [u8; 9]) }) else {
        return false;
    };
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    head[3] == 0x4 && head[4] & 0x1 == 0 && head[5..] == [0; 4] && length.is_multiple_of(6)
}

/// Entry of `SSL_free(ssl)`: the connection ends.
#[uprobe]
pub fn loupe_ssl_free(ctx: ProbeContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !maybe_tracked(tgid) {
        return 0;
    }
    let Some(ssl) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let key = TlsKey { tgid, _pad: 0, ssl };
    if let Some(info) = TLS_CONNS.get_ptr(key) {
        // SAFETY: pointer from a successful lookup of plain data.
        report_close(tgid, TLS_FD, unsafe { &*info });
        let _ = TLS_CONNS.remove(key);
    }
    0
}
