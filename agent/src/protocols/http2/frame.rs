//! HTTP/2 framing (RFC 9113, 4.1) over captured bytes, one direction of a
//! connection: a 9-octet header (length, type, flags, stream) and a
//! payload. The payloads whose content the connection's state depends on
//! (header blocks, settings, resets) are kept whole; DATA payloads are
//! skipped by length, so a 5 MB body costs nothing and the frames after it
//! in the same syscall are still found.
use crate::protocols::Transfer;

/// What a client sends first on a connection that speaks HTTP/2.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADER_LEN: usize = 9;
/// The longest payload kept (a header block fragment, settings); a
/// longer one loses the connection (its header table can no longer be
/// followed).
const MAX_KEPT: u32 = 64 << 10;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    fn parse(bytes: &[u8]) -> Self {
        Self {
            len: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    /// Whether the connection's state needs the payload itself.
    fn kept(&self) -> bool {
        matches!(
            self.kind,
            HEADERS | CONTINUATION | PUSH_PROMISE | SETTINGS | RST_STREAM | GOAWAY
        )
    }
}

/// What the reader hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part<'a> {
    /// A run of a DATA frame's payload: its length, and its octets if they
    /// were captured (all of them, or none).
    Data(&'a Head, u64, &'a [u8]),
    /// A complete frame, with its payload for the kept types (empty for
    /// the others).
    Frame(&'a Head, &'a [u8]),
}

/// The frames could no longer be followed: a header or a kept payload was
/// not captured, or a payload is longer than loupe keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost;

/// One direction of a connection.
#[derive(Clone, Debug, Default)]
pub struct Reader {
    /// A partial header, or the kept payload of the current frame.
    buf: Vec<u8>,
    /// The frame being read and how many payload octets are still to come.
    current: Option<(Head, u32)>,
    /// A padded DATA frame's pad length, once read (`None`: not captured).
    pad: Option<u32>,
}

impl Reader {
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads what one syscall transferred from its offset `from` on; `out`
    /// gets each run of a DATA payload, and each frame once it is complete.
    pub fn feed(
        &mut self,
        transfer: &Transfer<'_>,
        from: u64,
        out: &mut impl FnMut(Part<'_>),
    ) -> Result<(), Lost> {
        let mut pos = from;
        while pos < transfer.len {
            let (visible, run_end) = transfer.at(pos);
            let run = run_end - pos;
            pos += self.run(visible, run, out)?;
        }
        Ok(())
    }

    /// Consumes a run of `run` octets of which `visible` (all or none of
    /// them) were captured; returns how many were used.
    fn run(
        &mut self,
        visible: &[u8],
        run: u64,
        out: &mut impl FnMut(Part<'_>),
    ) -> Result<u64, Lost> {
        let Some((head, left)) = self.current else {
            if visible.is_empty() {
                return Err(Lost); // a header that was not captured
            }
            let take = (HEADER_LEN - self.buf.len()).min(visible.len());
            self.buf.extend_from_slice(&visible[..take]);
            if self.buf.len() == HEADER_LEN {
                let head = Head::parse(&self.buf);
                self.buf.clear();
                if head.kept() && head.len > MAX_KEPT {
                    return Err(Lost);
                }
                self.current = Some((head, head.len));
                self.finish(out);
            }
            return Ok(take as u64);
        };
        let take = u64::from(left).min(run);
        if head.kept() {
            if visible.is_empty() {
                return Err(Lost);
            }
            self.buf.extend_from_slice(&visible[..take as usize]);
        } else if head.kind == DATA && take > 0 {
            let seen = &visible[..visible.len().min(take as usize)];
            self.data(&head, left, take, seen, out);
        }
        self.current = Some((head, left - take as u32));
        self.finish(out);
        Ok(take)
    }

    /// A run of `run` octets of a DATA payload, `left` octets before its
    /// end: its data, without a padded frame's pad length and padding
    /// (RFC 9113, 6.1). A pad length that was not captured leaves the
    /// data's end unknown: its runs are then handed out as not captured.
    fn data(
        &mut self,
        head: &Head,
        left: u32,
        mut run: u64,
        mut seen: &[u8],
        out: &mut impl FnMut(Part<'_>),
    ) {
        let mut left = u64::from(left);
        let padded = head.flags & PADDED != 0;
        if padded && left == u64::from(head.len) {
            self.pad = seen.first().map(|&n| u32::from(n));
            (run, left) = (run - 1, left - 1);
            seen = seen.get(1..).unwrap_or_default();
        }
        let pad = if padded { self.pad.unwrap_or(0) } else { 0 };
        let data = run.min(left.saturating_sub(u64::from(pad)));
        if data > 0 {
            let seen = if padded && self.pad.is_none() {
                &[]
            } else {
                &seen[..seen.len().min(data as usize)]
            };
            out(Part::Data(head, data, seen));
        }
    }

    /// Hands out the current frame if its payload is complete.
    fn finish(&mut self, out: &mut impl FnMut(Part<'_>)) {
        if let Some((head, 0)) = self.current {
            out(Part::Frame(&head, &self.buf));
            self.buf.clear();
            self.current = None;
        }
    }
}

/// Whether `bytes`, the first seen of a connection picked up mid-way,
/// start with HTTP/2 frames: every frame header they hold whole has a
/// type below 0x20 (an HTTP/1 method or `HTTP/` has a letter or a space
/// there) and the reserved bit clear, and there is at least one.
pub fn starts_frames(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut headers = 0;
    while let Some(header) = bytes.get(at..at + HEADER_LEN) {
        let head = Head::parse(header);
        if head.kind >= 0x20 || header[5] & 0x80 != 0 {
            return false;
        }
        headers += 1;
        at += HEADER_LEN + head.len as usize;
    }
    headers > 0
}

/// A HEADERS or PUSH_PROMISE payload without its padding and priority
/// fields (RFC 9113, 6.2): the header block fragment.
pub fn fragment<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], Lost> {
    let mut body = payload;
    let mut pad = 0usize;
    if head.flags & PADDED != 0 && matches!(head.kind, HEADERS | PUSH_PROMISE) {
        let (&len, rest) = body.split_first().ok_or(Lost)?;
        pad = usize::from(len);
        body = rest;
    }
    let skip = match head.kind {
        HEADERS if head.flags & PRIORITY != 0 => 5,
        PUSH_PROMISE => 4,
        _ => 0,
    };
    if body.len() < skip + pad {
        return Err(Lost);
    }
    Ok(&body[skip..body.len() - pad])
}

/// What the probes copy of an HTTP/2 connection, one direction
/// (`ebpf/probes/src/frames.rs`, by the same rules, without a capture
/// budget): every frame header octet, the payloads of the kept types, and
/// the prefix of every message in DATA payloads, as pieces at their
/// offsets. For the tests and fuzz targets of what reads them.
/// The walker's flag of a padded DATA frame whose pad length is next.
#[cfg(any(test, feature = "fuzzing"))]
const PAD_NEXT: u32 = 0x100;

#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug)]
pub struct ProbeModel {
    walk: loupe_common::maps::FrameWalk,
    streams: std::collections::HashMap<u32, loupe_common::maps::Messages>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl ProbeModel {
    /// The side that sends the client's preface first, or the other.
    pub fn new(preface: bool) -> Self {
        use loupe_common::maps::FrameWalk;
        Self {
            walk: if preface {
                FrameWalk::PREFACE
            } else {
                FrameWalk::START
            },
            streams: Default::default(),
        }
    }

    /// The pieces the probes copy of one syscall's `bytes`.
    pub fn copies(&mut self, bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut copy = |at: usize, run: &[u8]| match pieces.last_mut() {
            Some((start, piece)) if *start as usize + piece.len() == at => piece.extend(run),
            _ => pieces.push((at as u64, run.to_vec())),
        };
        let walk = &mut self.walk;
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = bytes.len() - pos;
            if walk.have < HEADER_LEN as u32 {
                if walk.have == 0 {
                    (walk.head, walk.flags, walk.stream) = (0, 0, 0);
                }
                let n = (HEADER_LEN - walk.have as usize).min(rest);
                for (k, &octet) in bytes[pos..pos + n].iter().enumerate() {
                    let octet = u32::from(octet);
                    match walk.have as usize + k {
                        0..4 => walk.head = (walk.head << 8) | octet,
                        4 => walk.flags = octet,
                        _ => walk.stream = (walk.stream << 8) | octet,
                    }
                }
                copy(pos, &bytes[pos..pos + n]);
                walk.have += n as u32;
                pos += n;
                if walk.have == HEADER_LEN as u32 {
                    walk.left = walk.head >> 8;
                    if walk.head & 0xff == u32::from(DATA) {
                        if walk.flags & u32::from(PADDED) != 0 {
                            walk.flags |= PAD_NEXT;
                        }
                        let stream = walk.stream & 0x7fff_ffff;
                        walk.messages = self.streams.remove(&stream).unwrap_or_default();
                    }
                }
            } else if walk.head & 0xff == u32::from(DATA) && walk.flags & PAD_NEXT != 0 {
                copy(pos, &bytes[pos..=pos]);
                walk.flags = (walk.flags & !PAD_NEXT) | (u32::from(bytes[pos]) << 16);
                walk.left -= 1;
                pos += 1;
            } else if walk.head & 0xff == u32::from(DATA) && walk.left <= walk.flags >> 16 {
                let n = (walk.left as usize).min(rest);
                walk.left -= n as u32;
                pos += n;
            } else if walk.head & 0xff == u32::from(DATA) {
                let n = ((walk.left - (walk.flags >> 16)) as usize).min(rest);
                let m = &mut walk.messages;
                let take = if m.left == 0 {
                    let take = (5 - m.have as usize).min(n);
                    for (k, &octet) in bytes[pos..pos + take].iter().enumerate() {
                        if m.have as usize + k > 0 {
                            m.len = (m.len << 8) | u32::from(octet);
                        }
                    }
                    copy(pos, &bytes[pos..pos + take]);
                    m.have += take as u32;
                    if m.have == 5 {
                        (m.left, m.have, m.len) = (m.len, 0, 0);
                    }
                    take
                } else {
                    let take = n.min(m.left as usize);
                    m.left -= take as u32;
                    take
                };
                walk.left -= take as u32;
                pos += take;
            } else {
                let n = (walk.left as usize).min(rest);
                let kind = walk.head & 0xff;
                let head = Head {
                    len: 0,
                    kind: kind as u8,
                    flags: 0,
                    stream: 0,
                };
                if head.kept() || kind == loupe_common::maps::FRAME_PREFACE {
                    copy(pos, &bytes[pos..pos + n]);
                }
                walk.left -= n as u32;
                pos += n;
            }
            if walk.have == HEADER_LEN as u32 && walk.left == 0 {
                walk.have = 0;
                let m = walk.messages;
                let ended = walk.flags & u32::from(END_STREAM) != 0;
                if walk.head & 0xff == u32::from(DATA) && !ended && (m.left, m.have) != (0, 0) {
                    self.streams.insert(walk.stream & 0x7fff_ffff, m);
                }
            }
        }
        pieces
    }
}

/// Octets from hexadecimal text (the RFCs' examples, in tests).
#[cfg(test)]
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A frame as a peer writes it (for the tests of what reads frames).
#[cfg(test)]
pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reader: &mut Reader, transfer: &Transfer<'_>) -> Result<Vec<(u8, u32, Vec<u8>)>, Lost> {
        let mut frames = Vec::new();
        reader.feed(transfer, 0, &mut |part| {
            if let Part::Frame(head, payload) = part {
                frames.push((head.kind, head.stream, payload.to_vec()));
            }
        })?;
        Ok(frames)
    }

    #[test]
    fn frames_split_anywhere() {
        let mut wire = encode(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]);
        wire.extend(encode(HEADERS, END_HEADERS, 1, b"\x82\x84"));
        wire.extend(encode(DATA, END_STREAM, 1, b"hello"));
        for cut in 0..wire.len() {
            let mut reader = Reader::default();
            let (a, b) = wire.split_at(cut);
            let mut frames = read(&mut reader, &Transfer::new(1, a.len() as u64, a)).unwrap();
            frames.extend(read(&mut reader, &Transfer::new(2, b.len() as u64, b)).unwrap());
            let kinds: Vec<(u8, u32, Vec<u8>)> = vec![
                (SETTINGS, 0, vec![0, 1, 0, 0, 0x10, 0]),
                (HEADERS, 1, b"\x82\x84".to_vec()),
                (DATA, 1, vec![]),
            ];
            assert_eq!(frames, kinds, "cut at {cut}");
        }
    }

    #[test]
    fn frames_after_a_large_data_frame_are_found() {
        // A write of a 100 kB DATA frame and a trailing HEADERS frame, of
        // which the probes copied the first 2 KiB and the last 64 bytes.
        let mut wire = encode(DATA, 0, 3, &vec![b'x'; 100_000]);
        wire.extend(encode(HEADERS, END_HEADERS | END_STREAM, 3, b"\x88"));
        let transfer = Transfer::ends(
            1,
            wire.len() as u64,
            &wire[..2048],
            &wire[wire.len() - 64..],
        );
        let mut reader = Reader::default();
        let frames = read(&mut reader, &transfer).unwrap();
        assert_eq!(frames, [(DATA, 3, vec![]), (HEADERS, 3, b"\x88".to_vec())]);
    }

    #[test]
    fn an_uncaptured_header_block_loses_the_connection() {
        let wire = encode(HEADERS, END_HEADERS, 1, &vec![0x82; 4000]);
        let transfer = Transfer::new(1, wire.len() as u64, &wire[..2048]);
        assert_eq!(read(&mut Reader::default(), &transfer), Err(Lost));
        // A 128 KiB header block fragment: more than loupe keeps.
        let head = [0x02, 0x00, 0x00, HEADERS, 0, 0, 0, 0, 1];
        assert_eq!(
            read(&mut Reader::default(), &Transfer::new(1, 9, &head)),
            Err(Lost)
        );
    }

    #[test]
    fn frames_mid_stream_are_told_from_http1() {
        let mut frames = encode(HEADERS, END_HEADERS, 7, b"\x82\x84");
        frames.extend(encode(DATA, END_STREAM, 7, b"{}"));
        assert!(starts_frames(&frames));
        // Cut inside the second header: the first one says.
        assert!(starts_frames(&frames[..15]));
        for http1 in [
            &b"GET /items HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"DELETE /x HTTP/1.1\r\n",
            b"\x00\x00\x04\x01",
        ] {
            assert!(!starts_frames(http1), "{http1:?}");
        }
        // The reserved bit of a stream identifier.
        let mut reserved = frames.clone();
        reserved[5] |= 0x80;
        assert!(!starts_frames(&reserved));
    }

    #[test]
    fn padding_and_priority_are_not_header_block() {
        let head = Head {
            len: 0,
            kind: HEADERS,
            flags: PADDED | PRIORITY | END_HEADERS,
            stream: 1,
        };
        let payload = [2, 0, 0, 0, 0, 16, 0x82, 0x84, 0, 0];
        assert_eq!(fragment(&head, &payload), Ok(&[0x82, 0x84][..]));
        assert_eq!(fragment(&head, &[9, 1]), Err(Lost));
    }
}
