//! Length-prefixed framing over captured bytes, for the binary protocols
//! whose messages are a fixed-size header that gives the body's length
//! (PostgreSQL, MySQL). Bodies are skipped by length, so a 10 MB result row
//! costs nothing; only the start of a body is kept. A header outside the
//! captured bytes loses the frame (the caller resynchronises).
use std::marker::PhantomData;

/// A protocol's frame header.
pub trait Header {
    /// Bytes in a header.
    const LEN: usize;
    /// Body bytes kept per frame.
    const KEEP: usize;
    /// The frame's tag and body length, from its header; `None` when the
    /// bytes cannot be a header (the stream is not where it was thought).
    fn parse(header: &[u8]) -> Option<(u8, u32)>;
}

/// One complete frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the header names besides the length (a message type, a
    /// sequence id).
    pub tag: u8,
    /// The body's length.
    pub len: u32,
    /// The body's first bytes (all of it when short).
    pub body: &'a [u8],
}

/// The framer lost the frame boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desync;

/// One direction of a connection.
#[derive(Debug)]
pub struct Framer<H> {
    /// Partial header, or the kept body of the current frame.
    buf: Vec<u8>,
    tag: u8,
    len: u32,
    /// Body bytes still to come; `None` while reading a header.
    left: Option<u64>,
    header: PhantomData<H>,
}

impl<H> Default for Framer<H> {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            tag: 0,
            len: 0,
            left: None,
            header: PhantomData,
        }
    }
}

impl<H> Clone for Framer<H> {
    fn clone(&self) -> Self {
        Self {
            buf: self.buf.clone(),
            tag: self.tag,
            len: self.len,
            left: self.left,
            header: PhantomData,
        }
    }
}

impl<H: Header> Framer<H> {
    /// Bytes held (for the memory estimate).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// At a frame boundary.
    pub fn is_clean(&self) -> bool {
        self.left.is_none() && self.buf.is_empty()
    }

    /// Feeds `len` transferred bytes of which the first `visible` were
    /// captured; calls `out` with each complete frame.
    pub fn feed(
        &mut self,
        visible: &[u8],
        len: u64,
        out: &mut impl FnMut(Frame<'_>),
    ) -> Result<(), Desync> {
        let mut pos = 0usize;
        let mut unseen = len.saturating_sub(visible.len() as u64);
        loop {
            match self.left {
                None => {
                    if pos == visible.len() {
                        return if unseen == 0 { Ok(()) } else { Err(Desync) };
                    }
                    let take = (H::LEN - self.buf.len()).min(visible.len() - pos);
                    self.buf.extend_from_slice(&visible[pos..pos + take]);
                    pos += take;
                    if self.buf.len() < H::LEN {
                        continue;
                    }
                    let (tag, body) = H::parse(&self.buf).ok_or(Desync)?;
                    self.tag = tag;
                    self.len = body;
                    self.buf.clear();
                    self.left = Some(u64::from(body));
                }
                Some(left) => {
                    let take = left.min((visible.len() - pos) as u64) as usize;
                    let room = H::KEEP.saturating_sub(self.buf.len());
                    self.buf
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
                    out(Frame {
                        tag: self.tag,
                        len: self.len,
                        body: &self.buf,
                    });
                    self.buf.clear();
                    self.left = None;
                }
            }
        }
    }
}
