//! Arbitrary reads, writes and closes on one HTTP connection: no panic,
//! bounded buffers. The first bytes of the input choose how it is split.
use crate::protocols::testing::{Collect, with_bodies};
use crate::protocols::{
    Direction, Observation, Protocol, Transfer,
    http1::{
        Server,
        exchange::{BodyWants, MAX_HEAD, Outcome},
        head::Method,
    },
};

pub fn run(data: &[u8]) {
    replay(data, &mut |_| {});
}

/// Feeds `data` to a connection as the fuzz target reads it; `out` gets
/// every outcome, the close's included.
fn replay(data: &[u8], out: &mut impl FnMut(Outcome)) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut conn = Server::new(mode & 1 == 1);
    // Bodies kept too, when the mode says so (route rules), and event
    // streams read live.
    let keep = usize::from(mode >> 1) * 16;
    let bodies = |_: &Method, _: &str| BodyWants {
        request: keep,
        response: keep,
        rule: None,
        live: mode & 2 != 0,
    };
    let mut sink = Collect(|found| {
        if let Observation::Served(outcome) = found {
            out(outcome);
        }
    });
    let mut ts = 0;
    let mut input = rest;
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 3).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1_000;
        // Bit 2: a gap of 1200 bytes after the captured ones; bit 1: the
        // bytes are split into the syscall's first and last ones, around it.
        let gap = u64::from(control & 0x04) * 300;
        let (first, last) = if control & 0x02 != 0 {
            bytes.split_at(bytes.len() / 2)
        } else {
            (bytes, &[][..])
        };
        let transfer = Transfer::ends(ts, bytes.len() as u64 + gap, first, last);
        let dir = match control & 0x01 {
            0 => Direction::Received,
            _ => Direction::Sent,
        };
        with_bodies(&bodies, |context| {
            conn.on_bytes(dir, &transfer, context, &mut sink);
        });
        // Partial heads, a kept body each way or a live stream's line and
        // event.
        assert!(conn.buffered() <= 2 * MAX_HEAD + 64 + 4 * keep.next_power_of_two().max(8) * 2);
    }
    conn.on_close(ts, &mut sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance cases (`tests/fixtures/conformance.py` writes them
    /// as seeds named `conformance-N-ANSWERED-ABANDONED-...`, each syscall
    /// cut into pieces of 31 bytes): every request answered with its
    /// status or abandoned as the case says, nothing unparsed.
    #[test]
    fn conformance_seeds_answer_every_request() {
        let mut cases = 0;
        for (name, bytes) in crate::fuzzing::seeds("http_connection") {
            let Some(rest) = name.strip_prefix("conformance-") else {
                continue;
            };
            let count = |i: usize| -> usize { rest.split('-').nth(i).unwrap().parse().unwrap() };
            let (mut answered, mut abandoned) = (0, 0);
            replay(&bytes, &mut |outcome| match outcome {
                Outcome::Exchange(e) => {
                    assert!(e.status.is_some(), "{name}: {e:?}");
                    answered += 1;
                }
                Outcome::Abandoned { .. } => abandoned += 1,
                Outcome::Unparsed(why) => panic!("{name}: unparsed ({why:?})"),
                Outcome::Streamed(_) => {}
            });
            assert_eq!((answered, abandoned), (count(1), count(2)), "{name}");
            cases += 1;
        }
        assert!(cases >= 19, "{cases} conformance seeds");
    }
}
