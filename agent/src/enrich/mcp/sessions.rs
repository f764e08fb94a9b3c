//! MCP's HTTP+SSE transport (protocol version 2024-11-05), which both
//! official SDKs still serve and call: the client opens a long-lived `GET`
//! event stream (`[mcp] sse_paths`), whose first event, `endpoint`, names
//! the URI to post messages to (a path and a query naming the session,
//! e.g. `/messages/?session_id=…`); each post is answered `202 Accepted`
//! and the responses come later as `message` events of the stream.
//!
//! A request is matched with its response by service, side, session and
//! id. The session is the endpoint's query as a key
//! ([`query_key`]: a keyed hash; the query itself is never kept). Either
//! may be seen first (a server may write the response before the `202`),
//! so each waits, bounded and expiring, for the other. Pure: the caller
//! feeds what the parsers saw and counts what comes out.
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    num::NonZeroU64,
};

use serde_json::Value;

use super::{
    Call,
    jsonrpc::{Message, Outcome, messages},
    requests,
};
use crate::{
    enrich::rules::eval::RuleError,
    protocols::http1::{
        exchange::{BodyWants, Exchange},
        head::{Method, query_key},
        sse::Event,
    },
};

/// Event streams followed at once.
const MAX_STREAMS: usize = 1_024;
/// Requests waiting for their response, and responses for their post.
const MAX_WAITING: usize = 4_096;
/// Message paths learned from endpoint events.
const MAX_PATHS: usize = 16;
/// A request unanswered this long is counted `unanswered` (a tool may run
/// for minutes).
const WAIT_NS: u64 = 600_000_000_000;
/// A response whose post was never seen is dropped after this long.
const EARLY_NS: u64 = 60_000_000_000;
/// A closed stream's session is still known this long: a client may close
/// it once the last answer came, before the `202` of that post is read.
const CLOSED_NS: u64 = 10_000_000_000;

/// A service's end of MCP traffic: the service, and for calls the server
/// called (the `host` label); `None` when it served.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct End {
    pub service: u32,
    pub called: Option<String>,
}

/// A request whose response was seen (or given up on).
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub end: End,
    pub call: Call,
    /// From the post's first byte to the event that answered it.
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    service: u32,
    served: bool,
    session: NonZeroU64,
    /// The request id, as a key.
    id: u64,
}

#[derive(Debug)]
struct Waiting {
    called: Option<String>,
    call: Call,
    start_ns: u64,
}

#[derive(Debug)]
struct Early {
    outcome: Outcome,
    ts: u64,
}

/// An event stream's session, when it was last heard of, and when it
/// closed.
#[derive(Clone, Copy, Debug)]
struct Stream {
    session: NonZeroU64,
    last_ns: u64,
    closed_ns: Option<u64>,
}

/// The open sessions of every service, and what waits in them.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Event streams by (service, served, connection), lately closed ones
    /// included.
    streams: HashMap<(u32, bool, u64), Stream>,
    /// Message paths endpoint events named: posts there keep their bodies.
    paths: Vec<String>,
    waiting: HashMap<Key, Waiting>,
    early: HashMap<Key, Early>,
    ids: RandomState,
}

impl Sessions {
    /// The bodies kept of a request: a post to a path an endpoint event
    /// named keeps its own (its answer is a bare `202`).
    pub fn wants(&self, method: &Method, path: &str, limit: usize) -> BodyWants {
        if *method != Method::Post || !self.paths.iter().any(|p| p == path) {
            return BodyWants::default();
        }
        BodyWants {
            request: limit,
            response: limit,
            ..BodyWants::default()
        }
    }

    /// Whether `exchange` posts to a session an event stream opened.
    pub fn is_post(&self, service: u32, served: bool, exchange: &Exchange) -> bool {
        exchange.method == Method::Post
            && exchange
                .query_key
                .is_some_and(|session| self.stream_of(service, served, session).is_some())
    }

    /// The stream of `session` on `service`'s side `served`.
    fn stream_of(&self, service: u32, served: bool, session: NonZeroU64) -> Option<&Stream> {
        self.streams
            .iter()
            .find(|&(&(s, side, _), stream)| {
                s == service && side == served && stream.session == session
            })
            .map(|(_, stream)| stream)
    }

    /// An event of stream `conn` (a `GET` on an SSE path) of `service`.
    pub fn on_event(
        &mut self,
        service: u32,
        served: bool,
        conn: u64,
        ts: u64,
        event: &Event,
        finished: &mut Vec<Finished>,
    ) {
        if event.name == "endpoint" {
            self.open(service, served, conn, ts, &event.data);
            return;
        }
        if !event.name.is_empty() && event.name != "message" {
            return;
        }
        let Some(stream) = self.streams.get_mut(&(service, served, conn)) else {
            return; // not an MCP stream, or opened before loupe attached
        };
        stream.last_ns = stream.last_ns.max(ts);
        let session = stream.session;
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        for message in messages(std::slice::from_ref(&value)) {
            let Message::Response { id, outcome } = message else {
                continue; // the server's own requests and notifications
            };
            let key = self.key(service, served, session, &id);
            match self.waiting.remove(&key) {
                Some(waiting) => finished.push(waiting.finish(service, Some(outcome), ts)),
                None if self.early.len() < MAX_WAITING => {
                    self.early.insert(key, Early { outcome, ts });
                }
                None => {}
            }
        }
    }

    /// A post `exchange` of `end` to one of its sessions (see
    /// [`Sessions::is_post`]); returns why its body could not be read.
    pub fn on_post(
        &mut self,
        end: &End,
        exchange: &Exchange,
        limit: usize,
        finished: &mut Vec<Finished>,
    ) -> Option<RuleError> {
        let session = exchange.query_key?;
        let served = end.called.is_none();
        let open = self
            .stream_of(end.service, served, session)
            .is_some_and(|stream| stream.closed_ns.is_none());
        let (posted, err) = requests(exchange.request_body.as_ref(), limit);
        let accepted = exchange.status.is_some_and(|s| (200..300).contains(&s));
        for request in posted {
            let key = self.key(end.service, served, session, &request.id);
            let waiting = Waiting {
                called: end.called.clone(),
                call: request.call,
                start_ns: exchange.start_ns,
            };
            if let Some(early) = self.early.remove(&key) {
                // Answered on the stream already (a client may close the
                // post's connection once it has the answer, unread `202`).
                finished.push(waiting.finish(end.service, Some(early.outcome), early.ts));
            } else if accepted && open && self.waiting.len() < MAX_WAITING {
                self.waiting.insert(key, waiting);
            } else {
                // Refused (an unknown session, a bad message), posted to
                // a closed stream, or no room: no answer will be seen.
                finished.push(waiting.finish(end.service, None, exchange.end_ns));
            }
        }
        err
    }

    /// Stream `conn` ended at `ts`: its session's waiting requests will not
    /// be answered (its answers already seen still find their posts).
    pub fn on_end(
        &mut self,
        service: u32,
        served: bool,
        conn: u64,
        ts: u64,
        finished: &mut Vec<Finished>,
    ) {
        let Some(stream) = self.streams.get_mut(&(service, served, conn)) else {
            return;
        };
        stream.closed_ns = Some(ts);
        let session = stream.session;
        let mine = |k: &Key| k.service == service && k.served == served && k.session == session;
        let ended: Vec<Key> = self.waiting.keys().filter(|k| mine(k)).copied().collect();
        for key in ended {
            if let Some(waiting) = self.waiting.remove(&key) {
                finished.push(waiting.finish(service, None, ts));
            }
        }
    }

    /// Gives up on requests waiting since before `now_ns - WAIT_NS`, and
    /// drops responses whose post was not seen and streams closed a while.
    pub fn expire(&mut self, now_ns: u64, finished: &mut Vec<Finished>) {
        let early_cut = now_ns.saturating_sub(EARLY_NS);
        self.early.retain(|_, e| e.ts >= early_cut);
        let closed_cut = now_ns.saturating_sub(CLOSED_NS);
        self.streams
            .retain(|_, s| s.closed_ns.is_none_or(|closed| closed >= closed_cut));
        let cut = now_ns.saturating_sub(WAIT_NS);
        let late: Vec<Key> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.start_ns < cut)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(waiting) = self.waiting.remove(&key) {
                finished.push(waiting.finish(key.service, None, now_ns));
            }
        }
    }

    /// Entries held: streams, waiting requests and early answers.
    pub fn len(&self) -> usize {
        self.streams.len() + self.waiting.len() + self.early.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint event of a stream: its session, and its path learned.
    /// With no room, the stream heard of least lately is forgotten (one
    /// whose close loupe missed goes first).
    fn open(&mut self, service: u32, served: bool, conn: u64, ts: u64, uri: &str) {
        let Some(session) = query_key(uri) else {
            return;
        };
        let key = (service, served, conn);
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&key) {
            let stalest = self.streams.iter().min_by_key(|(_, s)| s.last_ns);
            if let Some((&stalest, _)) = stalest {
                self.streams.remove(&stalest);
            }
        }
        let stream = Stream {
            session,
            last_ns: ts,
            closed_ns: None,
        };
        self.streams.insert(key, stream);
        let path = uri_path(uri);
        if self.paths.len() < MAX_PATHS && !self.paths.iter().any(|p| p == path) {
            self.paths.push(path.to_owned());
        }
    }

    fn key(&self, service: u32, served: bool, session: NonZeroU64, id: &Value) -> Key {
        Key {
            service,
            served,
            session,
            id: self.ids.hash_one(id.to_string()),
        }
    }
}

impl Waiting {
    fn finish(self, service: u32, outcome: Option<Outcome>, ts: u64) -> Finished {
        let call = self.call.ended(outcome);
        Finished {
            end: End {
                service,
                called: self.called,
            },
            seconds: ts.saturating_sub(self.start_ns) as f64 / 1e9,
            call,
        }
    }
}

/// The path of a URI or a relative reference, without scheme, authority,
/// query or fragment.
fn uri_path(uri: &str) -> &str {
    let uri = uri.split(['?', '#']).next().unwrap_or(uri);
    match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => uri,
    }
}

#[cfg(test)]
mod tests;
