//! Reads struct member offsets from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). rustc emits no CO-RE relocations, so the few
//! kernel fields a probe reads (a socket's network namespace) are located here
//! and handed to the probes as a global at load time.
//!
//! The parser is pure and bounds-checked: any byte string yields a result or
//! an error, never a panic.
use std::{fs, io, path::Path};

use loupe_common::layout::{FileOffsets, KernelOffsets};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
pub(crate) const KIND_STRUCT: u32 = 4;
pub(crate) const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_TYPE_TAG: u32 = 18;
/// Nesting of anonymous members and modifier chains we follow before giving up.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source}; the kernel needs CONFIG_DEBUG_INFO_BTF")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("BTF data is malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("struct `{strukt}` has no member path `{path}` in this kernel's BTF")]
    NoMember { strukt: String, path: String },
}

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset (bitfields are never on the paths we follow).
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    /// Struct or union.
    Composite {
        name_off: u32,
        members: Vec<Member>,
    },
    /// Typedef, const, volatile, restrict, type tag: refers to another type.
    Alias(u32),
    /// A function (kernel functions fentry and fexit attach to).
    Func {
        name_off: u32,
    },
    Other,
}

/// Parsed BTF: enough to resolve member offsets.
pub struct Btf {
    /// Index 0 is the implicit `void` type.
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    let bytes = data
        .get(
            at..at
                .checked_add(4)
                .ok_or(BtfError::Malformed("offset overflow"))?,
        )
        .ok_or(BtfError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

fn range(start: u32, len: u32, base: usize, total: usize) -> Result<(usize, usize), BtfError> {
    let start = base
        .checked_add(start as usize)
        .ok_or(BtfError::Malformed("section offset overflow"))?;
    let end = start
        .checked_add(len as usize)
        .ok_or(BtfError::Malformed("section length overflow"))?;
    if end > total {
        return Err(BtfError::Malformed("section beyond the end of the data"));
    }
    Ok((start, end))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses little-endian BTF (the only byte order loupe runs on).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < HEADER_LEN {
            return Err(BtfError::Malformed("shorter than the header"));
        }
        if u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (types_start, types_end) =
            range(u32_at(data, 8)?, u32_at(data, 12)?, hdr_len, data.len())?;
        let (str_start, str_end) =
            range(u32_at(data, 16)?, u32_at(data, 20)?, hdr_len, data.len())?;
        let mut types = vec![Type::Other];
        let section = &data[types_start..types_end];
        let mut at = 0;
        while at < section.len() {
            let (ty, len) = parse_type(section, at)?;
            types.push(ty);
            at += len;
        }
        Ok(Self {
            types,
            strings: data[str_start..str_end].to_vec(),
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..MAX_DEPTH {
            match self.types.get(id as usize)? {
                Type::Alias(next) => id = *next,
                other => return Some(other),
            }
        }
        None
    }

    /// Byte offset of `path` (member names, descending through nested
    /// structs; anonymous structs and unions are searched transparently)
    /// inside `struct strukt`.
    pub fn member_offset(&self, strukt: &str, path: &[&str]) -> Result<u32, BtfError> {
        let start = self
            .types
            .iter()
            .find(|ty| {
                matches!(ty, Type::Composite { name_off, .. }
                    if self.name(*name_off) == strukt.as_bytes())
            })
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        let no_member = || BtfError::NoMember {
            strukt: strukt.to_owned(),
            path: path.join("."),
        };
        let mut ty = start;
        let mut bits = 0u64;
        for (i, name) in path.iter().enumerate() {
            let (offset, member_type) = self.find_member(ty, name, 0).ok_or_else(no_member)?;
            bits += offset;
            if i + 1 < path.len() {
                ty = self.resolve(member_type).ok_or_else(no_member)?;
            }
        }
        u32::try_from(bits / 8).map_err(|_| no_member())
    }

    /// Whether the kernel has a function called `name`.
    pub fn has_function(&self, name: &str) -> bool {
        self.types.iter().any(
            |ty| matches!(ty, Type::Func { name_off } if self.name(*name_off) == name.as_bytes()),
        )
    }

    /// `(bit offset, type id)` of the member `name` of `ty`, looking inside
    /// anonymous members too.
    fn find_member(&self, ty: &Type, name: &str, depth: usize) -> Option<(u64, u32)> {
        let Type::Composite { members, .. } = ty else {
            return None;
        };
        if depth > MAX_DEPTH {
            return None;
        }
        for member in members {
            let member_name = self.name(member.name_off);
            if member_name == name.as_bytes() {
                return Some((u64::from(member.bit_offset), member.type_id));
            }
            if member_name.is_empty() {
                let inner = self.resolve(member.type_id)?;
                if let Some((offset, id)) = self.find_member(inner, name, depth + 1) {
                    return Some((u64::from(member.bit_offset) + offset, id));
                }
            }
        }
        None
    }
}

/// One type record at `at`: the type and its length in bytes.
fn parse_type(section: &[u8], at: usize) -> Result<(Type, usize), BtfError> {
    let name_off = u32_at(section, at)?;
    let info = u32_at(section, at + 4)?;
    let size_or_type = u32_at(section, at + 8)?;
    let kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let kind_flag = info >> 31 == 1;
    let extra = match kind {
        1 | 14 | 17 => 4,             // int, var, decl tag
        2 | 7..=12 | 16 | 18 => 0,    // ptr, fwd, typedef, qualifiers, func, float, type tag
        3 => 12,                      // array
        4 | 5 | 15 | 19 => vlen * 12, // struct, union, datasec, enum64
        6 | 13 => vlen * 8,           // enum, func proto
        _ => return Err(BtfError::Malformed("unknown type kind")),
    };
    let body = at + 12;
    if body + extra > section.len() {
        return Err(BtfError::Malformed("type record beyond the type section"));
    }
    let ty = match kind {
        KIND_STRUCT | KIND_UNION => {
            let members = (0..vlen)
                .map(|i| {
                    let m = body + i * 12;
                    let offset = u32_at(section, m + 8)?;
                    Ok(Member {
                        name_off: u32_at(section, m)?,
                        type_id: u32_at(section, m + 4)?,
                        bit_offset: if kind_flag {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        },
                    })
                })
                .collect::<Result<_, BtfError>>()?;
            Type::Composite { name_off, members }
        }
        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
            Type::Alias(size_or_type)
        }
        KIND_FUNC => Type::Func { name_off },
        _ => Type::Other,
    };
    Ok((ty, 12 + extra))
}

/// The offsets the probes need, from the running kernel's BTF: those of
/// the network namespace are required, those of the file table optional
/// (`files_valid`).
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    // Optional: without them only fds the probes saw opened are followed.
    let (files_valid, files) = file_offsets(btf).map_or((0, FileOffsets::default()), |f| (1, f));
    Ok(KernelOffsets {
        valid: 1,
        sock_net: btf.member_offset("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: btf.member_offset("net", &["ns", "inum"])?,
        files_valid,
        files,
    })
}

/// The path from a task to the socket behind one of its fds.
pub fn file_offsets(btf: &Btf) -> Result<FileOffsets, BtfError> {
    Ok(FileOffsets {
        task_files: btf.member_offset("task_struct", &["files"])?,
        files_fdt: btf.member_offset("files_struct", &["fdt"])?,
        fdt_max_fds: btf.member_offset("fdtable", &["max_fds"])?,
        fdt_fd: btf.member_offset("fdtable", &["fd"])?,
        file_inode: btf.member_offset("file", &["f_inode"])?,
        file_private: btf.member_offset("file", &["private_data"])?,
        inode_mode: btf.member_offset("inode", &["i_mode"])?,
        socket_sk: btf.member_offset("socket", &["sk"])?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    pub(crate) use super::{KIND_STRUCT, KIND_UNION};

    pub(crate) const KIND_ARRAY: u32 = 3;

    /// Builds BTF bytes from type records and a string table.
    pub(crate) fn btf(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for v in [
            HEADER_LEN as u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data.extend_from_slice(types);
        data.extend_from_slice(strings);
        data
    }

    pub(crate) fn record(
        name_off: u32,
        kind: u32,
        vlen: u32,
        size_or_type: u32,
        extra: &[[u32; 3]],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [name_off, (kind << 24) | vlen, size_or_type] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for m in extra {
            for v in m {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// A 64-bit integer type called by the string at `name_off`.
    pub(crate) fn int_record(name_off: u32) -> Vec<u8> {
        let mut out = record(name_off, 1, 0, 8, &[]);
        out.extend_from_slice(&0x40u32.to_le_bytes()); // 64 bits, unsigned
        out
    }

    #[test]
    fn finds_functions_by_name() {
        // 1: func "read" (no prototype needed for the lookup).
        let types = record(1, KIND_FUNC, 0, 0, &[]);
        let btf = Btf::parse(&btf(&types, b"\0read\0")).unwrap();
        assert!(btf.has_function("read"));
        assert!(!btf.has_function("rea"));
        assert!(!btf.has_function("write"));
    }

    // Strings: 0 "", 1 "int", 5 "inner", 11 "outer", 17 "a", 19 "b", 21 "c", 23 "t"
    const STRINGS: &[u8] = b"\0int\0inner\0outer\0a\0b\0c\0t\0";

    fn sample() -> Vec<u8> {
        let mut types = Vec::new();
        // 1: int
        types.extend(record(1, 1, 0, 4, &[]));
        types.extend_from_slice(&0x20u32.to_le_bytes()); // 32-bit signed encoding
        // 2: struct inner { int a @0; int b @32 }
        types.extend(record(5, KIND_STRUCT, 2, 8, &[[17, 1, 0], [19, 1, 32]]));
        // 3: typedef t -> inner
        types.extend(record(23, KIND_TYPEDEF, 0, 2, &[]));
        // 4: anonymous union { t c @0 }
        types.extend(record(0, KIND_UNION, 1, 8, &[[21, 3, 0]]));
        // 5: struct outer { int a @0; <anon union> @64 }
        types.extend(record(11, KIND_STRUCT, 2, 16, &[[17, 1, 0], [0, 4, 64]]));
        btf(&types, STRINGS)
    }

    #[test]
    fn resolves_through_anonymous_members_and_typedefs() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("inner", &["b"]).unwrap(), 4);
        assert_eq!(btf.member_offset("outer", &["a"]).unwrap(), 0);
        assert_eq!(btf.member_offset("outer", &["c"]).unwrap(), 8);
        assert_eq!(btf.member_offset("outer", &["c", "b"]).unwrap(), 12);
    }

    #[test]
    fn reports_missing_structs_and_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert!(matches!(
            btf.member_offset("nope", &["a"]),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.member_offset("outer", &["c", "zz"]),
            Err(BtfError::NoMember { .. })
        ));
    }

    #[test]
    fn rejects_truncated_and_corrupt_data() {
        let data = sample();
        for len in 0..data.len() - STRINGS.len() {
            assert!(Btf::parse(&data[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut bad_kind = data.clone();
        bad_kind[HEADER_LEN + 7] = 0x1f; // kind 31 of the first record
        assert!(Btf::parse(&bad_kind).is_err());
    }

    #[test]
    fn running_kernel_has_the_fields_probes_read() {
        let path = Path::new(VMLINUX);
        if !path.exists() {
            eprintln!("skipped: {VMLINUX} is absent on this kernel");
            return;
        }
        let offsets = kernel_offsets(&Btf::from_file(path).unwrap()).unwrap();
        assert_eq!(offsets.valid, 1);
        assert!(
            offsets.sock_net > 0 && offsets.sock_net < 512,
            "{offsets:?}"
        );
        assert!(offsets.net_inum < 4096, "{offsets:?}");
        // The file-table path of the dup probes.
        assert_eq!(offsets.files_valid, 1, "{offsets:?}");
        let f = offsets.files;
        assert!(f.task_files > 0 && f.task_files < 16_384, "{f:?}");
        assert!(f.fdt_fd > 0 && f.fdt_fd < 64, "{f:?}");
        assert_ne!(f.file_private, f.file_inode, "{f:?}");
        assert!(f.socket_sk > 0 && f.socket_sk < 128, "{f:?}");
    }
}
