//! From kept body bytes to JSON documents: chunked framing removed, gzip
//! decoded (within the same byte limit), a `text/event-stream` split into
//! its events. Pure; the bytes are dropped by the caller afterwards.
use std::io::Read;

use serde_json::Value;

use super::error::RuleError;
use crate::protocols::http1::{
    exchange::BodyBytes,
    head::Encoding,
    sse::{Event, Splitter},
};

/// The documents of a body: one per JSON value (one for a JSON body; one
/// per line of newline-delimited JSON, as Ollama streams), one per `data:`
/// event of a `text/event-stream` (non-JSON events such as `[DONE]` are
/// skipped). Errors say why nothing more could be read; a stream with a
/// malformed or cut value yields the values before it and the error.
pub fn documents(body: &BodyBytes, limit: usize) -> (Vec<Value>, Option<RuleError>) {
    let (text, complete) = match plain(body, limit) {
        Ok(plain) => plain,
        Err(err) => return (Vec::new(), Some(err)),
    };
    if complete && text.trim_ascii().is_empty() {
        return (Vec::new(), None); // no body: no documents, and no error
    }
    if body.event_stream {
        return events(&text, complete);
    }
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_slice(&text).into_iter::<Value>() {
        match value {
            Ok(value) => docs.push(value),
            Err(_) if !complete => return (docs, Some(RuleError::Truncated)),
            Err(_) => return (docs, Some(RuleError::MalformedJson)),
        }
    }
    (docs, None)
}

/// A body's bytes without its chunked framing and content coding (at most
/// `limit` decoded bytes), and whether they are all of it.
pub fn plain(body: &BodyBytes, limit: usize) -> Result<(Vec<u8>, bool), RuleError> {
    let text = if body.chunked {
        dechunk(&body.bytes)
    } else {
        body.bytes.clone()
    };
    if body.encoding == Encoding::Identity {
        return Ok((text, body.complete));
    }
    match decode(&text, body.encoding, limit) {
        Ok((plain, cut)) => Ok((plain, body.complete && !cut)),
        // A body seen only in part may fail to decode for that alone.
        Err(_) if !body.complete => Err(RuleError::Truncated),
        Err(err) => Err(err),
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

/// Largest Zstandard window accepted (a frame asking for more is not
/// decoded): what the compression levels of HTTP servers use, and a bound
/// on the decoder's memory.
const MAX_ZSTD_WINDOW: u64 = 8 << 20;
/// Brotli's input buffer.
const BROTLI_BUFFER: usize = 4096;

/// `bytes` decoded from content coding `encoding` (at most `limit` bytes),
/// and whether they were cut short. Brotli's window is at most 16 MiB by
/// its format; Zstandard's is held to `MAX_ZSTD_WINDOW`.
fn decode(bytes: &[u8], encoding: Encoding, limit: usize) -> Result<(Vec<u8>, bool), RuleError> {
    match encoding {
        Encoding::Identity => Ok((bytes.to_vec(), false)),
        Encoding::Gzip => read_decoded(flate2::read::MultiGzDecoder::new(bytes), limit),
        // zlib-wrapped as the standard says, else raw as some servers send.
        Encoding::Deflate => read_decoded(flate2::read::ZlibDecoder::new(bytes), limit)
            .or_else(|_| read_decoded(flate2::read::DeflateDecoder::new(bytes), limit)),
        Encoding::Brotli => read_decoded(
            brotli_decompressor::Decompressor::new(bytes, BROTLI_BUFFER),
            limit,
        ),
        Encoding::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                bytes,
                MAX_ZSTD_WINDOW,
            )
            .map_err(|_| RuleError::Encoding)?;
            read_decoded(decoder, limit)
        }
        Encoding::Unsupported => Err(RuleError::Encoding),
    }
}

/// What `decoder` yields, up to `limit` bytes, and whether that was cut
/// short (by the limit, or by the end of a body captured in part).
fn read_decoded(decoder: impl Read, limit: usize) -> Result<(Vec<u8>, bool), RuleError> {
    let mut out = Vec::new();
    match decoder.take(limit as u64).read_to_end(&mut out) {
        Ok(_) => {
            let cut = out.len() == limit;
            Ok((out, cut))
        }
        // A stream cut short still yields what was decoded so far.
        Err(_) if !out.is_empty() => Ok((out, true)),
        Err(_) => Err(RuleError::Encoding),
    }
}

/// The JSON events of a `text/event-stream` (split by [`Splitter`]). An
/// event not ended when the body is cut short is dropped; at the end of a
/// whole body it counts.
fn events(text: &[u8], complete: bool) -> (Vec<Value>, Option<RuleError>) {
    let mut docs = Vec::new();
    let mut error = None;
    let mut dispatch = |event: Event| {
        if !event.data.trim_start().starts_with('{') {
            return; // `[DONE]` and other non-object events
        }
        match serde_json::from_str(&event.data) {
            Ok(value) => docs.push(value),
            Err(_) => error = Some(RuleError::MalformedJson),
        }
    };
    let mut splitter = Splitter::new(text.len());
    splitter.feed(text, &mut dispatch);
    if complete {
        splitter.finish(&mut dispatch);
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
    fn newline_delimited_json_is_a_document_per_value() {
        let lines =
            b"{\"done\": false}\n{\"done\": false}\r\n\n{\"done\": true, \"eval_count\": 9}\n";
        let (docs, err) = documents(&body(lines), 1024);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2]["eval_count"], 9);
        let (docs, err) = documents(&body(b"{\"a\": 1}\n{broken"), 1024);
        assert_eq!((docs.len(), err), (1, Some(RuleError::MalformedJson)));
        let mut cut = body(b"{\"a\": 1}\n{\"b\"");
        cut.complete = false;
        let (docs, err) = documents(&cut, 1024);
        assert_eq!((docs.len(), err), (1, Some(RuleError::Truncated)));
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
        gz.encoding = Encoding::Gzip;
        let (docs, err) = documents(&gz, 1024);
        assert_eq!(err, None);
        assert_eq!(docs[0]["usage"]["output_tokens"], 9);
        assert_eq!(documents(&gz, 10).1, Some(RuleError::Truncated), "limit");
        let mut bad = body(b"not gzip at all");
        bad.encoding = Encoding::Gzip;
        assert_eq!(documents(&bad, 1024).1, Some(RuleError::Encoding));
    }

    /// `{"text": "lorem ipsum " x 50, "usage": {"output_tokens": 9}}` (643
    /// bytes) compressed by Python's `brotli` and `zstandard`.
    const BROTLI: &str = "1b8202a014a1d2a1dc96ea73d9505c2b2683e0501ca63170c881f3978569a1699149\
        d2a2e524d70026f679d3b56e7c57a589eddd4c89190dbc04d2ab00";
    const ZSTD: &str = "28b52ffd608301fd010074037b2274657874223a20226c6f72656d20697073756d20222c\
        20227573616765223a207b226f75747075745f746f6b656e73223a20397d7d010092bc2a4d";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn every_content_coding_is_decoded_within_the_limit() {
        let plain = format!(
            r#"{{"text": "{}", "usage": {{"output_tokens": 9}}}}"#,
            "lorem ipsum ".repeat(50)
        );
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(plain.as_bytes()).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(plain.as_bytes()).unwrap();
        for (encoding, bytes) in [
            (Encoding::Deflate, zlib.finish().unwrap()),
            (Encoding::Deflate, raw.finish().unwrap()),
            (Encoding::Brotli, unhex(BROTLI)),
            (Encoding::Zstd, unhex(ZSTD)),
        ] {
            let mut compressed = body(&bytes);
            compressed.encoding = encoding;
            let (docs, err) = documents(&compressed, 4096);
            assert_eq!(err, None, "{encoding:?}");
            assert_eq!(docs[0]["usage"]["output_tokens"], 9, "{encoding:?}");
            let (_, err) = documents(&compressed, 100);
            assert_eq!(
                err,
                Some(RuleError::Truncated),
                "{encoding:?} past the limit"
            );
            let mut cut = body(&bytes[..bytes.len() / 2]);
            cut.encoding = encoding;
            cut.complete = false;
            assert_eq!(
                documents(&cut, 4096).1,
                Some(RuleError::Truncated),
                "{encoding:?} cut"
            );
            let mut garbage = body(b"\xff\xfe not compressed at all");
            garbage.encoding = encoding;
            assert_eq!(
                documents(&garbage, 4096).1,
                Some(RuleError::Encoding),
                "{encoding:?}"
            );
        }
        let mut unknown = body(b"{}");
        unknown.encoding = Encoding::Unsupported;
        assert_eq!(documents(&unknown, 4096).1, Some(RuleError::Encoding));
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

    #[test]
    fn event_stream_lines_end_in_crlf_lf_or_cr() {
        let mut stream = body(
            b"data: {\"a\": 1}\r\n\r\ndata: {\"b\":\r\ndata: 2}\r\rdata:{\"c\": 3}\n\n: comment\n\ndata: {\"d\": 4}",
        );
        stream.event_stream = true;
        let (docs, err) = documents(&stream, 1024);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 4, "{docs:?}");
        assert_eq!(docs[1]["b"], 2, "data lines joined");
        assert_eq!(docs[3]["d"], 4, "a whole body's last event counts");
        stream.complete = false;
        assert_eq!(documents(&stream, 1024).0.len(), 3, "a cut one does not");
    }
}
