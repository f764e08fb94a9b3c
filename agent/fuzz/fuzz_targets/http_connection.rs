//! Arbitrary reads, writes and closes on one HTTP connection: no panic,
//! bounded buffers. The first bytes of the input choose how it is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loupe::http::{
    auth::AuthConfig,
    exchange::{HttpConn, MAX_HEAD, Transfer},
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = HttpConn::new(mode & 1 == 1);
    let auth = AuthConfig::default();
    let mut outcomes = 0usize;
    let mut ts = 0;
    let mut input = rest;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1_000;
        let extra = u64::from(control & 0x04) * 300;
        let transfer = Transfer {
            ts,
            len: bytes.len() as u64 + extra,
            bytes,
            tail: control & 0x02 != 0,
            continues: false,
        };
        let mut out = |_| outcomes += 1;
        match control & 0x01 {
            0 => conn.on_rx(&transfer, &auth, &mut out),
            _ => conn.on_tx(&transfer, &mut out),
        }
        assert!(conn.buffered() <= 2 * MAX_HEAD + 64);
    }
    conn.on_close(&mut |_| outcomes += 1);
});
