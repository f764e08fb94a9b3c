//! A decoder of chunked transfer coding that only tracks where the body
//! ends: chunk data is skipped by length, even when its bytes were not
//! captured.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Reading a chunk-size line (`digits` seen so far).
    Size {
        value: u64,
        digits: u8,
    },
    /// Inside a chunk extension, until the end of the line.
    Ext(u64),
    /// After `\r` of a size line.
    SizeLf(u64),
    /// Chunk data left to skip.
    Data(u64),
    DataCr,
    DataLf,
    /// A trailer line (length so far) after the last chunk.
    Trailer(usize),
    TrailerLf(usize),
    Done,
    /// Not chunked coding after all.
    Broken,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::Size {
            value: 0,
            digits: 0,
        }
    }
}

impl Chunked {
    pub fn is_done(self) -> bool {
        self == Self::Done
    }

    /// Feeds bytes; returns how many were part of the body (all of them
    /// unless it ended inside).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        self.feed_data(bytes, &mut |_| {})
    }

    /// As [`Chunked::feed`], handing each run of chunk data to `data`.
    pub fn feed_data(&mut self, bytes: &[u8], data: &mut dyn FnMut(&[u8])) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            if let Self::Data(left) = *self {
                let take = left.min((bytes.len() - i) as u64);
                data(&bytes[i..i + take as usize]);
                i += take as usize;
                *self = if take == left {
                    Self::DataCr
                } else {
                    Self::Data(left - take)
                };
                continue;
            }
            if matches!(self, Self::Done | Self::Broken) {
                break;
            }
            self.step(bytes[i]);
            i += 1;
        }
        i
    }

    /// Skips `n` bytes that were transferred but not captured; false when
    /// they cannot all be chunk data (the decoder lost its place).
    pub fn skip(&mut self, n: u64) -> bool {
        match *self {
            Self::Data(left) if n <= left => {
                *self = if n == left {
                    Self::DataCr
                } else {
                    Self::Data(left - n)
                };
                true
            }
            _ => n == 0,
        }
    }

    fn after_size_line(value: u64) -> Self {
        if value == 0 {
            Self::Trailer(0)
        } else {
            Self::Data(value)
        }
    }

    fn step(&mut self, byte: u8) {
        *self = match (*self, byte) {
            (Self::Size { value, digits }, b) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                match value.checked_mul(16) {
                    Some(v) if digits < 16 => Self::Size {
                        value: v + digit,
                        digits: digits + 1,
                    },
                    _ => Self::Broken,
                }
            }
            (Self::Size { digits: 0, .. }, _) => Self::Broken,
            (Self::Size { value, .. } | Self::Ext(value), b'\r') => Self::SizeLf(value),
            (Self::Size { value, .. } | Self::Ext(value), b'\n') | (Self::SizeLf(value), b'\n') => {
                Self::after_size_line(value)
            }
            (Self::Size { value, .. } | Self::Ext(value), _) => Self::Ext(value),
            (Self::DataCr, b'\r') => Self::DataLf,
            (Self::DataCr | Self::DataLf, b'\n') => Self::default(),
            (Self::Trailer(len), b'\r') => Self::TrailerLf(len),
            (Self::Trailer(0) | Self::TrailerLf(0), b'\n') => Self::Done,
            (Self::Trailer(_) | Self::TrailerLf(_), b'\n') => Self::Trailer(0),
            (Self::Trailer(len), _) => Self::Trailer(len + 1),
            _ => Self::Broken,
        };
    }
}

/// Whether the last bytes of a chunked body are its end (the last chunk and
/// an empty trailer).
pub fn ends_body(tail: &[u8]) -> bool {
    tail.ends_with(b"\r\n0\r\n\r\n") || tail == b"0\r\n\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(parts: &[&[u8]]) -> (Chunked, usize) {
        let mut decoder = Chunked::default();
        let mut used = 0;
        for part in parts {
            used += decoder.feed(part);
        }
        (decoder, used)
    }

    #[test]
    fn finds_the_end_of_a_body() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1";
        let (state, used) = decode(&[body]);
        assert!(state.is_done());
        assert_eq!(used, body.len() - b"GET / HTTP/1.1".len());
    }

    #[test]
    fn survives_any_split() {
        let body = b"a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..body.len() {
            let (state, used) = decode(&[&body[..cut], &body[cut..]]);
            assert!(state.is_done(), "cut at {cut}");
            assert_eq!(used, body.len());
        }
    }

    #[test]
    fn skips_uncaptured_data_by_length() {
        let mut decoder = Chunked::default();
        assert_eq!(decoder.feed(b"400\r\nabc"), 8);
        assert!(decoder.skip(1021));
        assert_eq!(decoder.feed(b"\r\n0\r\n\r\n"), 7);
        assert!(decoder.is_done());
        let mut lost = Chunked::default();
        assert!(!lost.skip(3));
    }

    #[test]
    fn rejects_what_is_not_chunked() {
        assert_eq!(decode(&[b"zz\r\n"]).0, Chunked::Broken);
        assert_eq!(decode(&[b"\r\n"]).0, Chunked::Broken);
        assert_eq!(decode(&[b"2\r\nabXY"]).0, Chunked::Broken);
        assert_eq!(decode(&[b"fffffffffffffffff\r\n"]).0, Chunked::Broken);
    }

    #[test]
    fn recognises_body_ends_in_tails() {
        assert!(ends_body(b"\r\n0\r\n\r\n"));
        assert!(ends_body(b"0\r\n\r\n"));
        assert!(ends_body(b"data: done\r\n\r\n0\r\n\r\n"));
        assert!(!ends_body(b"10\r\n\r\n"));
        assert!(!ends_body(b"partial"));
    }
}
