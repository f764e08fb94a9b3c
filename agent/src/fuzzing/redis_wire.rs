//! Arbitrary commands and replies on one Redis connection, cut anywhere and
//! partly uncaptured: no panic, bounded state, no reply without a command.
use crate::protocols::redis::RedisConn;

pub fn run(data: &[u8]) {
    let mut conn = RedisConn::new();
    let mut input = data;
    let (mut sent, mut answered) = (0usize, 0usize);
    let mut ts = 0;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 2).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1;
        // Bit 1: some bytes of the syscall were not captured.
        let len = bytes.len() as u64 + u64::from(control & 2) * 50;
        if control & 1 == 0 {
            sent += bytes.len();
            conn.on_tx(ts, bytes, len);
        } else {
            conn.on_rx(ts, bytes, len, &mut |op| {
                assert!(op.start_ns <= op.end_ns);
                answered += 1;
            });
        }
        assert!(conn.buffered() < 64 * 1024);
    }
    assert!(answered <= sent);
}
