//! Parsing request and response heads (start line and headers) into the few
//! facts the metrics need. Pure; header values other than those listed here
//! are never kept.
use std::{
    hash::{BuildHasher, RandomState},
    num::NonZeroU64,
    sync::OnceLock,
};

use super::auth::{Auth, AuthConfig, classify};

/// Headers looked at; a head with more is parsed from its start line only.
const MAX_HEADERS: usize = 64;
/// Longest path kept (longer ones are cut; the endpoint budget does the rest).
const MAX_PATH: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Trace,
    Connect,
    Other,
}

impl Method {
    pub fn parse(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "OPTIONS" => Self::Options,
            "TRACE" => Self::Trace,
            "CONNECT" => Self::Connect,
            _ => Self::Other,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Connect => "CONNECT",
            Self::Other => "OTHER",
        }
    }
}

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// The HTTP version a request was made in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    #[default]
    Http11,
    Http2,
}

impl Version {
    /// As OpenTelemetry's `network.protocol.version` writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "1.0",
            Self::Http11 => "1.1",
            Self::Http2 => "2",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub version: Version,
    /// The path, without query string or fragment.
    pub path: String,
    /// The query, as a key (see [`query_key`]).
    pub query_key: Option<NonZeroU64>,
    pub framing: Framing,
    /// The client asks to switch protocols (WebSocket).
    pub upgrade: bool,
    /// To HTTP/2 without TLS (`Upgrade: h2c`): the answer to this request
    /// comes as HTTP/2 stream 1 after a `101`.
    pub h2c: bool,
    pub auth: Auth,
    /// `User-Agent: loupe/...`: the agent's own request, never counted.
    pub from_loupe: bool,
    /// Values of the headers route rules read (`AuthConfig::label_headers`),
    /// lower-case name first; nothing else of the headers is kept.
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Framing as the headers say (the request method refines it).
    pub framing: Framing,
    /// `Content-Encoding`.
    pub encoding: Encoding,
    /// `Content-Type: text/event-stream`.
    pub event_stream: bool,
    /// The error type a header names (AWS's `x-amzn-errortype`).
    pub error_type: Option<String>,
}

/// Outcome of parsing a buffer that starts with a head.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head and its length in bytes.
    Complete(T, usize),
    /// More bytes are needed.
    Partial,
    /// Not an HTTP/1.x head.
    Invalid,
}

/// A keyed hash of the query of a request target or URI (none without
/// one): a request is matched to the session its query names (MCP's
/// HTTP+SSE transport) while the query itself, which may hold secrets, is
/// never kept. The key is drawn once per process.
pub fn query_key(target: &str) -> Option<NonZeroU64> {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let target = target.split('#').next().unwrap_or(target);
    let (_, query) = target.split_once('?')?;
    if query.is_empty() {
        return None;
    }
    let hash = KEY.get_or_init(RandomState::new).hash_one(query);
    NonZeroU64::new(hash).or(NonZeroU64::new(1))
}

fn path_of(target: &str) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let mut path = &target[..end];
    // Absolute form (`http://host/path`), as proxies receive it.
    if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        path = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    let mut cut = path.len().min(MAX_PATH);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    path[..cut].to_owned()
}

fn has_token(value: &[u8], token: &str) -> bool {
    String::from_utf8_lossy(value)
        .split(',')
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// A body's content coding (`Content-Encoding`), as far as loupe decodes
/// it: one coding; several stacked, or one loupe does not know, cannot be
/// read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Identity,
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped (some servers send it raw).
    Deflate,
    Brotli,
    Zstd,
    Unsupported,
}

impl Encoding {
    /// From a `Content-Encoding` value.
    pub fn parse(value: &[u8]) -> Self {
        let value = String::from_utf8_lossy(value);
        let mut codings = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        let Some(coding) = codings.next() else {
            return Self::Identity;
        };
        if codings.next().is_some() {
            return Self::Unsupported;
        }
        match coding.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Self::Gzip,
            "deflate" => Self::Deflate,
            "br" => Self::Brotli,
            "zstd" => Self::Zstd,
            _ => Self::Unsupported,
        }
    }
}

/// Body framing and connection facts from headers (shared by both sides).
#[derive(Default)]
struct Common {
    length: Option<u64>,
    chunked: bool,
    upgrade: bool,
    h2c: bool,
    encoding: Encoding,
    event_stream: bool,
    error_type: Option<String>,
}

/// Longest header value kept for a route rule.
const MAX_HEADER_VALUE: usize = 128;

/// How a response's body is encoded, from its header fields: its content
/// coding, whether it is an event stream, and the error type a header
/// names (for HTTP/2, whose fields are not a head).
pub fn body_encoding(headers: &[httparse::Header<'_>]) -> (Encoding, bool, Option<String>) {
    let common = common(headers);
    (common.encoding, common.event_stream, common.error_type)
}

/// The error type of AWS's `x-amzn-errortype` header
/// (`ThrottlingException:http://internal.amazon.com/coral/...`): its first
/// part, if it is a word of at most 64 characters.
fn aws_error_type(value: &[u8]) -> Option<String> {
    let word = value.split(|&b| b == b':').next()?.trim_ascii();
    (!word.is_empty()
        && word.len() <= 64
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b)))
    .then(|| String::from_utf8_lossy(word).into_owned())
}

fn common(headers: &[httparse::Header<'_>]) -> Common {
    let mut out = Common::default();
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            out.length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = has_token(header.value, "chunked");
        } else if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade = true;
            out.h2c = has_token(header.value, "h2c");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            out.encoding = Encoding::parse(header.value);
        } else if name.eq_ignore_ascii_case("x-amzn-errortype") {
            out.error_type = aws_error_type(header.value);
        } else if name.eq_ignore_ascii_case("content-type") {
            out.event_stream = header
                .value
                .trim_ascii_start()
                .get(..17)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"));
        }
    }
    out
}

pub fn parse_request(buf: &[u8], auth: &AuthConfig) -> Parsed<RequestHead> {
    with_headers(buf, |headers| request_with(buf, auth, headers))
}

/// Runs `parse` with room for 64 headers, and again with room for as many
/// as `buf` has lines when that was too few: any number of headers within
/// the head's bound (`MAX_HEAD`) is read, so the framing headers are found
/// wherever they are.
fn with_headers<'b, T>(
    buf: &'b [u8],
    parse: impl Fn(&mut [httparse::Header<'b>]) -> Result<Parsed<T>, httparse::Error>,
) -> Parsed<T> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse(&mut headers) {
        Err(httparse::Error::TooManyHeaders) => {
            let lines = buf.iter().filter(|&&b| b == b'\n').count();
            let mut many = vec![httparse::EMPTY_HEADER; lines + 1];
            parse(&mut many).unwrap_or(Parsed::Invalid)
        }
        result => result.unwrap_or(Parsed::Invalid),
    }
}

fn request_with<'b>(
    buf: &'b [u8],
    auth: &AuthConfig,
    headers: &mut [httparse::Header<'b>],
) -> Result<Parsed<RequestHead>, httparse::Error> {
    let mut request = httparse::Request::new(headers);
    let len = match request.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let mut head = request_head(
        request.method.unwrap_or_default(),
        request.path.unwrap_or("/"),
        request.headers,
        auth,
    );
    if request.version == Some(0) {
        head.version = Version::Http10;
    }
    Ok(Parsed::Complete(head, len))
}

/// A request from its method, its target and its header fields (read from
/// an HTTP/1 head, or decoded from an HTTP/2 header block).
pub fn request_head(
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    auth: &AuthConfig,
) -> RequestHead {
    let common = common(headers);
    let from_loupe = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("user-agent") && h.value.starts_with(b"loupe/"));
    let framing = if common.chunked {
        Framing::Chunked
    } else {
        common.length.map_or(Framing::None, Framing::Length)
    };
    RequestHead {
        method: Method::parse(method),
        version: Version::Http11,
        path: path_of(target),
        query_key: query_key(target),
        framing,
        upgrade: common.upgrade,
        h2c: common.h2c,
        auth: classify(headers, auth),
        from_loupe,
        headers: label_headers(headers, &auth.label_headers),
    }
}

/// The values of the allowlisted headers, cut to a bounded length.
fn label_headers(headers: &[httparse::Header<'_>], wanted: &[String]) -> Vec<(String, String)> {
    if wanted.is_empty() {
        return Vec::new();
    }
    headers
        .iter()
        .filter_map(|h| {
            let name = wanted.iter().find(|w| h.name.eq_ignore_ascii_case(w))?;
            let value = String::from_utf8_lossy(h.value.trim_ascii());
            let mut cut = value.len().min(MAX_HEADER_VALUE);
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            Some((name.clone(), value[..cut].to_owned()))
        })
        .collect()
}

/// What the start of a head that was cut short (not captured in full)
/// says: its request line and the header lines captured whole (a `Host`
/// or `Authorization` near the top is still read). Its framing is not
/// known: a `Content-Length` may be among the lines not seen, so the
/// caller treats the body as unknown whatever this reports.
pub fn parse_request_start(buf: &[u8], auth: &AuthConfig) -> Option<RequestHead> {
    let line = parse_request_line(buf)?;
    let Some(lines_end) = buf.windows(2).rposition(|w| w == b"\r\n") else {
        return Some(line);
    };
    let mut whole = buf[..lines_end + 2].to_vec();
    whole.extend_from_slice(b"\r\n");
    match parse_request(&whole, auth) {
        Parsed::Complete(head, _) => Some(head),
        _ => Some(line),
    }
}

/// The request line alone: method and path, nothing else known.
fn parse_request_line(buf: &[u8]) -> Option<RequestHead> {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = std::str::from_utf8(&buf[..line_end]).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method.is_empty() || !method.chars().all(token) || !version.starts_with("HTTP/1.") {
        return None;
    }
    Some(RequestHead {
        method: Method::parse(method),
        version: if version == "HTTP/1.0" {
            Version::Http10
        } else {
            Version::Http11
        },
        path: path_of(target),
        query_key: query_key(target),
        framing: Framing::None,
        upgrade: false,
        h2c: false,
        auth: Auth::default(),
        from_loupe: false,
        headers: Vec::new(),
    })
}

pub fn parse_response(buf: &[u8]) -> Parsed<ResponseHead> {
    with_headers(buf, |headers| response_with(buf, headers))
}

fn response_with<'b>(
    buf: &'b [u8],
    headers: &mut [httparse::Header<'b>],
) -> Result<Parsed<ResponseHead>, httparse::Error> {
    let mut response = httparse::Response::new(headers);
    let len = match response.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(Parsed::Partial),
    };
    let status = response.code.unwrap_or(0);
    let common = common(response.headers);
    let framing = if common.chunked {
        Framing::Chunked
    } else {
        common.length.map_or(Framing::Close, Framing::Length)
    };
    Ok(Parsed::Complete(
        ResponseHead {
            status,
            framing,
            encoding: common.encoding,
            event_stream: common.event_stream,
            error_type: common.error_type,
        },
        len,
    ))
}

/// The status code of a status line that was cut short.
pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Bytes too few to tell whether they start a request: a method's letters
/// so far, perhaps with its space (a client writing its head in pieces).
pub fn could_start_request(bytes: &[u8]) -> bool {
    let token = bytes.strip_suffix(b" ").unwrap_or(bytes);
    bytes.len() < 16 && !token.is_empty() && token.iter().all(u8::is_ascii_uppercase)
}

/// Whether bytes at the start of a connection look like an HTTP/1.x request.
pub fn looks_like_request(buf: &[u8]) -> bool {
    let Some(space) = buf.iter().take(24).position(|&b| b == b' ') else {
        return false;
    };
    space > 0
        && buf[..space].iter().all(u8::is_ascii_uppercase)
        && matches!(buf.get(space + 1), Some(b'/' | b'*' | b'h'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http1::auth::AuthType;

    fn request(text: &str) -> Parsed<RequestHead> {
        parse_request(text.as_bytes(), &AuthConfig::default())
    }

    #[test]
    fn a_head_cut_short_keeps_the_header_lines_captured_whole() {
        let auth = AuthConfig {
            label_headers: vec!["host".to_owned()],
            ..AuthConfig::default()
        };
        let cut = b"POST /x?k=v HTTP/1.1\r\nHost: api.example\r\nX-Many: 1\r\nX-Ma";
        let head = parse_request_start(cut, &auth).expect("a request line");
        assert_eq!((head.method, head.path.as_str()), (Method::Post, "/x"));
        assert_eq!(
            head.headers,
            [("host".to_owned(), "api.example".to_owned())]
        );
        // The request line alone, cut inside a header name or not.
        let head = parse_request_start(b"GET /y HTTP/1.1\r\nHo", &auth).expect("line");
        assert_eq!((head.path.as_str(), head.headers.len()), ("/y", 0));
        assert!(parse_request_start(b"GET /y HTTP/1.1", &auth).is_some());
        assert!(parse_request_start(b"\x16\x03\x01", &auth).is_none());
    }

    #[test]
    fn parses_a_request_head() {
        let text = "POST /api/v1/agents/planner/invoke?debug=1 HTTP/1.1\r\nHost: x\r\n\
                    Content-Length: 17\r\nAuthorization: Basic dTpw\r\n\r\n{\"input\":\"hello\"}";
        let Parsed::Complete(head, len) = request(text) else {
            panic!("complete expected")
        };
        assert_eq!(len, text.len() - 17);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/api/v1/agents/planner/invoke");
        assert_eq!(head.framing, Framing::Length(17));
        assert_eq!(head.auth.kind, AuthType::Basic);
        assert!(!head.from_loupe && !head.upgrade);
    }

    #[test]
    fn partial_invalid_and_truncated_heads() {
        assert_eq!(request("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert_eq!(request("\x16\x03\x01\x02\x00"), Parsed::Invalid);
        let head = parse_request_line(b"DELETE /users/42?x=1 HTTP/1.1\r\nCookie: abc").unwrap();
        assert_eq!(
            (head.method, head.path.as_str()),
            (Method::Delete, "/users/42")
        );
        assert_eq!(parse_request_line(b"hello world"), None);
        assert_eq!(parse_request_line(b"G\xffT / HTTP/1.1"), None);
    }

    #[test]
    fn framing_and_special_headers() {
        let Parsed::Complete(head, _) =
            request("PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(head.framing, Framing::Chunked);
        let Parsed::Complete(head, _) = request(
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             User-Agent: loupe/0.1.0\r\n\r\n",
        ) else {
            panic!()
        };
        assert!(head.upgrade && head.from_loupe);
        let Parsed::Complete(head, _) = request("BREW /pot HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!(head.method.as_str(), "OTHER");
    }

    #[test]
    fn paths_lose_queries_and_hosts_and_stay_short() {
        assert_eq!(path_of("/a/b?c=d#e"), "/a/b");
        assert_eq!(path_of("http://example.com/x?y"), "/x");
        assert_eq!(path_of("https://example.com"), "/");
        assert_eq!(query_key("/a?s=1#f"), query_key("http://h/b?s=1"));
        assert_ne!(query_key("/a?s=1"), query_key("/a?s=2"));
        assert_eq!(query_key("/a?"), None);
        assert_eq!(query_key("/a#x?y"), None);
        assert_eq!(path_of(&"é".repeat(300)).len(), 256);
    }

    #[test]
    fn an_aws_error_type_header_names_the_error() {
        let head = |value: &str| {
            let text =
                format!("HTTP/1.1 429 Too Many Requests\r\nx-amzn-ErrorType: {value}\r\n\r\n");
            match parse_response(text.as_bytes()) {
                Parsed::Complete(head, _) => head.error_type,
                other => panic!("{other:?}"),
            }
        };
        let coral = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/";
        assert_eq!(head(coral).as_deref(), Some("ThrottlingException"));
        assert_eq!(
            head("ValidationException").as_deref(),
            Some("ValidationException")
        );
        assert_eq!(head("not a word"), None);
        assert_eq!(head(&"x".repeat(65)), None);
    }

    #[test]
    fn parses_responses() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(text),
            Parsed::Complete(
                ResponseHead {
                    status: 200,
                    framing: Framing::Length(5),
                    encoding: Encoding::Identity,
                    event_stream: false,
                    error_type: None,
                },
                text.len() - 5
            )
        );
        let Parsed::Complete(head, _) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\
              Content-Type: Text/Event-Stream; charset=utf-8\r\n\r\n",
        ) else {
            panic!()
        };
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.encoding == Encoding::Gzip && head.event_stream);
        let Parsed::Complete(head, _) = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n") else {
            panic!()
        };
        assert_eq!((head.status, head.framing), (404, Framing::Close));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n"), Parsed::Partial);
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n"), Parsed::Invalid);
        assert_eq!(parse_status_line(b"HTTP/1.1 503 Service Unav"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 5x3"), None);
    }

    #[test]
    fn recognises_request_starts() {
        assert!(looks_like_request(b"GET / HTTP/1.1"));
        assert!(looks_like_request(b"OPTIONS * HTTP/1.1"));
        assert!(looks_like_request(b"GET http://x/ HTTP/1.1"));
        assert!(!looks_like_request(b"\x16\x03\x01"));
        assert!(!looks_like_request(b""));
        assert!(!looks_like_request(b"get / HTTP/1.1"));
    }

    #[test]
    fn content_codings() {
        let parse = |v: &str| Encoding::parse(v.as_bytes());
        assert_eq!(parse("gzip"), Encoding::Gzip);
        assert_eq!(parse(" X-GZIP "), Encoding::Gzip);
        assert_eq!(parse("br"), Encoding::Brotli);
        assert_eq!(parse("zstd"), Encoding::Zstd);
        assert_eq!(parse("Deflate"), Encoding::Deflate);
        assert_eq!(parse("identity"), Encoding::Identity);
        assert_eq!(parse(""), Encoding::Identity);
        assert_eq!(parse("identity, br"), Encoding::Brotli);
        assert_eq!(parse("gzip, br"), Encoding::Unsupported, "stacked");
        assert_eq!(parse("compress"), Encoding::Unsupported);
    }
}
