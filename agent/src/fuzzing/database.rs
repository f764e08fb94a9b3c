//! The PostgreSQL and MySQL targets' shared body: arbitrary client and
//! server bytes on one connection, cut anywhere, partly uncaptured, with
//! tails: no panic, bounded state, statements end after they start.
use crate::{protocols::mysql::MysqlConn, protocols::postgres::PgConn, protocols::sql::Statement};

/// A database connection parser, as both protocols' parsers are driven.
pub trait Wire {
    fn open(mid_stream: bool) -> Self;
    fn tx(&mut self, ts: u64, bytes: &[u8], len: u64);
    fn rx(&mut self, ts: u64, bytes: &[u8], len: u64, tail: bool, out: &mut dyn FnMut(Statement));
    fn buffered(&self) -> usize;
}

macro_rules! wire {
    ($conn:ty) => {
        impl Wire for $conn {
            fn open(mid_stream: bool) -> Self {
                if mid_stream {
                    Self::mid_stream()
                } else {
                    Self::new()
                }
            }
            fn tx(&mut self, ts: u64, bytes: &[u8], len: u64) {
                self.on_tx(ts, bytes, len);
            }
            fn rx(
                &mut self,
                ts: u64,
                bytes: &[u8],
                len: u64,
                tail: bool,
                mut out: &mut dyn FnMut(Statement),
            ) {
                self.on_rx(ts, bytes, len, tail, &mut out);
            }
            fn buffered(&self) -> usize {
                <$conn>::buffered(self)
            }
        }
    };
}
wire!(PgConn);
wire!(MysqlConn);

/// The first byte picks a fresh or a mid-stream connection; then each
/// control byte gives a chunk's length (bits 3..), direction and tail (bits
/// 0 and 2) and whether bytes went uncaptured (bit 1).
pub fn run<C: Wire>(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = C::open(mode & 1 != 0);
    let mut input = rest;
    let mut ts = 0;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1;
        let len = bytes.len() as u64 + u64::from(control & 2) * 100;
        match control & 5 {
            0 | 4 => conn.tx(ts, bytes, len),
            1 => conn.rx(ts, bytes, len, false, &mut |st| {
                assert!(st.start_ns <= st.end_ns);
            }),
            _ => conn.rx(ts, bytes, len, true, &mut |_| {}),
        }
        assert!(conn.buffered() < 1 << 20);
    }
}
