//! Arbitrary client and server bytes on one MySQL connection, cut anywhere,
//! partly uncaptured, with tails: no panic, bounded state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loupe::mysql::MysqlConn;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = if mode & 1 == 0 {
        MysqlConn::new()
    } else {
        MysqlConn::mid_stream()
    };
    let mut input = rest;
    let mut ts = 0;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1;
        let len = bytes.len() as u64 + u64::from(control & 2) * 100;
        match control & 5 {
            0 | 4 => conn.on_tx(ts, bytes, len),
            1 => conn.on_rx(ts, bytes, len, false, &mut |st| {
                assert!(st.start_ns <= st.end_ns);
            }),
            _ => conn.on_rx(ts, bytes, len, true, &mut |_| {}),
        }
        assert!(conn.buffered() < 1 << 20);
    }
});
