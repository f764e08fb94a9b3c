//! Decoding the probes' ring-buffer records. Pure: any byte string gives an
//! event or an error.
use loupe_common::event::{
    DataHeader, Header, KIND_CLOSE, KIND_DATA, KIND_PROCESS_EXEC, KIND_PROCESS_EXIT,
    KIND_PROCESS_FORK, KIND_TCP_STATE, Piece, Process, TcpState,
};

/// A decoded record; data borrows the ring buffer's bytes (no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    TcpState(TcpState),
    Fork(Process),
    Exec(Process),
    Exit(Process),
    Data(DataHeader, &'a [u8]),
    Close(DataHeader),
}

/// The `kind` labels of `loupe_events_total`, indexed by [`Event::index`];
/// the last is for records that could not be decoded.
pub const KINDS: [&str; 7] = [
    "tcp_state",
    "process_fork",
    "process_exec",
    "process_exit",
    "data",
    "close",
    "undecodable",
];
/// Index of `undecodable` in [`KINDS`].
pub const UNDECODABLE: usize = 6;

impl Event<'_> {
    /// Index of the event's `kind` label in [`KINDS`].
    pub const fn index(&self) -> usize {
        match self {
            Self::TcpState(_) => 0,
            Self::Fork(_) => 1,
            Self::Exec(_) => 2,
            Self::Exit(_) => 3,
            Self::Data(..) => 4,
            Self::Close(_) => 5,
        }
    }

    /// The `kind` label of `loupe_events_total`.
    pub const fn kind(&self) -> &'static str {
        KINDS[self.index()]
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} its kind needs")]
    Short { len: usize, need: usize },
    #[error("record kind {0} is unknown (agent and probes from different builds?)")]
    UnknownKind(u32),
    #[error("data record claims {claimed} bytes but holds {held}")]
    DataLength { claimed: usize, held: usize },
}

/// Marker for the `#[repr(C)]` records that may be read from raw bytes.
trait Record: Copy {}
impl Record for Header {}
impl Record for TcpState {}
impl Record for Process {}
impl Record for DataHeader {}
impl Record for Piece {}

fn read<T: Record>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length is checked above; `T` is a plain `#[repr(C)]` record
    // valid for any bit pattern, and `read_unaligned` has no alignment needs.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let header: Header = read(bytes)?;
    match header.kind {
        KIND_TCP_STATE => read(bytes).map(Event::TcpState),
        KIND_PROCESS_FORK => read(bytes).map(Event::Fork),
        KIND_PROCESS_EXEC => read(bytes).map(Event::Exec),
        KIND_PROCESS_EXIT => read(bytes).map(Event::Exit),
        KIND_DATA => {
            let head: DataHeader = read(bytes)?;
            let start = size_of::<DataHeader>();
            let claimed = head.captured as usize;
            let data = bytes
                .get(start..start + claimed)
                .ok_or(DecodeError::DataLength {
                    claimed,
                    held: bytes.len() - start,
                })?;
            Ok(Event::Data(head, data))
        }
        KIND_CLOSE => read(bytes).map(Event::Close),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// The pieces of a `DATA_FRAMES` record's bytes (each a [`Piece`] and its
/// bytes), for a syscall of `len` bytes: `None` if they are not pieces
/// within it in ascending order.
pub fn pieces(bytes: &[u8], len: u64) -> Option<Vec<(u64, &[u8])>> {
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    let mut rest = bytes;
    let mut end = 0u64;
    while !rest.is_empty() {
        let piece: Piece = read(rest).ok()?;
        let body = rest.get(size_of::<Piece>()..size_of::<Piece>() + piece.len as usize)?;
        rest = &rest[size_of::<Piece>() + body.len()..];
        let at = u64::from(piece.at);
        if at < end || at + body.len() as u64 > len {
            return None;
        }
        end = at + body.len() as u64;
        if !body.is_empty() {
            out.push((at, body));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Record>(value: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a padding-free `#[repr(C)]` record.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn decodes_each_kind() {
        let fork = Process {
            header: Header {
                kind: KIND_PROCESS_FORK,
                tgid: 10,
                ts_ns: 5,
            },
            pid: 11,
            service: 2,
        };
        assert_eq!(decode(&bytes_of(&fork)), Ok(Event::Fork(fork)));
        let exit = Process {
            header: Header {
                kind: KIND_PROCESS_EXIT,
                ..fork.header
            },
            ..fork
        };
        assert_eq!(decode(&bytes_of(&exit)).unwrap().kind(), "process_exit");
    }

    #[test]
    fn decodes_data_records_without_copying() {
        let head = DataHeader {
            header: Header {
                kind: KIND_DATA,
                tgid: 7,
                ts_ns: 9,
            },
            conn: 1,
            len: 100,
            fd: 5,
            service: 0,
            dir: loupe_common::event::DIR_RX,
            flags: 0,
            captured: 3,
        };
        let mut bytes = bytes_of(&head);
        bytes.extend_from_slice(b"GET and padding");
        assert_eq!(decode(&bytes), Ok(Event::Data(head, &b"GET"[..])));
        bytes.truncate(size_of::<DataHeader>() + 2);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::DataLength {
                claimed: 3,
                held: 2
            })
        );
    }

    #[test]
    fn pieces_are_read_in_order_within_the_syscall() {
        let piece = |at: u32, bytes: &[u8]| {
            let mut out = bytes_of(&Piece {
                at,
                len: bytes.len() as u32,
            });
            out.extend(bytes);
            out
        };
        let mut bytes = piece(0, b"PRI");
        bytes.extend(piece(100, b""));
        bytes.extend(piece(100, b"abc"));
        // The next record of the syscall goes on where this one stopped.
        bytes.extend(piece(103, b"d"));
        assert_eq!(
            pieces(&bytes, 104),
            Some(vec![(0, &b"PRI"[..]), (100, &b"abc"[..]), (103, &b"d"[..])])
        );
        assert_eq!(pieces(&bytes, 103), None, "beyond the syscall");
        assert_eq!(pieces(&bytes[..bytes.len() - 1], 104), None, "cut short");
        let mut backwards = piece(10, b"x");
        backwards.extend(piece(5, b"y"));
        assert_eq!(pieces(&backwards, 20), None);
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        assert!(matches!(
            decode(&[]),
            Err(DecodeError::Short { len: 0, .. })
        ));
        let mut header = bytes_of(&Header {
            kind: KIND_TCP_STATE,
            tgid: 1,
            ts_ns: 1,
        });
        assert_eq!(
            decode(&header),
            Err(DecodeError::Short {
                len: 16,
                need: size_of::<TcpState>()
            })
        );
        header[0] = 99;
        assert_eq!(decode(&header), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 4) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
