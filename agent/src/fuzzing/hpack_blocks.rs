//! Arbitrary HPACK header blocks through one decoder, one after another
//! (its dynamic table carried across them): no panic, a table within its
//! limit, fields only from blocks that decode.
use crate::protocols::http2::hpack::{Decoder, MAX_TABLE_SIZE};

/// The first two bytes give the decoder's limit (in 16-octet steps); then
/// each block is a length byte and that many bytes.
pub fn run(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let mut decoder = Decoder::default();
    decoder.set_limit(usize::from(u16::from_le_bytes([*a, *b])) * 16);
    let mut input = rest;
    while let Some((&len, tail)) = input.split_first() {
        let (block, next) = tail.split_at(usize::from(len).min(tail.len()));
        input = next;
        let mut fields = 0usize;
        if decoder.decode(block, &mut |_, _| fields += 1).is_ok() {
            assert!(fields <= block.len(), "a field costs at least one octet");
        }
        assert!(decoder.buffered() <= MAX_TABLE_SIZE + 2 * (16 << 10) + 64);
    }
}
