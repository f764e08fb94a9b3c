//! Arbitrary reads, writes and closes on one HTTP connection: no panic,
//! bounded buffers. The first bytes of the input choose how it is split.
use crate::http::{
    auth::AuthConfig,
    exchange::{BodyWants, HttpConn, MAX_HEAD, ParseConfig, Transfer},
    head::Method,
};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = HttpConn::new(mode & 1 == 1);
    let auth = AuthConfig::default();
    // Bodies kept too, when the mode says so (route rules).
    let keep = usize::from(mode >> 1) * 16;
    let bodies = |_: &Method, _: &str| BodyWants {
        request: keep,
        response: keep,
    };
    let config = ParseConfig {
        auth: &auth,
        bodies: &bodies,
    };
    let mut outcomes = 0usize;
    let mut ts = 0;
    let mut input = rest;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1_000;
        // Bit 2: a gap of 1200 bytes after the captured ones; bit 1: the
        // bytes are split into the syscall's first and last ones, around it.
        let gap = u64::from(control & 0x04) * 300;
        let (first, last) = if control & 0x02 != 0 {
            bytes.split_at(bytes.len() / 2)
        } else {
            (bytes, &[][..])
        };
        let transfer = Transfer {
            ts,
            len: bytes.len() as u64 + gap,
            head: first,
            tail: last,
        };
        let mut out = |_| outcomes += 1;
        match control & 0x01 {
            0 => conn.on_rx(&transfer, &config, &mut out),
            _ => conn.on_tx(&transfer, &mut out),
        }
        assert!(conn.buffered() <= 2 * MAX_HEAD + 64 + 2 * keep.next_power_of_two().max(8) * 2);
    }
    conn.on_close(&mut |_| outcomes += 1);
}
