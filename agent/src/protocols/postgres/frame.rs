//! PostgreSQL message framing over captured bytes: a type byte, a 4-byte
//! big-endian length that counts itself, a body. Bodies are skipped by
//! length (a 10 MB `DataRow` costs nothing); only the start of a body is
//! kept. A header outside the captured bytes loses the frame.

/// Body bytes kept per message (enough for a statement name and the start
/// of its SQL, a command tag, a transaction status).
pub const KEEP: usize = 512;
/// Longest message believed (the server's own limit is 1 GB).
const MAX_LEN: u32 = 1 << 30;

/// One complete message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u8,
    /// The body's first bytes (all of it when short).
    pub body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desync;

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

/// One direction of a connection.
#[derive(Clone, Debug, Default)]
pub struct Framer {
    /// Partial header, or the kept body of the current message.
    head: Vec<u8>,
    kind: u8,
    /// Body bytes still to come; `None` while reading a header.
    left: Option<u64>,
}

impl Framer {
    pub fn buffered(&self) -> usize {
        self.head.capacity()
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// At a message boundary.
    pub fn is_clean(&self) -> bool {
        self.left.is_none() && self.head.is_empty()
    }

    /// Feeds `len` transferred bytes of which the first `visible` were
    /// captured; calls `out` with each complete message.
    pub fn feed(
        &mut self,
        visible: &[u8],
        len: u64,
        out: &mut impl FnMut(Message<'_>),
    ) -> Result<(), Desync> {
        let mut pos = 0usize;
        let mut unseen = len.saturating_sub(visible.len() as u64);
        loop {
            match self.left {
                None => {
                    if pos == visible.len() {
                        return if unseen == 0 { Ok(()) } else { Err(Desync) };
                    }
                    let need = 5 - self.head.len();
                    let take = need.min(visible.len() - pos);
                    self.head.extend_from_slice(&visible[pos..pos + take]);
                    pos += take;
                    if self.head.len() < 5 {
                        continue;
                    }
                    let kind = self.head[0];
                    let length = u32::from_be_bytes([
                        self.head[1],
                        self.head[2],
                        self.head[3],
                        self.head[4],
                    ]);
                    if !known_kind(kind) || !(4..MAX_LEN).contains(&length) {
                        return Err(Desync);
                    }
                    self.kind = kind;
                    self.head.clear();
                    self.left = Some(u64::from(length) - 4);
                }
                Some(left) => {
                    let here = (visible.len() - pos) as u64;
                    let take = left.min(here) as usize;
                    let room = KEEP.saturating_sub(self.head.len());
                    self.head
                        .extend_from_slice(&visible[pos..pos + take.min(room)]);
                    pos += take;
                    let mut left = left - take as u64;
                    if left > 0 {
                        // The captured bytes ran out: skip the rest by length.
                        let skip = left.min(unseen);
                        unseen -= skip;
                        left -= skip;
                        if left > 0 {
                            self.left = Some(left);
                            return Ok(());
                        }
                    }
                    out(Message {
                        kind: self.kind,
                        body: &self.head,
                    });
                    self.head.clear();
                    self.left = None;
                }
            }
        }
    }
}

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
            let mut out = |m: Message<'_>| kinds.push((m.kind, m.body.to_vec()));
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
