//! Finds functions in an ELF file (a shared library or an executable) by
//! name, as the file offsets uprobes are attached at. Only the section
//! headers and the symbol tables are read, so a 100 MB binary (Node.js
//! links OpenSSL statically) costs its symbol tables, not its size.
//!
//! Pure and bounds-checked over any [`ReadAt`]: a malformed file gives an
//! error, never a panic or an unbounded allocation.
use std::{fs::File, os::unix::fs::FileExt as _};

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const SECTION_HEADER_LEN: usize = 64;
const SYMBOL_LEN: usize = 24;
/// Largest symbol or string table read (Node.js: 1.8 and 5.3 MB).
const MAX_TABLE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    #[error("not a 64-bit little-endian ELF file")]
    NotElf,
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    #[error("cannot read {0} bytes at offset {1}")]
    Read(usize, u64),
}

/// Random-access reads of a file's bytes.
pub trait ReadAt {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, ElfError>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, ElfError> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or(ElfError::Read(len, offset))
    }
}

impl ReadAt for File {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, ElfError> {
        let mut buf = vec![0; len];
        self.read_exact_at(&mut buf, offset)
            .map_err(|_| ElfError::Read(len, offset))?;
        Ok(buf)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[derive(Clone, Copy)]
struct Section {
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

fn sections(file: &(impl ReadAt + ?Sized)) -> Result<Vec<Section>, ElfError> {
    let header = file.read_at(0, 64).map_err(|_| ElfError::NotElf)?;
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err(ElfError::NotElf);
    }
    let (shoff, entsize, count) = (
        u64_at(&header, 0x28),
        usize::from(u16_at(&header, 0x3a)),
        usize::from(u16_at(&header, 0x3c)),
    );
    if count == 0 {
        return Ok(Vec::new());
    }
    if !(SECTION_HEADER_LEN..=4 * SECTION_HEADER_LEN).contains(&entsize) {
        return Err(ElfError::Malformed("unexpected section header size"));
    }
    let table = file.read_at(shoff, entsize * count)?;
    Ok(table
        .chunks_exact(entsize)
        .map(|h| Section {
            kind: u32_at(h, 4),
            addr: u64_at(h, 16),
            offset: u64_at(h, 24),
            size: u64_at(h, 32),
            link: u32_at(h, 40),
        })
        .collect())
}

fn table(file: &(impl ReadAt + ?Sized), section: &Section) -> Result<Vec<u8>, ElfError> {
    if section.size > MAX_TABLE {
        return Err(ElfError::Malformed("symbol or string table too large"));
    }
    file.read_at(section.offset, section.size as usize)
}

/// The file offsets of the defined functions named in `names`, in the same
/// order (`None`: not found). The dynamic symbol table is searched first,
/// then the full one if a name is still missing (absent when stripped).
pub fn function_offsets(
    file: &(impl ReadAt + ?Sized),
    names: &[&str],
) -> Result<Vec<Option<u64>>, ElfError> {
    let sections = sections(file)?;
    let mut found = vec![None; names.len()];
    for kind in [SHT_DYNSYM, SHT_SYMTAB] {
        if found.iter().all(Option::is_some) {
            break;
        }
        for symtab in sections.iter().filter(|s| s.kind == kind) {
            let strtab = sections
                .get(symtab.link as usize)
                .ok_or(ElfError::Malformed("symbol table without string table"))?;
            let (symbols, strings) = (table(file, symtab)?, table(file, strtab)?);
            for sym in symbols.chunks_exact(SYMBOL_LEN) {
                let (name_off, info, shndx, value) = (
                    u32_at(sym, 0) as usize,
                    sym[4],
                    usize::from(u16_at(sym, 6)),
                    u64_at(sym, 8),
                );
                if info & 0xf != STT_FUNC || shndx == 0 || value == 0 {
                    continue;
                }
                let Some(rest) = strings.get(name_off..) else {
                    continue;
                };
                let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
                let Some(slot) = names.iter().position(|n| n.as_bytes() == name) else {
                    continue;
                };
                if found[slot].is_some() {
                    continue;
                }
                // The kernel wants a file offset: the symbol's address
                // relative to its section, plus the section's offset.
                let Some(section) = sections.get(shndx) else {
                    continue;
                };
                found[slot] = value
                    .checked_sub(section.addr)
                    .and_then(|rel| rel.checked_add(section.offset));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF (the fuzz seed): null section, `.text` at address
    /// 0x1000 / offset 0x200, a dynamic symbol table with `SSL_read` (a
    /// function at 0x1010), `SSL_free` (undefined) and `data` (an object).
    fn sample() -> Vec<u8> {
        include_bytes!("../../../fuzz/seeds/kernel_texts/elf-dynsym").to_vec()
    }

    #[test]
    fn finds_defined_functions_as_file_offsets() {
        let file = sample();
        let found = function_offsets(&file[..], &["SSL_free", "SSL_read", "data", "nope"]);
        assert_eq!(found, Ok(vec![None, Some(0x210), None, None]));
    }

    #[test]
    fn refuses_other_files_and_survives_truncation() {
        assert_eq!(
            function_offsets(&b"#!/bin/sh\n"[..], &["SSL_read"]),
            Err(ElfError::NotElf)
        );
        let file = sample();
        for cut in 0..file.len() {
            let _ = function_offsets(&file[..cut], &["SSL_read"]);
        }
    }

    #[test]
    fn reads_the_system_libssl() {
        let path = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
        // Python's `ssl` module needs it: every machine loupe is tested on has it.
        let file = File::open(path).expect("libssl.so.3");
        let found = function_offsets(&file, &["SSL_read", "SSL_write_ex", "SSL_free"]).unwrap();
        assert!(found.iter().all(Option::is_some), "{found:?}");
    }
}
