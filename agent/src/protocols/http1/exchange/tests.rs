//! Table tests of the connection state machine, fed the way the probes
//! capture: every read and write from its start, and the end of a write
//! longer than that.
use super::*;
use crate::protocols::http1::auth::AuthType;

const CAP: usize = loupe_common::event::CAPTURE_MAX;
const TAIL: usize = loupe_common::event::CAPTURE_TAIL;

/// Drives one connection like the probes would.
struct Wire {
    conn: HttpConn,
    auth: AuthConfig,
    /// Bodies kept for every request.
    wants: BodyWants,
    /// Later writes copied from their start too (a raised capture level).
    full_writes: bool,
    ts: u64,
    out: Vec<Outcome>,
}

impl Wire {
    fn new() -> Self {
        Self::with(HttpConn::new(false))
    }

    fn with(conn: HttpConn) -> Self {
        Self {
            conn,
            auth: AuthConfig::default(),
            wants: BodyWants::default(),
            full_writes: false,
            ts: 0,
            out: Vec::new(),
        }
    }

    fn at(&mut self, ms: u64) -> &mut Self {
        self.ts = ms * 1_000_000;
        self
    }

    fn read(&mut self, bytes: &[u8]) -> &mut Self {
        let rx = Transfer::new(self.ts, bytes.len() as u64, &bytes[..bytes.len().min(CAP)]);
        let out = &mut self.out;
        let wants = self.wants;
        let bodies = move |_: &Method, _: &str| wants;
        let config = ParseConfig {
            auth: &self.auth,
            bodies: &bodies,
        };
        self.conn
            .on_request_bytes(&rx, &config, &mut |o| out.push(o));
        self
    }

    fn write(&mut self, bytes: &[u8]) -> &mut Self {
        let out = &mut self.out;
        let first = if self.full_writes { 8 * CAP } else { CAP };
        let head = &bytes[..bytes.len().min(first)];
        let tail = if bytes.len() > first {
            &bytes[bytes.len() - TAIL..]
        } else {
            &[]
        };
        let tx = Transfer::ends(self.ts, bytes.len() as u64, head, tail);
        self.conn.on_response_bytes(&tx, &mut |o| out.push(o));
        self
    }

    fn close(&mut self) -> &mut Self {
        let out = &mut self.out;
        self.conn.on_close(self.ts, &mut |o| out.push(o));
        self
    }

    fn exchanges(&self) -> Vec<(String, String, Option<u16>)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Outcome::Exchange(e) => {
                    Some((e.method.as_str().to_owned(), e.path.clone(), e.status))
                }
                _ => None,
            })
            .collect()
    }

    fn only(&self) -> &Exchange {
        let all: Vec<&Exchange> = self
            .out
            .iter()
            .filter_map(|o| match o {
                Outcome::Exchange(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(all.len(), 1, "{:?}", self.out);
        all[0]
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn ex(method: &str, path: &str, status: u16) -> (String, String, Option<u16>) {
    (method.to_owned(), path.to_owned(), Some(status))
}

#[test]
fn keep_alive_requests_with_lengths_and_times() {
    let mut w = Wire::new();
    w.at(10).read(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    w.at(15).write(&ok("hello"));
    w.at(20).read(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    w.at(90)
        .write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(w.exchanges(), [ex("GET", "/a", 200), ex("GET", "/b", 404)]);
    let Outcome::Exchange(second) = &w.out[1] else {
        panic!()
    };
    assert_eq!(second.end_ns - second.start_ns, 70_000_000);
}

#[test]
fn heads_split_across_reads_and_writes() {
    let mut w = Wire::new();
    w.at(1).read(b"POST /login HT");
    w.at(2).read(b"TP/1.1\r\nContent-Le");
    w.at(3).read(b"ngth: 4\r\n\r\n{}");
    w.at(4).read(b"{}");
    assert!(w.out.is_empty());
    w.at(5).write(b"HTTP/1.1 401 Unauthorized\r\n");
    // The head continues in the next write: the response ends with its
    // body, without waiting for the next request.
    w.at(6).write(b"Content-Length: 2\r\n\r\nno");
    let e = w.only();
    assert_eq!(
        (e.method, e.path.as_str(), e.status),
        (Method::Post, "/login", Some(401))
    );
    assert_eq!(
        (e.start_ns, e.first_byte_ns, e.end_ns),
        (1_000_000, 6_000_000, 6_000_000)
    );
}

#[test]
fn a_response_head_continued_in_a_tail_keeps_its_status() {
    let mut w = Wire::new();
    w.read(b"GET / HTTP/1.1\r\n\r\n");
    w.at(1)
        .write(b"HTTP/1.1 503 Service Unavailable\r\nContent-");
    w.at(2).write(b"Length: 0\r\n\r\n");
    w.at(3).read(b"GET /next HTTP/1.1\r\n\r\n");
    assert_eq!(w.exchanges(), [ex("GET", "/", 503)]);
}

#[test]
fn bodies_are_skipped_by_length_however_large() {
    let mut w = Wire::new();
    let upload = vec![b'x'; 100_000];
    w.read(b"PUT /files/1 HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
    w.read(&upload[..60_000]).read(&upload[60_000..]);
    w.write(b"HTTP/1.1 201 Created\r\nContent-Length: 70000\r\n\r\n");
    w.write(&vec![b'y'; 70_000]);
    w.read(b"DELETE /files/1 HTTP/1.1\r\n\r\n");
    w.write(&ok(""));
    assert_eq!(
        w.exchanges(),
        [ex("PUT", "/files/1", 201), ex("DELETE", "/files/1", 200)]
    );
}

#[test]
fn pipelined_requests_in_one_read() {
    let mut w = Wire::new();
    w.read(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    let mut responses = ok("a");
    responses.extend(ok("bb"));
    w.write(&responses);
    // The third response is a later write, read from its start too.
    w.write(&ok("ccc"));
    assert_eq!(
        w.exchanges(),
        [
            ex("GET", "/1", 200),
            ex("GET", "/2", 200),
            ex("POST", "/3", 200)
        ]
    );
}

#[test]
fn pipelined_responses_one_write_each_or_one_byte_at_a_time() {
    let mut w = Wire::new();
    let requests: Vec<u8> = (1..=5)
        .flat_map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes())
        .collect();
    w.read(&requests);
    for i in 1..=3 {
        w.write(&ok(&"x".repeat(i)));
    }
    // The fourth response one byte per write, the fifth with its status
    // line split after `HTTP/1.1 2`.
    for byte in ok("four") {
        w.write(&[byte]);
    }
    let fifth = ok("five");
    w.write(&fifth[..10]).write(&fifth[10..]);
    let expected: Vec<_> = (1..=5).map(|i| ex("GET", &format!("/{i}"), 200)).collect();
    assert_eq!(w.exchanges(), expected);
}

#[test]
fn early_hints_in_their_own_write_or_with_the_final_response() {
    let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    let mut w = Wire::new();
    w.at(1).read(b"GET /a HTTP/1.1\r\n\r\n");
    w.at(2).write(hints).at(5).write(&ok("page"));
    let mut both = hints.to_vec();
    both.extend(ok("page"));
    w.at(6).read(b"GET /b HTTP/1.1\r\n\r\n");
    w.at(7).write(&both);
    assert_eq!(w.exchanges(), [ex("GET", "/a", 200), ex("GET", "/b", 200)]);
    let Outcome::Exchange(first) = &w.out[0] else {
        panic!("{:?}", w.out)
    };
    assert_eq!(first.end_ns, 5_000_000);
}

#[test]
fn a_chunked_end_split_across_writes_ends_the_response_at_its_last_byte() {
    // Node.js: head and chunk size, CRLF, body, CRLF, last chunk; here the
    // last chunk in two writes, then the connection stays idle.
    let mut w = Wire::new();
    w.at(1).read(b"GET /n HTTP/1.1\r\n\r\n");
    w.at(2)
        .write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n");
    assert!(w.out.is_empty());
    w.at(3).write(b"\r\n");
    assert_eq!(w.only().end_ns, 3_000_000);
    // Trailers, written a line at a time.
    w.at(4).read(b"GET /t HTTP/1.1\r\n\r\n");
    w.at(5)
        .write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .write(b"3\r\nabc\r\n")
        .write(b"0\r\n")
        .write(b"X-Checksum: 1\r\n")
        .at(6)
        .write(b"\r\n");
    assert_eq!(w.exchanges().len(), 2);
    let Outcome::Exchange(second) = &w.out[1] else {
        panic!("{:?}", w.out)
    };
    assert_eq!(second.end_ns, 6_000_000);
}

#[test]
fn a_chunked_body_that_lost_its_framing_ends_at_a_split_terminator() {
    // Two chunks in one large write: the second size line falls in the gap
    // between the write's captured start and end.
    let mut w = Wire::new();
    w.at(1).read(b"GET /big HTTP/1.1\r\n\r\n");
    let mut big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        big.extend(b"bb8\r\n");
        big.extend(vec![b'z'; 3000]);
        big.extend(b"\r\n");
    }
    w.at(2).write(&big).write(b"0\r\n");
    assert!(w.out.is_empty());
    w.at(3).write(b"\r\n");
    assert_eq!(w.only().end_ns, 3_000_000);
}

#[test]
fn expect_100_continue() {
    let mut w = Wire::new();
    w.at(1)
        .read(b"POST /upload HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    w.at(2).write(b"HTTP/1.1 100 Continue\r\n\r\n");
    w.at(3).read(b"abc");
    w.at(4).write(&ok("done"));
    let e = w.only();
    assert_eq!(e.status, Some(200));
    assert_eq!(
        e.first_byte_ns, 4_000_000,
        "the final response's first byte"
    );
}

#[test]
fn streamed_chunked_response_gives_first_byte_and_end() {
    let mut w = Wire::new();
    w.at(0).read(b"GET /stream HTTP/1.1\r\n\r\n");
    w.at(20).write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for ms in [60, 100, 150] {
        w.at(ms).write(b"e\r\ndata: token\r\n\r\n\r\n");
    }
    assert!(w.out.is_empty());
    w.at(200).write(b"0\r\n\r\n");
    let e = w.only();
    assert_eq!(e.first_byte_ns, 60_000_000, "the first chunk, not the head");
    assert_eq!(e.end_ns, 200_000_000);
}

#[test]
fn chunked_response_in_one_write_with_a_request_after_it() {
    let mut w = Wire::new();
    w.read(b"GET /c HTTP/1.1\r\n\r\n");
    w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(w.exchanges(), [ex("GET", "/c", 200)]);
    // A large chunked write: its end is found in the extra tail record.
    w.read(b"GET /big HTTP/1.1\r\n\r\n");
    let mut big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".to_vec();
    big.extend(vec![b'z'; 0x1000]);
    big.extend(b"\r\n0\r\n\r\n");
    w.write(&big);
    assert_eq!(w.exchanges().len(), 2);
}

#[test]
fn head_204_304_and_responses_ended_by_close() {
    let mut w = Wire::new();
    w.read(b"HEAD /h HTTP/1.1\r\n\r\n");
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    w.read(b"GET /nc HTTP/1.1\r\n\r\n");
    w.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n");
    w.read(b"DELETE /d HTTP/1.1\r\n\r\n");
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n");
    w.read(b"GET /old HTTP/1.0\r\n\r\n");
    w.at(7)
        .write(b"HTTP/1.0 200 OK\r\n\r\n")
        .at(9)
        .write(b"body until close");
    assert_eq!(w.exchanges().len(), 3);
    w.close();
    assert_eq!(
        w.exchanges(),
        [
            ex("HEAD", "/h", 200),
            ex("GET", "/nc", 304),
            ex("DELETE", "/d", 204),
            ex("GET", "/old", 200)
        ]
    );
    assert_eq!(
        w.out.last().map(|o| match o {
            Outcome::Exchange(e) => e.end_ns,
            _ => 0,
        }),
        Some(9_000_000)
    );
}

#[test]
fn websocket_upgrade_is_counted_then_parsing_stops() {
    let mut w = Wire::new();
    w.read(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    w.read(b"\x81\x85binaryframe")
        .write(b"\x81\x05hello")
        .read(b"GET /x HTTP/1.1\r\n\r\n");
    assert_eq!(w.exchanges(), [ex("GET", "/ws", 101)]);
    assert!(!w.conn.is_parsing());
}

#[test]
fn other_protocols_are_reported_once() {
    for (bytes, why) in [
        (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], Unparsed::Http2),
        (&b"\x16\x03\x01\x00\xa5\x01\x00"[..], Unparsed::Tls),
        (
            &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
            Unparsed::UnknownProtocol,
        ),
    ] {
        let mut w = Wire::new();
        w.read(bytes).write(b"whatever").read(bytes);
        assert_eq!(w.out, [Outcome::Unparsed(why)]);
    }
    let mut w = Wire::new();
    w.read(b"GET / HTTP/1.1\r\n\r\n")
        .write(&ok(""))
        .read(b"GET / HTTP/9\x00\r\n\r\n");
    assert_eq!(
        w.out.last(),
        Some(&Outcome::Unparsed(Unparsed::MalformedHttp))
    );
}

#[test]
fn a_request_sent_byte_by_byte_is_recognised() {
    let mut w = Wire::new();
    for byte in b"GET /slowly HTTP/1.1\r\nHost: h\r\n\r\n" {
        w.read(&[*byte]);
    }
    w.write(&ok("done"));
    assert_eq!(w.exchanges(), [ex("GET", "/slowly", 200)]);
    let mut w = Wire::new();
    for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        w.read(&[*byte]);
    }
    assert_eq!(w.out, [Outcome::Unparsed(Unparsed::Http2)]);
}

#[test]
fn a_connection_picked_up_mid_stream_finds_the_next_request() {
    let mut w = Wire::with(HttpConn::new(true));
    w.read(b"ody of a request we missed\"}").write(&ok("late"));
    w.read(b"GET /after HTTP/1.1\r\n\r\n").write(&ok("x"));
    assert_eq!(w.exchanges(), [ex("GET", "/after", 200)]);
}

#[test]
fn heads_longer_than_the_capture_keep_their_request_line() {
    let mut w = Wire::new();
    let mut request = b"GET /big-cookie HTTP/1.1\r\nCookie: ".to_vec();
    request.extend(vec![b'c'; 5000]);
    request.extend(b"\r\n\r\n");
    w.read(&request).write(&ok("1"));
    w.read(b"GET /next HTTP/1.1\r\n\r\n").write(&ok("2"));
    assert_eq!(
        w.exchanges(),
        [ex("GET", "/big-cookie", 200), ex("GET", "/next", 200)]
    );
}

#[test]
fn the_agents_own_requests_are_not_counted() {
    let mut w = Wire::new();
    w.read(b"GET /openapi.json HTTP/1.1\r\nUser-Agent: loupe/0.1.0\r\n\r\n")
        .write(&ok("{}"));
    w.read(b"GET /x HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n")
        .write(&ok(""));
    let e = w.only();
    assert_eq!((e.path.as_str(), e.auth.kind), ("/x", AuthType::Bearer));
}

#[test]
fn slowloris_stays_bounded() {
    let mut w = Wire::new();
    w.read(b"GET /slow HTTP/1.1\r\n");
    for _ in 0..20_000 {
        w.read(b"X");
    }
    assert!(
        w.conn.buffered() <= 2 * MAX_HEAD + 64,
        "{}",
        w.conn.buffered()
    );
    assert!(w.out.is_empty() || w.exchanges().is_empty());
}

#[test]
fn idle_open_ended_responses_expire() {
    let mut w = Wire::new();
    w.at(1).read(b"GET /x HTTP/1.1\r\n\r\n");
    w.at(2).write(b"HTTP/1.1 200 OK\r\n\r\n");
    let out = &mut w.out;
    w.conn.expire(1_000_000, &mut |o| out.push(o));
    assert!(w.out.is_empty(), "written after the cut-off");
    let out = &mut w.out;
    w.conn.expire(3_000_000, &mut |o| out.push(o));
    assert_eq!(w.exchanges(), [ex("GET", "/x", 200)]);
}

#[test]
fn arbitrary_input_never_panics_and_stays_bounded() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n",
        b"\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"Content-Length: 3\r\n",
        b"\xff\x00garbage",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ];
    for _ in 0..300 {
        let mut w = Wire::new();
        for _ in 0..40 {
            let mut bytes = Vec::new();
            for _ in 0..(next() % 4) {
                bytes.extend_from_slice(pieces[(next() % 8) as usize]);
            }
            match next() % 4 {
                0 | 1 => w.read(&bytes),
                2 => w.write(&bytes),
                _ => w.close(),
            };
            assert!(w.conn.buffered() <= 2 * MAX_HEAD + 64);
        }
    }
}

#[test]
fn bodies_are_kept_for_rules_within_their_limit() {
    let mut wire = Wire::new();
    wire.wants = BodyWants {
        request: 64,
        response: 64,
        rule: None,
        live: false,
    };
    wire.full_writes = true;
    let form = br#"{"username":"alice","password":"pw","provider":"github"}"#;
    let mut request = format!(
        "POST /auth/login HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        form.len()
    )
    .into_bytes();
    request.extend_from_slice(form);
    wire.at(0).read(&request);
    // Head, then the body in two writes (as uvicorn writes them).
    wire.at(5)
        .write(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n")
        .write(b"{\"usage\": ")
        .write(b"{\"n\": 1}}");
    let x = wire.only();
    let kept = x.request_body.as_ref().unwrap();
    assert_eq!(kept.bytes, form);
    assert!(kept.complete);
    let kept = x.response_body.as_ref().unwrap();
    assert_eq!(kept.bytes, br#"{"usage": {"n": 1}}"#);
    assert!(kept.complete);

    // Past the limit: the request body cut short; the response's chunked
    // framing kept as written.
    let mut wire = Wire::new();
    wire.wants = BodyWants {
        request: 4,
        response: 64,
        rule: None,
        live: false,
    };
    wire.at(0).read(&request);
    wire.at(5)
        .write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .write(b"5\r\nhello\r\n")
        .write(b"0\r\n\r\n");
    let x = wire.only();
    assert_eq!(x.request_body.as_ref().unwrap().bytes, b"{\"us");
    assert!(!x.request_body.as_ref().unwrap().complete);
    let kept = x.response_body.as_ref().unwrap();
    assert!(kept.chunked && kept.complete, "{kept:?}");
    assert_eq!(kept.bytes, b"5\r\nhello\r\n0\r\n\r\n");

    // Nothing is kept where no rule asks.
    let mut wire = Wire::new();
    wire.at(0).read(&request);
    wire.at(5).write(&ok("{}"));
    assert_eq!(wire.only().request_body, None);
    assert_eq!(wire.only().response_body, None);
}

#[test]
fn a_request_without_a_body_keeps_an_empty_one_for_rules() {
    let mut w = Wire::new();
    w.wants = BodyWants {
        request: 64,
        response: 64,
        rule: None,
        live: false,
    };
    w.read(b"POST /auth/refresh HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n");
    let e = w.only();
    for kept in [&e.request_body, &e.response_body] {
        let kept = kept.as_ref().expect("kept");
        assert!(kept.bytes.is_empty() && kept.complete, "{kept:?}");
    }
}

#[test]
fn a_transfer_is_its_first_bytes_a_gap_and_its_last_bytes() {
    let t = Transfer::ends(0, 10, b"abc", b"xy");
    assert_eq!(t.at(0), (&b"abc"[..], 3));
    assert_eq!(t.at(2), (&b"c"[..], 3));
    assert_eq!(t.at(3), (&b""[..], 8));
    assert_eq!(t.at(8), (&b"xy"[..], 10));
    assert_eq!(t.at(9), (&b"y"[..], 10));
    // Captured bytes beyond the length are ignored.
    let odd = Transfer::new(0, 2, b"abcd");
    assert_eq!(odd.at(0), (&b"ab"[..], 2));
    // Pieces anywhere (an HTTP/2 connection's frames).
    let pieces: [(u64, &[u8]); 2] = [(0, b"ab"), (5, b"cde")];
    let t = Transfer {
        pieces: &pieces,
        ..Transfer::new(0, 12, &[])
    };
    assert_eq!(t.start(), b"ab");
    assert_eq!(t.at(1), (&b"b"[..], 2));
    assert_eq!(t.at(2), (&b""[..], 5));
    assert_eq!(t.at(6), (&b"de"[..], 8));
    assert_eq!(t.at(8), (&b""[..], 12));
}

#[test]
fn any_number_of_headers_keeps_the_body_framing() {
    // 100 custom headers before Content-Length: the body is skipped by its
    // length, not read as the next request, and the same for a response.
    let custom: String = (0..100).map(|i| format!("X-Custom-{i}: {i}\r\n")).collect();
    let body = "GET /not-a-request HTTP/1.1\r\n\r\n";
    let mut w = Wire::new();
    w.read(
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\n{custom}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    w.write(
        format!(
            "HTTP/1.1 201 Created\r\n{custom}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    w.read(b"GET /next HTTP/1.1\r\n\r\n").write(&ok("n"));
    assert_eq!(
        w.exchanges(),
        [ex("POST", "/upload", 201), ex("GET", "/next", 200)]
    );
}

/// A chunk of chunked coding.
fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

#[test]
fn a_live_event_stream_yields_its_events_as_they_are_written() {
    let mut w = Wire::new();
    w.wants = BodyWants {
        response: 256,
        live: true,
        ..BodyWants::default()
    };
    w.read(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
    w.at(1).write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    );
    w.at(2).write(&chunk(
        "event: endpoint\r\ndata: /messages/?session_id=1\r\n\r\n",
    ));
    w.at(3).write(&chunk(": ping\r\n\r\n"));
    // One event over two chunks, the second written one byte at a time.
    w.at(4).write(&chunk("event: message\r\ndata: {\"id\":"));
    for byte in chunk("1}\r\n\r\n") {
        w.at(5).write(&[byte]);
    }
    // A chunk larger than the capture: its event is lost, the next is read.
    let big = format!("data: {}\r\n\r\n", "x".repeat(CAP * 2));
    w.at(6).write(&chunk(&big));
    w.at(7).write(&chunk("data: {\"id\":2}\r\n\r\n"));
    w.at(8).write(b"0\r\n\r\n");
    let streamed: Vec<(u64, String, String)> = w
        .out
        .iter()
        .filter_map(|o| match o {
            Outcome::Streamed(Streamed::Event { ts, event }) => {
                Some((ts / 1_000_000, event.name.clone(), event.data.clone()))
            }
            _ => None,
        })
        .collect();
    let expected = [
        (2, "endpoint", "/messages/?session_id=1"),
        (5, "message", "{\"id\":1}"),
        (7, "", "{\"id\":2}"),
    ]
    .map(|(ms, name, data)| (ms, name.to_owned(), data.to_owned()));
    assert_eq!(streamed, expected);
    let ends: Vec<&Outcome> = w
        .out
        .iter()
        .filter(|o| matches!(o, Outcome::Streamed(Streamed::End { .. })))
        .collect();
    assert_eq!(ends, [&Outcome::Streamed(Streamed::End { ts: 8_000_000 })]);
    // The exchange follows, with nothing kept of its body.
    assert_eq!(w.only().response_body, None);
    assert_eq!(w.conn.buffered(), 0);
}

#[test]
fn only_an_event_stream_is_read_live() {
    let mut w = Wire::new();
    w.wants = BodyWants {
        response: 256,
        live: true,
        ..BodyWants::default()
    };
    w.read(b"GET /sse HTTP/1.1\r\n\r\n")
        .write(&ok("data: x\n\n"));
    assert!(!w.out.iter().any(|o| matches!(o, Outcome::Streamed(_))));
    assert!(w.only().response_body.is_some());
}

#[test]
fn a_call_the_close_left_unanswered_ends_without_a_status() {
    let mut w = Wire::with(HttpConn::calling());
    w.wants = BodyWants {
        request: 64,
        ..BodyWants::default()
    };
    w.at(1)
        .read(b"POST /messages?s=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    w.at(9).close();
    let call = w.only();
    assert_eq!(
        (call.status, call.start_ns, call.end_ns),
        (None, 1_000_000, 9_000_000)
    );
    assert_eq!(
        call.request_body.as_ref().map(|b| &b.bytes[..]),
        Some(&b"{}"[..])
    );
    assert!(call.query_key.is_some());
    // Served, the same is an abandoned request.
    let mut w = Wire::new();
    w.read(b"GET / HTTP/1.1\r\n\r\n").close();
    assert!(matches!(w.out[..], [Outcome::Abandoned { .. }]));
}

#[test]
fn a_live_stream_whose_framing_fell_in_a_gap_still_ends() {
    let mut w = Wire::new();
    w.wants = BodyWants {
        response: 256,
        live: true,
        ..BodyWants::default()
    };
    w.read(b"GET /sse HTTP/1.1\r\n\r\n");
    w.at(1).write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    );
    w.at(2).write(&chunk("data: 1\n\n"));
    // A size line past the capture: the stream is no longer read.
    let mut lost = chunk(&"x".repeat(CAP * 2));
    lost.extend(chunk("data: 2\n\n"));
    lost.extend(chunk(&"y".repeat(TAIL * 2)));
    w.at(3).write(&lost);
    w.at(4).write(&chunk("data: 3\n\n"));
    w.at(5).write(b"0\r\n\r\n");
    let streamed: Vec<&Streamed> = w
        .out
        .iter()
        .filter_map(|o| match o {
            Outcome::Streamed(s) => Some(s),
            _ => None,
        })
        .collect();
    let first = Streamed::Event {
        ts: 2_000_000,
        event: Event {
            name: String::new(),
            data: "1".into(),
        },
    };
    assert_eq!(streamed, [&first, &Streamed::End { ts: 5_000_000 }]);
    assert_eq!(w.exchanges(), [ex("GET", "/sse", 200)]);
}
