//! Redis from the wire, as the service's client connection shows it:
//! commands written, replies read, matched in order (RESP is strictly
//! request/response per connection, pipelined or not). Pure and total: any
//! input yields operations or nothing, never a panic, and the state stays
//! bounded.
//!
//! - Every command counts when it is written, queued ones in `MULTI` too.
//! - A reply completes the oldest command waiting for one; an error reply
//!   (`-`, `!`) counts as an error of that command. RESP3 pushes (`>`) and
//!   attributes (`|`) are not replies.
//! - After `SUBSCRIBE`/`PSUBSCRIBE`/`SSUBSCRIBE` on RESP2 the connection
//!   carries messages besides replies: messages are skipped, each
//!   (un)subscription is confirmed with the number of subscriptions left,
//!   and when that reaches 0 the connection is back to plain commands
//!   (RESP3 tells pushes apart by their type).
//! - Bytes the probes did not capture (a header past the first 2 KiB of a
//!   syscall) lose the frame: waiting commands complete with that read, and
//!   parsing resumes at the next write, where commands start.
pub mod commands;
pub mod resp;

use std::collections::VecDeque;

use self::resp::{Resp, Value};
use super::{
    ClientProtocol, Context, Direction, Observation, Pool, PoolUse, Protocol, Sink, Transfer,
    WellKnown,
};

/// Commands awaiting their replies per connection.
const MAX_PENDING: usize = 1024;

/// One command and its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Lower-case command name from a bounded set (`other` otherwise).
    pub operation: &'static str,
    /// When the command was written.
    pub start_ns: u64,
    /// When its reply was read.
    pub end_ns: u64,
    pub error: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Commands,
    /// RESP2 pub/sub: messages and confirmations besides replies.
    Subscribed,
}

#[derive(Clone, Debug)]
pub struct RedisConn {
    tx: Resp,
    rx: Resp,
    /// Waiting commands: name and when written.
    pending: VecDeque<(&'static str, u64)>,
    mode: Mode,
    resp3: bool,
    /// The write side lost its frame: skip until a write starts afresh.
    tx_lost: bool,
}

impl Default for RedisConn {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisConn {
    pub fn new() -> Self {
        Self {
            tx: Resp::default(),
            rx: Resp::default(),
            pending: VecDeque::new(),
            mode: Mode::Commands,
            resp3: false,
            tx_lost: false,
        }
    }

    pub fn buffered(&self) -> usize {
        self.tx.buffered() + self.rx.buffered() + self.pending.capacity() * 24
    }

    /// Whether the connection is still followed (always: a subscribed
    /// one comes back to commands when its last subscription ends).
    pub fn is_parsing(&self) -> bool {
        true
    }

    /// Bytes the service wrote (commands). `len` bytes went out, the first
    /// `bytes` were captured.
    pub fn on_tx(&mut self, ts: u64, bytes: &[u8], len: u64) {
        if self.tx_lost && !self.tx.in_value() {
            self.tx_lost = false;
        }
        if self.tx_lost {
            self.tx.reset();
            self.tx_lost = false;
        }
        let mut commands = Vec::new();
        let result = self.tx.feed(bytes, len, &mut |value| commands.push(value));
        for value in commands {
            self.command(&value, ts);
        }
        if result.is_err() {
            self.tx.reset();
            self.tx_lost = true;
        }
    }

    fn command(&mut self, value: &Value, ts: u64) {
        let name = commands::operation(&value.word);
        if value.word == b"HELLO" && value.second.first() == Some(&b'3') {
            self.resp3 = true;
        }
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((name, ts));
    }

    /// The connection closed: commands never answered failed.
    pub fn on_close(&mut self, ts: u64, out: &mut impl FnMut(Op)) {
        for (operation, start_ns) in self.pending.drain(..) {
            out(Op {
                operation,
                start_ns,
                end_ns: ts.max(start_ns),
                error: true,
            });
        }
    }

    /// Bytes the service read (replies).
    pub fn on_rx(&mut self, ts: u64, bytes: &[u8], len: u64, out: &mut impl FnMut(Op)) {
        let mut replies = Vec::new();
        let result = self.rx.feed(bytes, len, &mut |value| replies.push(value));
        for value in replies {
            if !self.answers(&value) {
                continue;
            }
            let Some((operation, start_ns)) = self.pending.pop_front() else {
                continue; // a reply to a command sent before loupe saw it
            };
            out(Op {
                operation,
                start_ns,
                end_ns: ts,
                error: value.error,
            });
            if !self.resp3 && !value.error {
                self.follow_subscriptions(operation, &value);
            }
        }
        if result.is_err() {
            // The rest of this read could not be followed: its replies end
            // the waiting commands, as far as this read goes.
            self.rx.reset();
            for (operation, start_ns) in self.pending.drain(..) {
                out(Op {
                    operation,
                    start_ns,
                    end_ns: ts,
                    error: false,
                });
            }
        }
    }

    /// Whether `value` answers the oldest waiting command (rather than
    /// being a message, a push, an attribute, or a further confirmation of
    /// a command that named several channels).
    fn answers(&mut self, value: &Value) -> bool {
        let front = self.pending.front().map(|(op, _)| *op);
        if value.attribute {
            return false;
        }
        if value.push {
            // RESP3 confirms a subscription with a push, not a reply.
            return front.is_some_and(commands::subscribes)
                && commands::subscribes(commands::operation(&value.word));
        }
        if self.mode != Mode::Subscribed || value.error {
            return true;
        }
        match confirmation(&value.word) {
            Some(Confirms::Message) => false,
            Some(kind) => {
                // A confirmation answers a waiting command of its kind; the
                // ones after it (one per channel) only update the count.
                let answers = front.is_some_and(|op| kind.of(op));
                if !answers {
                    self.end_subscriptions(kind, value);
                }
                answers
            }
            None => true,
        }
    }

    /// After a (un)subscription's reply on RESP2: subscribed while the
    /// server counts subscriptions, back to commands at 0 (or `RESET`).
    fn follow_subscriptions(&mut self, operation: &str, value: &Value) {
        if operation == "reset" {
            self.mode = Mode::Commands;
            return;
        }
        if let Some(kind) = confirmation(&value.word) {
            if kind == Confirms::Subscribe {
                self.mode = Mode::Subscribed;
            }
            self.end_subscriptions(kind, value);
        }
    }

    fn end_subscriptions(&mut self, kind: Confirms, value: &Value) {
        if kind == Confirms::Unsubscribe && value.count == Some(0) {
            self.mode = Mode::Commands;
        }
    }
}

/// What a RESP2 pub/sub array is, by its first word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confirms {
    Subscribe,
    Unsubscribe,
    /// A published message: no reply to anything.
    Message,
}

impl Confirms {
    /// Whether a confirmation of this kind answers command `operation`.
    fn of(self, operation: &str) -> bool {
        match self {
            Self::Subscribe => commands::subscribes(operation),
            Self::Unsubscribe => {
                matches!(operation, "unsubscribe" | "punsubscribe" | "sunsubscribe")
            }
            Self::Message => false,
        }
    }
}

fn confirmation(word: &[u8]) -> Option<Confirms> {
    match word {
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" => Some(Confirms::Subscribe),
        b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SUNSUBSCRIBE" => Some(Confirms::Unsubscribe),
        b"MESSAGE" | b"PMESSAGE" | b"SMESSAGE" => Some(Confirms::Message),
        _ => None,
    }
}

impl Protocol for RedisConn {
    fn on_bytes(
        &mut self,
        dir: Direction,
        bytes: &Transfer<'_>,
        _context: &Context<'_>,
        sink: &mut dyn Sink,
    ) {
        match dir {
            Direction::Sent => self.on_tx(bytes.ts, bytes.head, bytes.len),
            Direction::Received => self.on_rx(bytes.ts, bytes.head, bytes.len, &mut |op| {
                sink.observe(Observation::Redis(op));
            }),
        }
    }

    fn on_close(&mut self, ts: u64, sink: &mut dyn Sink) {
        RedisConn::on_close(self, ts, &mut |op| sink.observe(Observation::Redis(op)));
    }

    fn is_parsing(&self) -> bool {
        RedisConn::is_parsing(self)
    }

    fn pool(&self) -> Option<PoolUse> {
        Some(PoolUse {
            pool: Pool::Redis,
            busy: false,
            encrypted: false,
        })
    }

    fn buffered(&self) -> usize {
        RedisConn::buffered(self)
    }
}

/// A RESP array of bulk strings: `*<n>\r\n$`.
fn detect(dir: Direction, bytes: &[u8]) -> Option<Box<dyn Protocol>> {
    let array = matches!(bytes, [b'*', digit, ..] if digit.is_ascii_digit());
    (dir == Direction::Sent && array).then(|| Box::new(RedisConn::new()) as Box<dyn Protocol>)
}

pub const CLIENT: ClientProtocol = ClientProtocol {
    detect,
    well_known: Some(WellKnown {
        port: 6379,
        pool: Pool::Redis,
        mid_stream: || Box::new(RedisConn::new()),
    }),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[(bool, &[u8])]) -> Vec<Op> {
        let mut conn = RedisConn::new();
        let mut out = Vec::new();
        for (i, (tx, bytes)) in steps.iter().enumerate() {
            let ts = i as u64 * 10;
            if *tx {
                conn.on_tx(ts, bytes, bytes.len() as u64);
            } else {
                conn.on_rx(ts, bytes, bytes.len() as u64, &mut |op| out.push(op));
            }
        }
        out
    }

    fn names(ops: &[Op]) -> Vec<(&'static str, bool)> {
        ops.iter().map(|o| (o.operation, o.error)).collect()
    }

    #[test]
    fn pipelines_and_errors_in_order() {
        let ops = run(&[
            (true, b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$4\r\nINCR\r\n$1\r\nb\r\n*1\r\n$4\r\nNOPE\r\n"),
            (false, b"$1\r\nx\r\n-WRONGTYPE not an integer\r\n"),
            (false, b"-ERR unknown command\r\n"),
        ]);
        assert_eq!(
            names(&ops),
            [("get", false), ("incr", true), ("other", true)]
        );
        assert_eq!((ops[0].start_ns, ops[0].end_ns), (0, 10));
        assert_eq!(ops[2].end_ns, 20);
    }

    #[test]
    fn transactions_count_every_command() {
        let ops = run(&[
            (true, b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n"),
            (false, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-ERR not an integer\r\n"),
        ]);
        assert_eq!(
            names(&ops),
            [
                ("multi", false),
                ("set", false),
                ("incr", false),
                ("exec", false)
            ]
        );
    }

    #[test]
    fn resp2_subscribers_are_followed_until_their_last_unsubscription() {
        // ioredis: SUBSCRIBE two channels, a message, PING, UNSUBSCRIBE
        // (both confirmations), then plain commands again.
        let ops = run(&[
            (true, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n$1\r\nd\r\n"),
            (
                false,
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nd\r\n:2\r\n",
            ),
            (false, b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"),
            (true, b"*1\r\n$4\r\nPING\r\n"),
            (false, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            (true, b"*1\r\n$11\r\nUNSUBSCRIBE\r\n"),
            (
                false,
                b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nd\r\n:0\r\n",
            ),
            (true, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            (false, b"$-1\r\n"),
            (true, b"*1\r\n$4\r\nQUIT\r\n"),
            (false, b"+OK\r\n"),
        ]);
        assert_eq!(
            names(&ops),
            [
                ("subscribe", false),
                ("ping", false),
                ("unsubscribe", false),
                ("get", false),
                ("quit", false)
            ]
        );
        let ops = run(&[
            (true, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"),
            (false, b"%1\r\n+server\r\n+redis\r\n"),
            (
                true,
                b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n*1\r\n$4\r\nPING\r\n",
            ),
            (
                false,
                b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+PONG\r\n",
            ),
        ]);
        assert_eq!(
            names(&ops),
            [("hello", false), ("subscribe", false), ("ping", false)],
            "the push confirms SUBSCRIBE, PONG answers PING"
        );
    }

    #[test]
    fn reset_ends_a_resp2_subscription() {
        let ops = run(&[
            (true, b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nc*\r\n"),
            (false, b"*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:1\r\n"),
            (true, b"*1\r\n$5\r\nRESET\r\n"),
            (false, b"+RESET\r\n"),
            (true, b"*1\r\n$4\r\nPING\r\n"),
            (false, b"+PONG\r\n"),
        ]);
        assert_eq!(
            names(&ops),
            [("psubscribe", false), ("reset", false), ("ping", false)]
        );
    }

    #[test]
    fn lost_frames_end_the_waiting_commands_and_resume_at_the_next_write() {
        let mut conn = RedisConn::new();
        let mut out = Vec::new();
        conn.on_tx(
            0,
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n",
            30,
        );
        // A 5,000-byte read of which 100 bytes were captured: the second
        // reply's header is not visible.
        let mut reply = b"$3000\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'v', 93));
        conn.on_rx(10, &reply, 5_000, &mut |op| out.push(op));
        assert_eq!(out.len(), 2);
        conn.on_tx(20, b"*1\r\n$4\r\nPING\r\n", 14);
        conn.on_rx(30, b"+PONG\r\n", 7, &mut |op| out.push(op));
        assert_eq!(out.last().unwrap().operation, "ping");
        // Garbage on the wire.
        conn.on_tx(40, b"\x16\x03\x01garbage", 11);
        conn.on_tx(50, b"*1\r\n$4\r\nPING\r\n", 14);
        conn.on_rx(60, b"+PONG\r\n", 7, &mut |op| out.push(op));
        assert_eq!(out.last().unwrap().start_ns, 50);
    }
}
