//! AWS's binary event-stream framing (`application/vnd.amazon.eventstream`),
//! in which Bedrock streams its answers: each message is a 12-byte prelude
//! (total length, headers length, the prelude's CRC-32), headers, a
//! payload and the message's CRC-32. Pure and bounded: a message longer
//! than the format allows, or whose checksums do not match, ends the
//! reading with an error; the messages before it are kept.

/// The longest message the format allows (16 MiB).
const MAX_MESSAGE: usize = 16 << 20;
const PRELUDE: usize = 12;
const TRAILER: usize = 4;

/// One message: its `:event-type` and `:message-type` headers, and its
/// payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub event_type: Option<String>,
    pub message_type: Option<String>,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end inside a message.
    Cut,
    /// A length out of bounds, a checksum that does not match, or a header
    /// that runs past its block.
    Malformed,
}

/// The messages of `bytes`, and why the reading stopped early, if it did.
pub fn messages(mut bytes: &[u8]) -> (Vec<Message<'_>>, Option<FrameError>) {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match message(bytes) {
            Ok((message, len)) => {
                out.push(message);
                bytes = &bytes[len..];
            }
            Err(err) => return (out, Some(err)),
        }
    }
    (out, None)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The message at the start of `bytes`, and its length.
fn message(bytes: &[u8]) -> Result<(Message<'_>, usize), FrameError> {
    let (Some(total), Some(headers_len), Some(prelude_crc)) =
        (be32(bytes, 0), be32(bytes, 4), be32(bytes, 8))
    else {
        return Err(FrameError::Cut);
    };
    let (total, headers_len) = (total as usize, headers_len as usize);
    if crc32fast::hash(&bytes[..8]) != prelude_crc {
        return Err(FrameError::Malformed);
    }
    if total > MAX_MESSAGE || total < PRELUDE + headers_len + TRAILER {
        return Err(FrameError::Malformed);
    }
    let Some(whole) = bytes.get(..total) else {
        return Err(FrameError::Cut);
    };
    let (body, crc) = whole.split_at(total - TRAILER);
    if be32(crc, 0) != Some(crc32fast::hash(body)) {
        return Err(FrameError::Malformed);
    }
    let headers = &body[PRELUDE..PRELUDE + headers_len];
    let payload = &body[PRELUDE + headers_len..];
    let mut message = Message {
        event_type: None,
        message_type: None,
        payload,
    };
    for (name, value) in header_strings(headers)? {
        match name {
            b":event-type" => message.event_type = Some(value),
            b":message-type" => message.message_type = Some(value),
            _ => {}
        }
    }
    Ok((message, total))
}

/// The first `n` bytes of `block`, which then starts after them.
fn take<'a>(block: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
    let taken = block.get(..n).ok_or(FrameError::Malformed)?;
    *block = &block[n..];
    Ok(taken)
}

/// The string-valued headers of a header block (other types skipped).
fn header_strings(mut block: &[u8]) -> Result<Vec<(&[u8], String)>, FrameError> {
    let mut out = Vec::new();
    while !block.is_empty() {
        let name_len = usize::from(take(&mut block, 1)?[0]);
        let name = take(&mut block, name_len)?;
        let kind = take(&mut block, 1)?[0];
        let fixed = match kind {
            0 | 1 => 0, // true, false
            2 => 1,     // byte
            3 => 2,     // short
            4 => 4,     // integer
            5 | 8 => 8, // long, timestamp
            9 => 16,    // UUID
            6 | 7 => {
                // bytes, string: a 2-byte length first
                let len = take(&mut block, 2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let value = take(&mut block, len)?;
                if kind == 7 {
                    out.push((name, String::from_utf8_lossy(value).into_owned()));
                }
                continue;
            }
            _ => return Err(FrameError::Malformed),
        };
        take(&mut block, fixed)?;
    }
    Ok(out)
}

/// Frames one message (tests and fuzz seeds): string headers, payload.
#[cfg(any(test, feature = "fuzzing"))]
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(7);
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + block.len() + payload.len() + TRAILER;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        frame(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    #[test]
    fn messages_are_read_with_their_event_types() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event("metadata", r#"{"usage":{"inputTokens":5}}"#));
        let (messages, err) = messages(&bytes);
        assert_eq!(err, None);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].event_type.as_deref(), Some("metadata"));
        assert_eq!(messages[1].message_type.as_deref(), Some("event"));
        assert_eq!(messages[1].payload, br#"{"usage":{"inputTokens":5}}"#);
    }

    #[test]
    fn a_cut_or_damaged_message_ends_the_reading() {
        let first = event("messageStart", "{}");
        let second = event("metadata", r#"{"usage":{}}"#);
        let mut bytes = [first.clone(), second.clone()].concat();
        bytes.truncate(bytes.len() - 3);
        let (kept, err) = messages(&bytes);
        assert_eq!((kept.len(), err), (1, Some(FrameError::Cut)));
        let mut damaged = [first.clone(), second].concat();
        let last = damaged.len() - 6;
        damaged[last] ^= 1;
        assert_eq!(
            messages(&damaged).1,
            Some(FrameError::Malformed),
            "message CRC"
        );
        let mut prelude = first.clone();
        prelude[3] ^= 1;
        assert_eq!(
            messages(&prelude).1,
            Some(FrameError::Malformed),
            "prelude CRC"
        );
        // A prelude claiming more than the format allows.
        let mut huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(messages(&huge).1, Some(FrameError::Malformed));
        assert_eq!(messages(&first[..5]).1, Some(FrameError::Cut));
    }

    #[test]
    fn headers_of_every_type_are_walked() {
        // byte, short, integer, long, bytes, timestamp, UUID, then a string.
        let mut block = Vec::new();
        for (kind, len) in [
            (2u8, 1),
            (3, 2),
            (4, 4),
            (5, 8),
            (8, 8),
            (9, 16),
            (0, 0),
            (1, 0),
        ] {
            block.extend_from_slice(&[1, b'x', kind]);
            block.extend(std::iter::repeat_n(0, len));
        }
        block.extend_from_slice(&[1, b'b', 6, 0, 2, 0xff, 0xfe]);
        block.extend_from_slice(&[11]);
        block.extend_from_slice(b":event-type");
        block.extend_from_slice(&[7, 0, 3]);
        block.extend_from_slice(b"end");
        let strings = header_strings(&block).unwrap();
        assert_eq!(strings, [(&b":event-type"[..], "end".to_owned())]);
        assert_eq!(header_strings(&[1, b'x', 42]), Err(FrameError::Malformed));
        assert_eq!(header_strings(&[5, b'x']), Err(FrameError::Malformed));
    }
}
