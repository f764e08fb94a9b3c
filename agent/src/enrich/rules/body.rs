//! From kept body bytes to JSON documents: chunked framing removed, gzip
//! decoded (within the same byte limit), a `text/event-stream` split into
//! its events. Pure; the bytes are dropped by the caller afterwards.
use std::io::Read as _;

use serde_json::Value;

use super::error::RuleError;
use crate::protocols::http1::exchange::BodyBytes;

/// The documents of a body: one for JSON, one per `data:` event of a
/// stream (non-JSON events such as `[DONE]` are skipped). Errors say why
/// nothing could be read; a stream with some malformed events yields the
/// others and the error.
pub fn documents(body: &BodyBytes, limit: usize) -> (Vec<Value>, Option<RuleError>) {
    let mut text = if body.chunked {
        dechunk(&body.bytes)
    } else {
        body.bytes.clone()
    };
    let mut complete = body.complete;
    if body.gzip {
        match gunzip(&text, limit) {
            Ok((plain, cut)) => {
                text = plain;
                complete &= !cut;
            }
            Err(err) => return (Vec::new(), Some(err)),
        }
    }
    if complete && text.trim_ascii().is_empty() {
        return (Vec::new(), None); // no body: no documents, and no error
    }
    if body.event_stream {
        return events(&text, complete);
    }
    match serde_json::from_slice(&text) {
        Ok(value) => (vec![value], None),
        Err(_) if !complete => (Vec::new(), Some(RuleError::Truncated)),
        Err(_) => (Vec::new(), Some(RuleError::MalformedJson)),
    }
}

/// The data of a chunked body, as far as it is there.
pub fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    loop {
        let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&bytes[..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return out;
        };
        if size == 0 {
            return out;
        }
        let data = &bytes[line_end + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size || data.len() < size + 2 {
            return out;
        }
        bytes = &data[size + 2..];
    }
}

/// The decoded bytes (at most `limit`), and whether they were cut short.
fn gunzip(bytes: &[u8], limit: usize) -> Result<(Vec<u8>, bool), RuleError> {
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(bytes);
    match decoder.take(limit as u64).read_to_end(&mut out) {
        Ok(_) => {
            let cut = out.len() == limit;
            Ok((out, cut))
        }
        // A stream cut short still yields what was decoded so far.
        Err(_) if !out.is_empty() => Ok((out, true)),
        Err(_) => Err(RuleError::Gzip),
    }
}

fn events(text: &[u8], complete: bool) -> (Vec<Value>, Option<RuleError>) {
    let text = String::from_utf8_lossy(text);
    let mut docs = Vec::new();
    let mut error = None;
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    if !complete && blocks.len() > 1 {
        blocks.pop(); // the last event may be cut short
    }
    for block in blocks {
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect();
        if data.is_empty() {
            continue;
        }
        let data = data.join("\n");
        if !data.starts_with('{') {
            continue; // `[DONE]` and other non-object events
        }
        match serde_json::from_str(&data) {
            Ok(value) => docs.push(value),
            Err(_) => error = Some(RuleError::MalformedJson),
        }
    }
    if docs.is_empty() && error.is_none() && !complete {
        error = Some(RuleError::Truncated);
    }
    (docs, error)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn body(bytes: &[u8]) -> BodyBytes {
        BodyBytes::whole(bytes)
    }

    #[test]
    fn json_and_its_errors() {
        let (docs, err) = documents(&body(br#"{"usage": {"input_tokens": 5}}"#), 1024);
        assert_eq!(docs.len(), 1);
        assert_eq!(err, None);
        let (docs, err) = documents(&body(b"{not json"), 1024);
        assert!(docs.is_empty());
        assert_eq!(err, Some(RuleError::MalformedJson));
        let mut cut = body(br#"{"usage": {"input"#);
        cut.complete = false;
        assert_eq!(documents(&cut, 1024).1, Some(RuleError::Truncated));
    }

    #[test]
    fn chunked_framing_is_removed() {
        assert_eq!(
            dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"),
            b"{\"a\":1}"
        );
        assert_eq!(dechunk(b"a;ext=1\r\n0123456789\r\n"), b"0123456789");
        assert_eq!(dechunk(b"10\r\nshort"), b"short", "cut short");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }

    #[test]
    fn gzip_is_decoded_within_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(br#"{"usage": {"output_tokens": 9}}"#)
            .unwrap();
        let mut gz = body(&encoder.finish().unwrap());
        gz.gzip = true;
        let (docs, err) = documents(&gz, 1024);
        assert_eq!(err, None);
        assert_eq!(docs[0]["usage"]["output_tokens"], 9);
        assert_eq!(documents(&gz, 10).1, Some(RuleError::Truncated), "limit");
        let mut bad = body(b"not gzip at all");
        bad.gzip = true;
        assert_eq!(documents(&bad, 1024).1, Some(RuleError::Gzip));
    }

    #[test]
    fn event_streams_yield_their_json_events() {
        let mut stream = body(
            b"event: message_start\ndata: {\"message\": {\"usage\": {\"input_tokens\": 12}}}\n\n\
              data: {\"delta\": \"hi\"}\n\ndata: [DONE]\n\n",
        );
        stream.event_stream = true;
        let (docs, err) = documents(&stream, 1024);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 2);
        stream.bytes.extend_from_slice(b"data: {broken\n\n");
        let (docs, err) = documents(&stream, 1024);
        assert_eq!((docs.len(), err), (2, Some(RuleError::MalformedJson)));
    }
}
