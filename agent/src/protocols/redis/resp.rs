//! RESP2/RESP3 framing over captured bytes: finds where each top-level
//! value ends, what kind it is, and (for a command) its first word. Bulk
//! payloads are skipped by length, so values longer than the capture cost
//! nothing; a header that falls outside the captured bytes loses the frame
//! ([`Desync`]), and the caller resynchronises at the next syscall.

/// Longest line (simple string, error, number, header) kept while parsing.
const MAX_LINE: usize = 512;
/// Deepest nesting of aggregates followed.
const MAX_DEPTH: usize = 16;
/// Bytes of a command's first word kept.
const MAX_WORD: usize = 32;

/// One complete top-level value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// `-` or `!`: an error reply.
    pub error: bool,
    /// `>`: a RESP3 push (not a reply to a command).
    pub push: bool,
    /// `|`: an attribute, which precedes the reply it describes.
    pub attribute: bool,
    /// The first word: the first bulk string of an array, or of an inline
    /// command; upper-case ASCII, at most 32 bytes.
    pub word: Vec<u8>,
    /// The second word, for commands named by two (`CLIENT SETINFO`).
    pub second: Vec<u8>,
    /// The last integer element of a top-level array (a pub/sub
    /// confirmation's subscription count).
    pub count: Option<i64>,
}

/// The stream cannot be followed (bytes not captured, or not RESP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desync;

#[derive(Clone, Debug, Default)]
enum State {
    /// Reading a line (type byte included) up to CRLF.
    #[default]
    Line,
    /// Skipping `left` payload bytes plus their CRLF; `word` says whether
    /// the payload is a word to keep.
    Bulk { left: u64, word: Option<u8> },
}

/// A RESP parser for one direction of a connection.
#[derive(Clone, Debug, Default)]
pub struct Resp {
    state: State,
    line: Vec<u8>,
    /// Elements still expected by each open aggregate.
    stack: Vec<u64>,
    current: Option<Value>,
    /// Bulk strings seen in the current top-level array.
    strings: u8,
}

fn number(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

impl Resp {
    /// Bytes held between syscalls.
    pub fn buffered(&self) -> usize {
        self.line.capacity() + self.stack.capacity() * 8
    }

    /// Forgets a partial value (after a desync).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn in_value(&self) -> bool {
        self.current.is_some() || !self.line.is_empty()
    }

    /// Feeds `len` transferred bytes of which the first `visible` were
    /// captured; calls `out` for each complete top-level value.
    pub fn feed(
        &mut self,
        visible: &[u8],
        len: u64,
        out: &mut impl FnMut(Value),
    ) -> Result<(), Desync> {
        let mut pos = 0usize;
        let mut unseen = len.saturating_sub(visible.len() as u64);
        loop {
            match self.state {
                State::Bulk { left, word } => {
                    let here = (visible.len() - pos) as u64;
                    let take = left.min(here);
                    if let Some(which) = word {
                        let bytes = &visible[pos..pos + take as usize];
                        self.keep_word(which, bytes);
                    }
                    pos += take as usize;
                    let mut left = left - take;
                    if left > 0 {
                        // Only when the captured bytes ran out.
                        // The rest of the payload was not captured: skip it
                        // by length if this syscall carried it.
                        let skip = left.min(unseen);
                        unseen -= skip;
                        left -= skip;
                        if left > 0 {
                            let word = if skip == 0 { word } else { None };
                            self.state = State::Bulk { left, word };
                            return if unseen == 0 { Ok(()) } else { Err(Desync) };
                        }
                    }
                    self.state = State::Line;
                    self.element_done(out);
                }
                State::Line => {
                    if pos == visible.len() {
                        return if unseen == 0 { Ok(()) } else { Err(Desync) };
                    }
                    let rest = &visible[pos..];
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                        if self.line.len() + rest.len() > MAX_LINE {
                            return Err(Desync);
                        }
                        self.line.extend_from_slice(rest);
                        if unseen > 0 {
                            return Err(Desync);
                        }
                        return Ok(());
                    };
                    if self.line.len() + end > MAX_LINE {
                        return Err(Desync);
                    }
                    self.line.extend_from_slice(&rest[..end]);
                    pos += end + 1;
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.on_line(&line, out)?;
                    line.clear();
                    self.line = line;
                }
            }
        }
    }

    fn keep_word(&mut self, which: u8, bytes: &[u8]) {
        let Some(value) = &mut self.current else {
            return;
        };
        let target = if which == 0 {
            &mut value.word
        } else {
            &mut value.second
        };
        let room = MAX_WORD.saturating_sub(target.len());
        // The trailing CRLF is part of `left`: keep letters only.
        target.extend(
            bytes
                .iter()
                .take(room)
                .filter(|b| !matches!(b, b'\r' | b'\n'))
                .map(u8::to_ascii_uppercase),
        );
    }

    fn start(&mut self, kind: u8) {
        if self.current.is_none() {
            self.strings = 0;
            self.current = Some(Value {
                error: matches!(kind, b'-' | b'!'),
                push: kind == b'>',
                attribute: kind == b'|',
                word: Vec::new(),
                second: Vec::new(),
                count: None,
            });
        }
    }

    fn on_line(&mut self, line: &[u8], out: &mut impl FnMut(Value)) -> Result<(), Desync> {
        let Some((&kind, rest)) = line.split_first() else {
            return Err(Desync);
        };
        let top = self.current.is_none();
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                self.start(kind);
                if kind == b':'
                    && self.stack.len() == 1
                    && let Some(value) = &mut self.current
                {
                    value.count = number(rest);
                }
                self.element_done(out);
            }
            b'$' | b'!' | b'=' => {
                self.start(kind);
                let n = number(rest).ok_or(Desync)?;
                if n < 0 {
                    self.element_done(out);
                } else {
                    // The first two bulk strings of a top-level array are
                    // the command's words.
                    let word = (self.stack.len() == 1 && self.strings < 2).then_some(self.strings);
                    self.strings = self.strings.saturating_add(1);
                    self.state = State::Bulk {
                        left: n as u64 + 2,
                        word,
                    };
                }
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                self.start(kind);
                let n = number(rest).ok_or(Desync)?;
                let elements = match kind {
                    b'%' | b'|' => n.saturating_mul(2),
                    _ => n,
                };
                if elements <= 0 {
                    self.element_done(out);
                } else if self.stack.len() >= MAX_DEPTH {
                    return Err(Desync);
                } else {
                    self.stack.push(elements as u64);
                }
            }
            _ if top && kind.is_ascii_alphabetic() => {
                // An inline command: words separated by spaces.
                self.start(kind);
                let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
                if let Some(value) = &mut self.current {
                    for (slot, word) in [&mut value.word, &mut value.second]
                        .into_iter()
                        .zip(&mut words)
                    {
                        slot.extend(word.iter().take(MAX_WORD).map(u8::to_ascii_uppercase));
                    }
                }
                self.element_done(out);
            }
            _ => return Err(Desync),
        }
        Ok(())
    }

    /// One element (or a whole top-level value) ended.
    fn element_done(&mut self, out: &mut impl FnMut(Value)) {
        loop {
            match self.stack.last_mut() {
                None => {
                    if let Some(value) = self.current.take() {
                        out(value);
                    }
                    return;
                }
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        return;
                    }
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(chunks: &[&[u8]]) -> Result<Vec<Value>, Desync> {
        let mut resp = Resp::default();
        let mut out = Vec::new();
        for chunk in chunks {
            resp.feed(chunk, chunk.len() as u64, &mut |v| out.push(v))?;
        }
        Ok(out)
    }

    fn words(values: &[Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| String::from_utf8_lossy(&v.word).into_owned())
            .collect()
    }

    #[test]
    fn commands_pipelined_and_split() {
        let wire =
            b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n";
        assert_eq!(words(&values(&[wire]).unwrap()), ["GET", "SET", "PING"]);
        // Any split gives the same.
        for cut in 1..wire.len() {
            let got = values(&[&wire[..cut], &wire[cut..]]).unwrap();
            assert_eq!(words(&got), ["GET", "SET", "PING"], "cut at {cut}");
        }
        let two = values(&[b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n"]).unwrap();
        assert_eq!(two[0].second, b"SETINFO");
    }

    #[test]
    fn replies_of_every_type() {
        let wire =
            b"+OK\r\n-ERR wrong\r\n:12\r\n$-1\r\n$5\r\nhello\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n\
                     %1\r\n+a\r\n,1.5\r\n_\r\n#t\r\n!3\r\nbad\r\n=7\r\ntxt:abc\r\n(123\r\n\
                     >2\r\n+message\r\n+x\r\n*-1\r\n~0\r\n";
        let got = values(&[wire]).unwrap();
        assert_eq!(got.len(), 15);
        let errors: Vec<usize> = (0..got.len()).filter(|&i| got[i].error).collect();
        assert_eq!(errors, [1, 9]);
        assert!(got[12].push);
    }

    #[test]
    fn payloads_beyond_the_capture_are_skipped_by_length() {
        let mut resp = Resp::default();
        let mut out = Vec::new();
        // A 10,000-byte value of which only the first 100 bytes were captured.
        let mut wire = b"$10000\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'x', 92));
        resp.feed(&wire, 10_000 + 10, &mut |v| out.push(v)).unwrap();
        assert_eq!(out.len(), 1);
        resp.feed(b"+OK\r\n", 5, &mut |v| out.push(v)).unwrap();
        assert_eq!(out.len(), 2);
        // A header outside the capture cannot be followed.
        let mut resp = Resp::default();
        assert_eq!(resp.feed(b"+OK\r\n", 50, &mut |v| out.push(v)), Err(Desync));
    }

    #[test]
    fn garbage_is_a_desync_not_a_panic() {
        assert_eq!(values(&[b"\x00\x01\x02\r\n"]), Err(Desync));
        assert_eq!(values(&[b"*x\r\n"]), Err(Desync));
        assert!(values(&[&[b'*'; 600]]).is_err());
        assert!(values(&[b"*99999999999999999999\r\n"]).is_err());
    }
}
