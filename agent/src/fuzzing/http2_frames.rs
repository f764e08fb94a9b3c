//! Arbitrary reads and writes on one served HTTP/2 connection, copied as
//! the probes copy them (the frames followed, pieces at their offsets) or
//! as plain first and last bytes: no panic, bounded buffers. The first
//! byte of the input says whether the client's preface is sent first, and
//! whether the connection is joined mid-way (header tables unknown).
use crate::protocols::{
    Direction, Protocol, Transfer,
    http2::{Http2, PREFACE, frame::ProbeModel},
    testing::{Collect, with_context},
};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut server = if mode & 2 == 2 {
        Http2::joined()
    } else {
        Http2::served()
    };
    let mut sink = Collect(|_| {});
    let mut probes = [ProbeModel::new(true), ProbeModel::new(false)];
    let mut input = rest;
    let mut ts = 0;
    if mode & 1 == 1 {
        probes[0].copies(PREFACE);
        let transfer = Transfer::new(ts, PREFACE.len() as u64, PREFACE);
        with_context(|context| server.on_bytes(Direction::Received, &transfer, context, &mut sink));
    }
    while let Some((&control, tail)) = input.split_first() {
        let take = usize::from(control >> 2).min(tail.len());
        let (bytes, next) = tail.split_at(take);
        input = next;
        ts += 1_000;
        let dir = match control & 0x01 {
            0 => Direction::Received,
            _ => Direction::Sent,
        };
        let copies = probes[usize::from(control & 1)].copies(bytes);
        let pieces: Vec<(u64, &[u8])> = copies.iter().map(|(at, b)| (*at, &b[..])).collect();
        // Bit 1: the bytes as the probes copy them; else all of them.
        let transfer = if control & 0x02 != 0 {
            Transfer {
                pieces: &pieces,
                ..Transfer::new(ts, bytes.len() as u64, &[])
            }
        } else {
            Transfer::new(ts, bytes.len() as u64, bytes)
        };
        with_context(|context| server.on_bytes(dir, &transfer, context, &mut sink));
        assert!(
            server.buffered() <= 4 << 20,
            "{} bytes held",
            server.buffered()
        );
    }
    server.on_close(ts, &mut sink);
}
