//! The PostgreSQL and MySQL targets' shared body: arbitrary client and
//! server bytes on one connection, cut anywhere, partly uncaptured, with
//! tails: no panic, bounded state, statements end after they start.
use crate::protocols::testing::{Collect, with_context};
use crate::protocols::{Direction, Observation, Protocol, Transfer};

/// The first byte picks a fresh or a mid-stream connection; then each
/// control byte gives a chunk's length (bits 3..), direction and tail (bits
/// 0 and 2) and whether bytes went uncaptured (bit 1).
pub fn run(data: &[u8], open: fn(bool) -> Box<dyn Protocol>) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = open(mode & 1 != 0);
    let mut sink = Collect(|found| {
        if let Observation::Statement { statement, .. } = found {
            assert!(statement.start_ns <= statement.end_ns);
        }
    });
    let mut input = rest;
    let mut ts = 0;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1;
        let len = bytes.len() as u64 + u64::from(control & 2) * 100;
        let (dir, transfer) = match control & 5 {
            0 | 4 => (Direction::Sent, Transfer::new(ts, len, bytes)),
            1 => (Direction::Received, Transfer::new(ts, len, bytes)),
            // The syscall's last bytes only.
            _ => (Direction::Received, Transfer::ends(ts, len, &[], bytes)),
        };
        with_context(|context| conn.on_bytes(dir, &transfer, context, &mut sink));
        assert!(conn.buffered() < 1 << 20);
    }
}
