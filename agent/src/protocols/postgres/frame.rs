//! PostgreSQL message framing: a type byte, a 4-byte big-endian length
//! that counts itself, a body (see [`framer`] for the rest).
use crate::protocols::framer::{self, Header};
pub use crate::protocols::framer::{Desync, Frame};

/// Body bytes kept per message (enough for a statement name and the start
/// of its SQL, a command tag, a transaction status).
pub const KEEP: usize = 512;
/// Longest message believed (the server's own limit is 1 GB).
const MAX_LEN: u32 = 1 << 30;

/// Whether `kind` is a message type a PostgreSQL frontend or backend sends.
pub fn known_kind(kind: u8) -> bool {
    matches!(
        kind,
        b'1' | b'2'
            | b'3'
            | b'A'
            | b'B'
            | b'C'
            | b'D'
            | b'E'
            | b'F'
            | b'G'
            | b'H'
            | b'I'
            | b'K'
            | b'N'
            | b'P'
            | b'Q'
            | b'R'
            | b'S'
            | b'T'
            | b'V'
            | b'W'
            | b'X'
            | b'Z'
            | b'c'
            | b'd'
            | b'f'
            | b'n'
            | b'p'
            | b's'
            | b't'
            | b'v'
    )
}

/// PostgreSQL's message header: the type byte, then the length.
#[derive(Debug)]
pub struct Pg;

impl Header for Pg {
    const LEN: usize = 5;
    const KEEP: usize = KEEP;

    fn parse(header: &[u8]) -> Option<(u8, u32)> {
        let kind = header[0];
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        (known_kind(kind) && (4..MAX_LEN).contains(&length)).then(|| (kind, length - 4))
    }
}

/// One direction of a connection.
pub type Framer = framer::Framer<Pg>;

/// The NUL-terminated string at the start of `bytes`, and what follows it.
pub fn cstr(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn messages_split_anywhere_and_bodies_skipped_by_length() {
        let mut wire = msg(b'Q', b"SELECT 1\0");
        wire.extend(msg(b'S', b""));
        for cut in 0..wire.len() {
            let mut framer = Framer::default();
            let mut kinds = Vec::new();
            let mut out = |m: Frame<'_>| kinds.push((m.tag, m.body.to_vec()));
            framer.feed(&wire[..cut], cut as u64, &mut out).unwrap();
            framer
                .feed(&wire[cut..], (wire.len() - cut) as u64, &mut out)
                .unwrap();
            assert_eq!(kinds, [(b'Q', b"SELECT 1\0".to_vec()), (b'S', vec![])]);
        }
        // A 100 kB DataRow of which 40 bytes were captured, then more.
        let mut framer = Framer::default();
        let mut big = msg(b'D', &vec![7; 100_000]);
        big.truncate(40);
        let mut count = 0;
        framer.feed(&big, 100_005, &mut |_| count += 1).unwrap();
        assert_eq!(count, 1);
        assert!(framer.is_clean());
        assert_eq!(
            framer.feed(&msg(b'Z', b"I")[..2], 6, &mut |_| count += 1),
            Err(Desync),
            "a header past the capture"
        );
        let mut framer = Framer::default();
        assert_eq!(framer.feed(b"GET / HTTP/1.1", 14, &mut |_| {}), Err(Desync));
    }
}
