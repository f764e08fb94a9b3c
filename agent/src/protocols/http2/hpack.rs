//! HPACK (RFC 7541): the header blocks of one direction of an HTTP/2
//! connection, decoded with that direction's dynamic table. Pure and
//! bounded: the table never holds more than the size the peer's settings
//! allow (and loupe's own cap), and any input yields fields or an error,
//! never a panic.
//!
//! A block that does not decode (an index past the table, a bad Huffman
//! code, a size update beyond the limit) means the table is no longer the
//! encoder's: the caller stops trusting the connection's later blocks
//! rather than label requests with wrong headers.
//!
//! A decoder that joins a connection mid-way ([`Decoder::joined`]) knows
//! only the entries inserted since: HPACK's indices count from the newest
//! entry, so those stay exact, and a reference to an older one yields a
//! field loupe cannot read ([`UNREAD`]), not an error and not a guess.
//!
//! Written here rather than taken from a crate: the decoder must report a
//! lost table as an error the connection acts on, bound its memory by
//! loupe's cap as well as the peer's setting, and hand out fields without
//! allocating per field; the crates on crates.io either allocate a
//! `Vec<(Vec<u8>, Vec<u8>)>` per block, panic-free decoding not being their
//! contract, or are no longer maintained.
use std::collections::VecDeque;

/// The table size both ends start with (RFC 7540, 6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest dynamic table loupe keeps for one direction; a peer that
/// allows more is followed up to this and its larger tables are lost.
pub const MAX_TABLE_SIZE: usize = 64 << 10;
/// The longest decoded string kept; longer ones fail the block.
const MAX_STRING: usize = 16 << 10;
/// An entry's size counts 32 octets beside its name and value.
const ENTRY_OVERHEAD: usize = 32;
/// The name of a field a joined decoder cannot read (an entry from
/// before it joined, or a literal it named), whatever its value. No
/// field's name is empty.
pub const UNREAD: &[u8] = b"";

/// Why a block did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer does not fit.
    Overflow,
    /// Index 0, or past the static and dynamic tables.
    BadIndex(usize),
    /// A Huffman string with a bad code, an EOS, or bad padding.
    BadHuffman,
    /// A table size update beyond the allowed size, or after a field.
    BadSizeUpdate,
    /// A string longer than loupe keeps.
    TooLong,
}

/// One direction's decoding state.
#[derive(Clone, Debug)]
pub struct Decoder {
    table: Table,
    /// Sum of the entries' sizes.
    size: usize,
    /// The table's current maximum (the encoder's last size update).
    max: usize,
    /// The most a size update may ask (the decoder side's setting).
    limit: usize,
    /// Huffman-decoded names and values of the field being read.
    name: Vec<u8>,
    value: Vec<u8>,
    /// Joined mid-way: entries past the known ones are unread, not errors.
    joined: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE_SIZE,
            limit: DEFAULT_TABLE_SIZE,
            name: Vec::new(),
            value: Vec::new(),
            joined: false,
        }
    }
}

/// A string of the block: in place, or Huffman-decoded into a buffer.
enum Text<'a> {
    Raw(&'a [u8]),
    Decoded,
}

impl Decoder {
    /// A decoder for a connection whose earlier blocks were not seen: its
    /// table and limits are unknown, so it allows the largest table loupe
    /// keeps. Evicting by a smaller size than the encoder's only makes
    /// more references unread; keeping entries the encoder evicted is
    /// harmless, since it no longer refers to them.
    pub fn joined() -> Self {
        Self {
            max: MAX_TABLE_SIZE,
            limit: MAX_TABLE_SIZE,
            joined: true,
            ..Self::default()
        }
    }

    /// The `SETTINGS_HEADER_TABLE_SIZE` the decoding side announced (and
    /// its peer acknowledged): the most later size updates may ask.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_TABLE_SIZE);
    }

    /// Bytes held (for the memory budget).
    pub fn buffered(&self) -> usize {
        self.size + self.name.capacity() + self.value.capacity()
    }

    /// Decodes one complete header block (HEADERS and its CONTINUATIONs
    /// joined); `field` gets each name and value in order.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut fields = 0usize;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let (index, rest) = integer(block, 7)?;
                block = rest;
                let (name, value) = entry(&self.table, index, self.joined)?;
                field(name, value);
            } else if first & 0xe0 == 0x20 {
                // A dynamic table size update: before the block's fields.
                let (size, rest) = integer(block, 5)?;
                block = rest;
                if fields > 0 || size > self.limit {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.max = size;
                self.evict(0);
                continue;
            } else {
                let (indexing, prefix) = if first & 0x40 != 0 {
                    (true, 6)
                } else {
                    (false, 4)
                };
                let (index, rest) = integer(block, prefix)?;
                block = rest;
                let name = if index == 0 {
                    let (text, rest) = string(block, &mut self.name)?;
                    block = rest;
                    text
                } else {
                    let (name, _) = entry(&self.table, index, self.joined)?;
                    self.name.clear();
                    self.name.extend_from_slice(name);
                    Text::Decoded
                };
                let (value, rest) = string(block, &mut self.value)?;
                block = rest;
                let name = match name {
                    Text::Raw(raw) => raw,
                    Text::Decoded => &self.name,
                };
                let value = match value {
                    Text::Raw(raw) => raw,
                    Text::Decoded => &self.value,
                };
                // A literal named by an unread entry is unread too, and is
                // inserted as such.
                field(name, value);
                if indexing {
                    let entry = (Box::from(name), Box::from(value));
                    self.insert(entry);
                }
            }
            fields += 1;
        }
        Ok(())
    }

    fn insert(&mut self, (name, value): (Box<[u8]>, Box<[u8]>)) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        // An entry larger than the table empties it and is not kept.
        self.evict(size);
        if size <= self.max {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Evicts the oldest entries until `room` more octets fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((name, value)) = self.table.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }

    /// Entries in the dynamic table.
    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

/// A dynamic table, newest entry first.
type Table = VecDeque<(Box<[u8]>, Box<[u8]>)>;

/// The static table's entry `index`, or the dynamic table's (past it:
/// unread if the decoder `joined` mid-way, else an error).
fn entry(table: &Table, index: usize, joined: bool) -> Result<(&[u8], &[u8]), HpackError> {
    match index {
        0 => Err(HpackError::BadIndex(0)),
        1..=61 => {
            let (name, value) = STATIC[index - 1];
            Ok((name.as_bytes(), value.as_bytes()))
        }
        _ => table
            .get(index - 62)
            .map(|(name, value)| (&name[..], &value[..]))
            .or(joined.then_some((UNREAD, UNREAD)))
            .ok_or(HpackError::BadIndex(index)),
    }
}

/// An integer with an `n`-bit prefix (RFC 7541, 5.1), and what follows.
fn integer(block: &[u8], n: u32) -> Result<(usize, &[u8]), HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    let mut shift = 0u32;
    loop {
        let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = tail;
        let part = usize::from(byte & 0x7f)
            .checked_shl(shift)
            .filter(|_| shift <= 28)
            .ok_or(HpackError::Overflow)?;
        value = value.checked_add(part).ok_or(HpackError::Overflow)?;
        if byte & 0x80 == 0 {
            return Ok((value, rest));
        }
        shift += 7;
    }
}

/// A string literal (RFC 7541, 5.2): in place, or Huffman-decoded into
/// `buf`; and what follows.
fn string<'a>(block: &'a [u8], buf: &mut Vec<u8>) -> Result<(Text<'a>, &'a [u8]), HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, rest) = integer(block, 7)?;
    if len > rest.len() {
        return Err(HpackError::Truncated);
    }
    let (text, rest) = rest.split_at(len);
    if !huffman {
        if len > MAX_STRING {
            return Err(HpackError::TooLong);
        }
        return Ok((Text::Raw(text), rest));
    }
    buf.clear();
    huffman_decode(text, buf)?;
    Ok((Text::Decoded, rest))
}

/// Decodes the canonical Huffman code of RFC 7541, Appendix B, a symbol
/// at a time: the next 30 bits (the longest code) are compared with each
/// length's range of codes, shortest first (most symbols are 5 to 8 bits).
fn huffman_decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    const LONGEST: u32 = 30;
    // The bits not yet decoded, right-aligned, and how many there are.
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut bytes = text.iter();
    loop {
        while bits <= 56
            && let Some(&byte) = bytes.next()
        {
            acc = acc << 8 | u64::from(byte);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        // The next 30 bits, zeros past the end.
        let peek = if bits >= LONGEST {
            (acc >> (bits - LONGEST)) as u32
        } else {
            (acc << (LONGEST - bits)) as u32
        } & ((1 << LONGEST) - 1);
        let mut len = 5;
        let code = loop {
            let code = peek >> (LONGEST - len as u32);
            if code.wrapping_sub(FIRST_CODE[len]) < u32::from(COUNTS[len]) {
                break code;
            }
            len += 1;
            if len > LONGEST as usize {
                return Err(HpackError::BadHuffman);
            }
        };
        if len as u32 > bits {
            // Past the end: padding, fewer than 8 bits, all of them 1.
            let ones = (1u64 << bits) - 1;
            return if bits < 8 && acc & ones == ones {
                Ok(())
            } else {
                Err(HpackError::BadHuffman)
            };
        }
        let symbol = SYMBOLS[FIRST_INDEX[len] + (code - FIRST_CODE[len]) as usize];
        let octet = u8::try_from(symbol).map_err(|_| HpackError::BadHuffman)?;
        if out.len() == MAX_STRING {
            return Err(HpackError::TooLong);
        }
        out.push(octet);
        bits -= len as u32;
        acc &= (1u64 << bits) - 1;
    }
}

/// Per code length: its first code, and the index in [`SYMBOLS`] of that
/// code's symbol (the code is canonical: each length's codes follow the
/// shorter ones').
const FIRST_CODE: [u32; 31] = canonical().0;
const FIRST_INDEX: [usize; 31] = canonical().1;

const fn canonical() -> ([u32; 31], [usize; 31]) {
    let (mut codes, mut indices) = ([0u32; 31], [0usize; 31]);
    let mut len = 1;
    while len < 31 {
        let count = COUNTS[len - 1] as u32;
        codes[len] = (codes[len - 1] + count) << 1;
        indices[len] = indices[len - 1] + count as usize;
        len += 1;
    }
    (codes, indices)
}

/// How many codes of each bit length (index) the HPACK Huffman code has
/// (RFC 7541, Appendix B; the code is canonical).
const COUNTS: [u16; 31] = [
    0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3, 0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19,
    29, 0, 4,
];
/// The symbols (octets, 256 = EOS) in the order of their codes: by
/// length, then by value.
const SYMBOLS: [u16; 257] = [
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57,
    61, 65, 95, 98, 100, 102, 103, 104, 108, 109, 110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118, 119,
    120, 121, 122, 38, 42, 44, 59, 88, 90, 33, 34, 40, 41, 63, 39, 43, 124, 35, 62, 0, 36, 64, 91,
    93, 126, 94, 125, 60, 96, 123, 92, 195, 208, 128, 130, 131, 162, 184, 194, 224, 226, 153, 161,
    167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154, 156,
    160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232, 233, 1,
    135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166, 168, 174,
    175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142, 144, 145, 148, 159, 171, 206, 215, 225,
    236, 237, 199, 207, 234, 235, 192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242,
    243, 255, 203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252,
    253, 254, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28,
    29, 30, 31, 127, 220, 249, 10, 13, 22, 256,
];

/// The static table (RFC 7541, Appendix A), from index 1.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::http2::frame::hex;

    fn decode(decoder: &mut Decoder, block: &str) -> Result<Vec<(String, String)>, HpackError> {
        let mut fields = Vec::new();
        decoder.decode(&hex(&block.replace(' ', "")), &mut |name, value| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            fields.push((text(name), text(value)));
        })?;
        Ok(fields)
    }

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }

    /// Encodes `text` with the code the tables describe (padding with 1s).
    fn huffman_encode(text: &[u8]) -> Vec<u8> {
        let mut codes = std::collections::HashMap::new();
        for len in 1..31 {
            for k in 0..usize::from(COUNTS[len]) {
                let code = FIRST_CODE[len] + k as u32;
                codes.insert(SYMBOLS[FIRST_INDEX[len] + k], (code, len));
            }
        }
        let (mut acc, mut bits, mut out) = (0u64, 0, Vec::new());
        for &octet in text {
            let (code, len) = codes[&u16::from(octet)];
            acc = acc << len | u64::from(code);
            bits += len;
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push((acc << (8 - bits)) as u8 | ((1u8 << (8 - bits)) - 1));
        }
        out
    }

    #[test]
    fn huffman_strings_of_every_octet_decode_back() {
        let every: Vec<u8> = (0..=255).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut texts = vec![every.clone(), every.into_iter().rev().collect()];
        for len in 0..3_000usize {
            let text = (0..len % 64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            texts.push(text);
        }
        for text in texts {
            let mut out = Vec::new();
            assert_eq!(huffman_decode(&huffman_encode(&text), &mut out), Ok(()));
            assert_eq!(out, text);
        }
        let mut out = Vec::new();
        let eos = [0xff, 0xff, 0xff, 0xfc];
        assert_eq!(huffman_decode(&eos, &mut out), Err(HpackError::BadHuffman));
        assert_eq!(
            huffman_decode(&[0xff], &mut out),
            Err(HpackError::BadHuffman),
            "8 bits of padding"
        );
        assert_eq!(
            huffman_decode(&[0x06], &mut out),
            Err(HpackError::BadHuffman),
            "padding with a 0"
        );
        out.clear();
        assert_eq!(huffman_decode(&[0x07], &mut out), Ok(()));
        assert_eq!(out, b"0", "00000 then 3 bits of padding");
    }

    /// RFC 7541, C.4: requests with Huffman strings and indexing.
    #[test]
    fn decodes_the_rfc_request_examples() {
        let mut decoder = Decoder::default();
        let first = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(
            decode(&mut decoder, "828684418cf1e3c2e5f23a6ba0ab90f4ff"),
            Ok(pairs(&first))
        );
        let mut second = first.to_vec();
        second.push(("cache-control", "no-cache"));
        assert_eq!(
            decode(&mut decoder, "828684be5886a8eb10649cbf"),
            Ok(pairs(&second))
        );
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        let block = "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf";
        assert_eq!(decode(&mut decoder, block), Ok(pairs(&third)));
        assert_eq!(decoder.entries(), 3);
        assert_eq!(decoder.size, 164, "RFC 7541, C.4.3: table size 164");
    }

    /// Responses from an encoder whose table is 256 octets (a size update
    /// first): later blocks index entries and evict the oldest.
    #[test]
    fn follows_size_updates_and_evictions() {
        let blocks = [
            "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e080a62d1bff6e939d29ad171863c78f0b97c8e9ae82ae43d2c03f",
            "c1c06196d07abe941054d444a8200595040b8166e082a62d1bff6e939d29ad171863c78f0b97c8e9ae82ae43d2c07f",
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e084a62d1bff6e939d29ad171863c78f0b97c8e9ae82ae43d2c0bf",
        ];
        let mut decoder = Decoder::default();
        for (i, block) in blocks.iter().enumerate() {
            let date = format!("Mon, 21 Oct 2013 20:13:2{i} GMT");
            let location = format!("https://www.example.com/{i}");
            let expected = [
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date.as_str()),
                ("location", location.as_str()),
            ];
            assert_eq!(
                decode(&mut decoder, block),
                Ok(pairs(&expected)),
                "block {i}"
            );
            assert!(decoder.size <= 256, "block {i}: {}", decoder.size);
        }
    }

    #[test]
    fn a_lost_table_is_an_error_not_a_guess() {
        let mut decoder = Decoder::default();
        // Index 62 with an empty dynamic table (a block whose predecessor
        // was never seen).
        assert_eq!(decode(&mut decoder, "be"), Err(HpackError::BadIndex(62)));
        assert_eq!(decode(&mut decoder, "80"), Err(HpackError::BadIndex(0)));
        // A size update past the limit, and one after a field.
        assert_eq!(
            decode(&mut decoder, "3fe21f"),
            Err(HpackError::BadSizeUpdate)
        );
        assert_eq!(
            decode(&mut decoder, "823f01"),
            Err(HpackError::BadSizeUpdate)
        );
        // Huffman: EOS inside a string; padding of zeros; a cut block.
        assert_eq!(
            decode(&mut decoder, "0082ffff"),
            Err(HpackError::BadHuffman)
        );
        assert_eq!(decode(&mut decoder, "408100"), Err(HpackError::BadHuffman));
        assert_eq!(decode(&mut decoder, "418cf1e3"), Err(HpackError::Truncated));
        // An integer that does not fit.
        assert_eq!(
            decode(&mut decoder, "ffffffffffffffffff7f"),
            Err(HpackError::Overflow)
        );
    }

    #[test]
    fn a_joined_decoder_reads_what_was_inserted_since_and_nothing_older() {
        let mut decoder = Decoder::joined();
        // `:status 200` (static), then an entry from before it joined.
        assert_eq!(
            decode(&mut decoder, "88be"),
            Ok(pairs(&[(":status", "200"), ("", "")]))
        );
        // `x-a: 1` inserted: index 62 is now known, 63 is still from before.
        assert_eq!(
            decode(&mut decoder, "400378 2d61 0131"),
            Ok(pairs(&[("x-a", "1")]))
        );
        assert_eq!(
            decode(&mut decoder, "bebf"),
            Ok(pairs(&[("x-a", "1"), ("", "")]))
        );
        // A literal named by an entry from before, inserted: unread, and it
        // pushes `x-a` to 63.
        assert_eq!(decode(&mut decoder, "7f000132"), Ok(pairs(&[("", "2")])));
        assert_eq!(
            decode(&mut decoder, "bebf"),
            Ok(pairs(&[("", "2"), ("x-a", "1")]))
        );
        // Index 0 stays an error.
        assert_eq!(decode(&mut decoder, "80"), Err(HpackError::BadIndex(0)));
    }

    #[test]
    fn the_table_stays_within_its_limit() {
        let mut decoder = Decoder::default();
        decoder.set_limit(1 << 30);
        assert_eq!(decoder.limit, MAX_TABLE_SIZE);
        // Literal with indexing of a 100-octet value, 200 times.
        let mut block = vec![0x40, 0x01, b'x', 0x64];
        block.extend([b'v'; 100]);
        for _ in 0..200 {
            decoder.decode(&block, &mut |_, _| {}).unwrap();
        }
        assert!(decoder.size <= DEFAULT_TABLE_SIZE);
        assert_eq!(
            decoder.entries(),
            DEFAULT_TABLE_SIZE / (1 + 100 + ENTRY_OVERHEAD)
        );
    }
}
