//! The connections whose bytes the probes capture, each with its parsing
//! state, keyed by `(process, connection id)` rather than by fd, so that
//! other sources of plaintext (TLS uprobes) can feed the same parsers.
//! Bounded in count and in buffered bytes; idle connections are forgotten.
use std::collections::HashMap;

use loupe_common::{
    event::{
        DATA_CONTINUED, DATA_FRAMES, DATA_MORE, DATA_OUTBOUND, DATA_SAME_SYSCALL, DATA_TAIL,
        DIR_RX, DIR_TX, DataHeader,
    },
    maps::{CONN_SEEDED, CONN_TLS},
};

use super::records;
use crate::protocols::{
    Command, Context, Direction, Observation, Pool, Protocol, Sink, Transfer, WellKnown,
    detect::Connection,
    http1::{
        auth::AuthConfig,
        exchange::{BodyWants, Outcome, ParseConfig},
        head::Method,
    },
    inbound,
};

/// Which bodies route rules want, by service, method and path.
pub type BodyPolicy<'a> = &'a dyn Fn(u32, &Method, &str) -> BodyWants;

/// What the parsers need from the configuration.
#[derive(Clone, Copy)]
pub struct Parsing<'a> {
    /// Requests served: how their authentication is read.
    pub auth: &'a AuthConfig,
    /// Requests served: which bodies route rules want.
    pub bodies: BodyPolicy<'a>,
    /// HTTP calls the services make.
    pub calls: &'a ParseConfig<'a>,
}

/// What the parsers found, by service, and what they asked of the probes
/// for the connection of the record being fed.
#[derive(Debug, Default)]
pub struct Findings {
    pub observations: Vec<(u32, Observation)>,
    pub commands: Vec<Command>,
}

/// The findings of one service's connection.
struct Of<'a> {
    service: u32,
    /// The connection's id (`StreamKey::conn`).
    conn: u64,
    /// The connection carries OpenSSL's plaintext: its exchanges say so.
    tls: bool,
    findings: &'a mut Findings,
}

impl Sink for Of<'_> {
    fn observe(&mut self, mut observation: Observation) {
        match &mut observation {
            Observation::Served(Outcome::Exchange(exchange)) | Observation::Call(exchange) => {
                exchange.tls = self.tls;
            }
            Observation::Streamed { conn, .. } => *conn = self.conn,
            _ => {}
        }
        self.findings.observations.push((self.service, observation));
    }

    fn command(&mut self, command: Command) {
        self.findings.commands.push(command);
    }
}

/// Open client connections of one service in one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCount {
    pub open: i64,
    /// Those with a statement in flight or a transaction open.
    pub busy: i64,
}

/// Connections followed at once; beyond, the least recently active are
/// dropped. With at most `2 * MAX_HEAD` bytes of partial heads each, this
/// bounds the parsers' memory (64 MiB under a deliberate slowloris flood).
pub const MAX_STREAMS: usize = 4_096;
/// A response with no visible end is closed after this long without a write.
const RESPONSE_IDLE_NS: u64 = 60_000_000_000;
/// A connection without traffic for this long is forgotten.
const STREAM_IDLE_NS: u64 = 600_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub tgid: u32,
    pub conn: u64,
}

struct Stream {
    service: u32,
    /// OpenSSL's plaintext (`CONN_TLS`).
    tls: bool,
    proto: Box<dyn Protocol>,
    last_ns: u64,
    /// A syscall whose records are still arriving (`DATA_MORE`).
    partial: Option<Syscall>,
}

/// One syscall's records joined: its first bytes (several pieces under a
/// capture budget, or the pieces of its HTTP/2 frames) and its last bytes.
struct Syscall {
    head: DataHeader,
    first: Vec<u8>,
    last: Vec<u8>,
}

impl Stream {
    /// Hands one syscall's captured bytes to the parser: `bytes` from its
    /// start, `last` from its end (when `bytes` does not reach it).
    fn feed(
        &mut self,
        head: &DataHeader,
        bytes: &[u8],
        last: &[u8],
        parsing: &Parsing<'_>,
        findings: &mut Findings,
    ) {
        let dir = match head.dir {
            DIR_RX => Direction::Received,
            DIR_TX => Direction::Sent,
            _ => return,
        };
        let (ts, len) = (head.header.ts_ns, head.len);
        let pieces;
        let transfer = if head.flags & DATA_FRAMES != 0 {
            // Pieces found by following HTTP/2 frames (none if the probe
            // lost them): what lies between was not needed.
            pieces = records::pieces(bytes, len).unwrap_or_default();
            Transfer {
                pieces: &pieces,
                ..Transfer::new(ts, len, &[])
            }
        } else {
            Transfer::ends(ts, len, bytes, last)
        };
        let service = self.service;
        let bodies = |method: &Method, path: &str| (parsing.bodies)(service, method, path);
        let context = Context {
            served: ParseConfig {
                auth: parsing.auth,
                bodies: &bodies,
            },
            calls: *parsing.calls,
        };
        let mut sink = Of {
            service,
            conn: head.conn,
            tls: self.tls,
            findings,
        };
        self.proto.on_bytes(dir, &transfer, &context, &mut sink);
    }
}

#[derive(Default)]
pub struct Streams {
    streams: HashMap<StreamKey, Stream>,
    /// Streams dropped because the table was full.
    pub evicted: u64,
}

impl Streams {
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Drops the least recently active eighth of the table (in one pass,
    /// so that a flood of new connections costs amortised constant time).
    fn evict_oldest(&mut self) {
        let mut ages: Vec<(u64, StreamKey)> =
            self.streams.iter().map(|(k, s)| (s.last_ns, *k)).collect();
        let cut = (ages.len() / 8).max(1);
        ages.select_nth_unstable(cut - 1);
        for (_, key) in &ages[..cut] {
            self.streams.remove(key);
        }
        self.evicted += cut as u64;
    }

    /// One data record; `findings` receives what its parser found.
    pub fn on_data(
        &mut self,
        head: &DataHeader,
        bytes: &[u8],
        parsing: &Parsing<'_>,
        findings: &mut Findings,
    ) {
        let key = StreamKey {
            tgid: head.header.tgid,
            conn: head.conn,
        };
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&key) {
            self.evict_oldest();
        }
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            service: head.service,
            tls: key.conn & CONN_TLS != 0,
            proto: if head.flags & DATA_OUTBOUND != 0 {
                Box::new(Connection::opened())
            } else {
                inbound(head.conn & CONN_SEEDED != 0)
            },
            last_ns: head.header.ts_ns,
            partial: None,
        });
        stream.last_ns = head.header.ts_ns;
        if !stream.proto.is_parsing() {
            return;
        }
        let more = head.flags & DATA_MORE != 0;
        if head.flags & (DATA_CONTINUED | DATA_SAME_SYSCALL) != 0 {
            // A later record of the syscall in `partial`: the next piece of
            // its start, or its end.
            let Some(partial) = &mut stream.partial else {
                if head.flags & DATA_TAIL != 0 {
                    // Its first record was lost: the end alone.
                    stream.feed(head, &[], bytes, parsing, findings);
                }
                return;
            };
            if head.flags & DATA_TAIL != 0 {
                partial.last = bytes.to_vec();
            } else {
                partial.first.extend_from_slice(bytes);
            }
            if !more && let Some(done) = stream.partial.take() {
                stream.feed(&done.head, &done.first, &done.last, parsing, findings);
            }
            return;
        }
        if let Some(cut) = stream.partial.take() {
            // The rest of that syscall was lost: parse what arrived.
            stream.feed(&cut.head, &cut.first, &cut.last, parsing, findings);
        }
        if more {
            stream.partial = Some(Syscall {
                head: *head,
                first: bytes.to_vec(),
                last: Vec::new(),
            });
            return;
        }
        stream.feed(head, bytes, &[], parsing, findings);
    }

    /// A connection the service opened before loupe attached, to a server
    /// whose port is `known`'s: counted in the pool gauges from now, parsed
    /// as that protocol when bytes come (unless they say otherwise).
    pub fn seed_client(
        &mut self,
        key: StreamKey,
        service: u32,
        known: &'static WellKnown,
        now_ns: u64,
    ) {
        if self.streams.len() >= MAX_STREAMS {
            return;
        }
        self.streams.entry(key).or_insert_with(|| Stream {
            service,
            tls: key.conn & CONN_TLS != 0,
            proto: Box::new(Connection::Seeded(known)),
            last_ns: now_ns,
            partial: None,
        });
    }

    /// The connection's fd was closed at `ts`: what never got an answer
    /// ends with it.
    pub fn on_close(&mut self, key: StreamKey, ts: u64, findings: &mut Findings) {
        let Some(mut stream) = self.streams.remove(&key) else {
            return;
        };
        let mut sink = Of {
            service: stream.service,
            conn: key.conn,
            tls: stream.tls,
            findings,
        };
        stream.proto.on_close(ts, &mut sink);
    }

    /// Open client connections per service and pool. A connection
    /// encrypted at the socket by a process whose plaintext is seen
    /// (`plaintext_seen`: its OpenSSL is hooked) counts through its TLS
    /// stream only.
    pub fn pool_counts(
        &self,
        plaintext_seen: impl Fn(u32) -> bool,
    ) -> HashMap<(u32, Pool), PoolCount> {
        let mut counts: HashMap<(u32, Pool), PoolCount> = HashMap::new();
        for (key, stream) in &self.streams {
            let Some(used) = stream.proto.pool() else {
                continue;
            };
            if used.encrypted && key.conn & CONN_TLS == 0 && plaintext_seen(key.tgid) {
                continue;
            }
            let count = counts.entry((stream.service, used.pool)).or_default();
            count.open += 1;
            count.busy += i64::from(used.busy);
        }
        counts
    }

    /// A process exited: its connections closed with it.
    pub fn forget_process(&mut self, tgid: u32, ts: u64, findings: &mut Findings) {
        let keys: Vec<StreamKey> = self
            .streams
            .keys()
            .filter(|k| k.tgid == tgid)
            .copied()
            .collect();
        for key in keys {
            self.on_close(key, ts, findings);
        }
    }

    /// Ends responses and forgets connections that went quiet (`now_ns` is
    /// monotonic, like the probes' timestamps).
    pub fn expire(&mut self, now_ns: u64, findings: &mut Findings) {
        let response_cut = now_ns.saturating_sub(RESPONSE_IDLE_NS);
        let stream_cut = now_ns.saturating_sub(STREAM_IDLE_NS);
        self.streams.retain(|key, stream| {
            let mut sink = Of {
                service: stream.service,
                conn: key.conn,
                tls: stream.tls,
                findings: &mut *findings,
            };
            stream.proto.expire(response_cut, &mut sink);
            // An idle pooled connection to Redis or a database stays (it
            // counts in the pool gauges until it closes).
            stream.last_ns >= stream_cut || stream.proto.pool().is_some()
        });
    }
}

/// Monotonic nanoseconds, on the probes' clock (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use loupe_common::event::{Header, KIND_DATA};

    use super::*;
    use crate::protocols::http1::exchange::Outcome;

    fn record(tgid: u32, conn: u64, dir: u16, ts: u64, len: usize) -> DataHeader {
        DataHeader {
            header: Header {
                kind: KIND_DATA,
                tgid,
                ts_ns: ts,
            },
            conn,
            len: len as u64,
            fd: 3,
            service: 2,
            dir,
            flags: 0,
            captured: len as u32,
        }
    }

    fn feed(
        streams: &mut Streams,
        tgid: u32,
        conn: u64,
        dir: u16,
        ts: u64,
        bytes: &[u8],
    ) -> Vec<(u32, Observation)> {
        feed_record(streams, &record(tgid, conn, dir, ts, bytes.len()), bytes)
    }

    /// Feeds one record with no bodies wanted; calls keep their `Host`.
    fn feed_record(
        streams: &mut Streams,
        head: &DataHeader,
        bytes: &[u8],
    ) -> Vec<(u32, Observation)> {
        let none = |_: u32, _: &Method, _: &str| BodyWants::default();
        with_bodies(&none, |parsing| {
            let mut found = Findings::default();
            streams.on_data(head, bytes, parsing, &mut found);
            found.observations
        })
    }

    fn with_bodies<T>(bodies: BodyPolicy<'_>, run: impl FnOnce(&Parsing<'_>) -> T) -> T {
        let auth = AuthConfig::default();
        let calls_auth = AuthConfig {
            label_headers: vec!["host".into()],
            ..AuthConfig::default()
        };
        let no_body = |_: &Method, _: &str| BodyWants::default();
        run(&Parsing {
            auth: &auth,
            bodies,
            calls: &ParseConfig {
                auth: &calls_auth,
                bodies: &no_body,
            },
        })
    }

    #[test]
    fn calls_the_service_makes_are_parsed_from_the_other_end() {
        let mut streams = Streams::default();
        let mut write = record(1, 5, DIR_TX, 100, 0);
        write.flags = DATA_OUTBOUND;
        let request = b"GET /v1/models HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer sk-secret\r\n\r\n";
        write.len = request.len() as u64;
        assert!(feed_record(&mut streams, &write, request).is_empty());
        let response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        let mut read = record(1, 5, DIR_RX, 350, response.len());
        read.flags = DATA_OUTBOUND;
        let out = feed_record(&mut streams, &read, response);
        let [(2, Observation::Call(call))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((call.method.as_str(), call.status), ("GET", Some(404)));
        assert_eq!((call.start_ns, call.end_ns), (100, 350));
        assert_eq!(call.headers, [("host".into(), "api.example.com".into())]);
    }

    #[test]
    fn keeps_connections_apart_and_reports_their_service() {
        let mut streams = Streams::default();
        let request = b"GET /a HTTP/1.1\r\n\r\n";
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(feed(&mut streams, 1, 10, DIR_RX, 1, request).is_empty());
        assert!(feed(&mut streams, 1, 11, DIR_RX, 2, request).is_empty());
        assert!(
            feed(&mut streams, 2, 10, DIR_TX, 3, response).is_empty(),
            "another process"
        );
        let out = feed(&mut streams, 1, 11, DIR_TX, 4, response);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 2);
        assert_eq!(streams.len(), 3);
    }

    #[test]
    fn close_exit_and_idle_forget_connections() {
        let mut streams = Streams::default();
        feed(&mut streams, 1, 1, DIR_RX, 1, b"GET / HTTP/1.0\r\n\r\n");
        feed(&mut streams, 1, 1, DIR_TX, 2, b"HTTP/1.0 200 OK\r\n\r\n");
        feed(&mut streams, 1, 2, DIR_RX, 1, b"GET / HTTP/1.1\r\n\r\n");
        feed(&mut streams, 3, 3, DIR_RX, 1, b"GET / HTTP/1.1\r\n\r\n");
        let mut found = Findings::default();
        streams.on_close(StreamKey { tgid: 1, conn: 1 }, 9, &mut found);
        assert_eq!(
            found.observations.len(),
            1,
            "the response ran until the close"
        );
        streams.forget_process(1, 9, &mut found);
        assert_eq!(streams.len(), 1);
        streams.expire(STREAM_IDLE_NS + 10, &mut found);
        assert!(streams.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut streams = Streams::default();
        for conn in 0..(MAX_STREAMS as u64 + 10) {
            feed(&mut streams, 1, conn, DIR_RX, conn, b"GET / HTTP/1.1\r\n");
        }
        assert!(streams.len() <= MAX_STREAMS);
        assert_eq!(
            streams.len() as u64 + streams.evicted,
            MAX_STREAMS as u64 + 10
        );
        // The newest connections are the ones kept.
        assert!(streams.streams.contains_key(&StreamKey {
            tgid: 1,
            conn: MAX_STREAMS as u64 + 9
        }));
    }

    #[test]
    fn a_long_write_is_its_start_a_gap_and_its_end() {
        // A 6 KiB chunked response in one write: its first bytes and, in a
        // second record, its last ones, where the body ends.
        let mut streams = Streams::default();
        let request = b"GET /big HTTP/1.1\r\n\r\n";
        assert!(feed(&mut streams, 1, 1, DIR_RX, 1, request).is_empty());
        let mut write = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..2 {
            write.extend(b"bb8\r\n");
            write.extend(vec![b'z'; 3000]);
            write.extend(b"\r\n");
        }
        write.extend(b"0\r\n\r\n");
        let mut head = record(1, 1, DIR_TX, 2, write.len());
        head.flags = DATA_MORE;
        assert!(feed_record(&mut streams, &head, &write[..2048]).is_empty());
        head.flags = DATA_SAME_SYSCALL | DATA_TAIL;
        let out = feed_record(&mut streams, &head, &write[write.len() - 16..]);
        let [(2, Observation::Served(Outcome::Exchange(exchange)))] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((exchange.status, exchange.end_ns), (Some(200), 2));
    }

    #[test]
    fn a_write_copied_in_pieces_is_parsed_whole() {
        let mut streams = Streams::default();
        let wants = |_: u32, _: &Method, _: &str| BodyWants {
            request: 0,
            response: 8192,
            rule: None,
            live: false,
        };
        let mut found = Findings::default();
        let mut send = |head: DataHeader, bytes: &[u8]| {
            with_bodies(&wants, |parsing| {
                streams.on_data(&head, bytes, parsing, &mut found);
            });
        };
        send(record(1, 1, DIR_RX, 1, 20), b"POST /x HTTP/1.1\r\n\r\n");
        let body = format!("{{\"text\": \"{}\", \"usage\": 1}}", "a".repeat(3000));
        let write = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (first, rest) = write.as_bytes().split_at(2048);
        let mut head = record(1, 1, DIR_TX, 2, write.len());
        head.flags = DATA_MORE;
        send(head, first);
        head.flags = DATA_CONTINUED;
        send(head, rest);
        let out = found.observations;
        assert_eq!(out.len(), 1);
        let Observation::Served(Outcome::Exchange(exchange)) = &out[0].1 else {
            panic!("{out:?}")
        };
        let kept = exchange.response_body.as_ref().unwrap();
        assert!(kept.complete);
        assert_eq!(kept.bytes, body.as_bytes());
    }
}
