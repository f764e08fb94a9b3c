//! A `text/event-stream` split into its events as its bytes arrive, by the
//! format's rules (WHATWG HTML, "server-sent events"): lines end with CRLF,
//! LF or CR (a CRLF may be split between two pieces); `data:` lines (one
//! leading space dropped) are joined by newlines; `event:` names the
//! event; an empty line ends it; comments (`:`) and other fields are
//! skipped. Pure and bounded: a line or an event longer than the limit is
//! dropped whole, never cut.

/// One event, as its stream dispatched it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty for the default, `message`.
    pub name: String,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

/// The state between pieces of one stream.
#[derive(Clone, Debug)]
pub struct Splitter {
    /// The line read so far.
    line: Vec<u8>,
    /// The last piece ended with CR: an LF first in the next is its end.
    after_cr: bool,
    /// The event's fields so far (`data: None`: no `data:` line yet).
    name: String,
    data: Option<String>,
    /// Bytes of one line or event kept at most.
    limit: usize,
    /// Over the limit: the rest of the event is skipped.
    overflow: bool,
}

impl Splitter {
    pub fn new(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            name: String::new(),
            data: None,
            limit,
            overflow: false,
        }
    }

    /// Bytes the splitter holds (for the agent's memory budget).
    pub fn buffered(&self) -> usize {
        self.line.capacity() + self.data.as_ref().map_or(0, String::capacity)
    }

    /// The next bytes of the stream; each event they end goes to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Event)) {
        if self.after_cr {
            self.after_cr = false;
            bytes = bytes.strip_prefix(b"\n").unwrap_or(bytes);
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.push(&bytes[..end]);
            self.end_line(out);
            let rest = &bytes[end..];
            bytes = match rest {
                [b'\r', b'\n', rest @ ..] => rest,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, rest @ ..] => rest,
                [] => &[],
            };
        }
        self.push(bytes);
    }

    /// Bytes are missing here: the event they were part of is dropped.
    pub fn gap(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.overflow = true;
    }

    /// The stream ended: an event it did not end with an empty line is
    /// dispatched all the same (a whole body's last event).
    pub fn finish(&mut self, out: &mut impl FnMut(Event)) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.end_line(out);
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > self.limit {
            self.overflow = true;
            self.line.clear();
        } else if !self.overflow {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, out: &mut impl FnMut(Event)) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let data = self.data.take();
            let name = std::mem::take(&mut self.name);
            if let (Some(data), false) = (data, std::mem::take(&mut self.overflow)) {
                out(Event { name, data });
            }
        } else if !self.overflow {
            self.field(&line);
        }
        self.line = line;
        self.line.clear();
    }

    fn field(&mut self, line: &[u8]) {
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // a comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                // Measured as text: an invalid byte grows to three.
                let joined = self.data.as_ref().map_or(0, |d| d.len() + 1) + value.len();
                if joined > self.limit {
                    self.overflow = true;
                } else if let Some(data) = &mut self.data {
                    data.push('\n');
                    data.push_str(&value);
                } else {
                    self.data = Some(value.into_owned());
                }
            }
            b"event" => self.name = value.into_owned(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&[u8]], limit: usize) -> Vec<Event> {
        let mut splitter = Splitter::new(limit);
        let mut events = Vec::new();
        for piece in pieces {
            splitter.feed(piece, &mut |e| events.push(e));
        }
        events
    }

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_by_the_format_rules() {
        let stream = b": ping\r\nevent: endpoint\r\ndata: /messages/?session_id=ab\r\n\r\n\
                       data:{\"a\":1}\ndata: more\nid: 7\nretry: 10\n\nevent: x\n\ndata\n\n";
        let expected = vec![
            event("endpoint", "/messages/?session_id=ab"),
            event("", "{\"a\":1}\nmore"),
            event("", ""),
        ];
        assert_eq!(split(&[stream], 1024), expected);
    }

    #[test]
    fn any_cut_into_pieces_gives_the_same_events() {
        let stream: &[u8] = b"event: message\r\ndata: {\"id\":1}\r\n\r\ndata: two\r\rdata: 3\n\n";
        let whole = split(&[stream], 1024);
        assert_eq!(whole.len(), 3);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(split(&[a, b], 1024), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split(&bytes, 1024), whole);
    }

    #[test]
    fn a_long_event_is_dropped_whole_and_the_next_is_read() {
        let stream =
            b"data: 0123456789\ndata: 0123456789\n\ndata: 0123456789abcdef\n\ndata: ok\n\n";
        assert_eq!(split(&[stream], 16), vec![event("", "ok")]);
    }

    #[test]
    fn a_gap_drops_the_event_it_falls_in() {
        let mut splitter = Splitter::new(64);
        let mut events = Vec::new();
        splitter.feed(b"data: one\n\ndata: tw", &mut |e| events.push(e));
        splitter.gap();
        splitter.feed(b"o\n\ndata: three\n\n", &mut |e| events.push(e));
        splitter.feed(b"data: last", &mut |e| events.push(e));
        splitter.finish(&mut |e| events.push(e));
        assert_eq!(
            events,
            vec![event("", "one"), event("", "three"), event("", "last")]
        );
    }
}
