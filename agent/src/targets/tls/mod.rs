//! TLS plaintext through OpenSSL uprobes: finds the files of a tracked
//! process that hold OpenSSL (a `libssl` it maps, or its own executable,
//! as with Node.js), resolves the hooked functions once per file, and
//! keeps each process's uprobes in line with what it maps: libraries loaded
//! later are hooked at the next upkeep, a process's hooks go with it.
pub mod elf;
pub mod maps;

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    sync::Arc,
};

use loupe_common::layout::{TLS_HOOKS, TlsHook};
use tracing::{info, warn};

use self::maps::{FileId, Mapped, tls_candidates};
use crate::{
    kernel::{Probes, uprobes::TlsLink},
    targets::procfs::Procfs,
};

/// Processes hooked at once; each costs 9 perf events per OpenSSL file.
pub const MAX_PROCESSES: usize = 512;
/// Files whose symbols are remembered.
const MAX_FILES: usize = 1024;

/// Why an OpenSSL-named library is not hooked.
const NO_SYMBOLS: &str = "no SSL_read/SSL_write symbols (stripped, or not OpenSSL)";
/// The hooks a file has, with their file offsets (empty: not OpenSSL).
type Found = Arc<Vec<(TlsHook, u64)>>;

struct Hooked {
    file: FileId,
    links: Vec<TlsLink>,
}

#[derive(Default)]
pub struct TlsHooks {
    /// Off (`[http] tls = false`): nothing is hooked.
    disabled: bool,
    processes: HashMap<u32, Vec<Hooked>>,
    resolved: HashMap<FileId, Found>,
    /// Files already logged (once each).
    reported: HashSet<FileId>,
    /// `MAX_PROCESSES` reached and logged.
    full_reported: bool,
}

/// Whether `found` covers reading and writing: a usable OpenSSL.
fn usable(found: &[(TlsHook, u64)]) -> bool {
    let has = |prefix: &str| found.iter().any(|(h, _)| h.symbol.starts_with(prefix));
    has("SSL_read") && has("SSL_write")
}

/// The hooks present in the file at `path` (absent ones are left out).
fn resolve(path: &std::path::Path) -> Result<Vec<(TlsHook, u64)>, String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let names: Vec<&str> = TLS_HOOKS.iter().map(|h| h.symbol).collect();
    let offsets = elf::function_offsets(&file, &names).map_err(|err| err.to_string())?;
    Ok(TLS_HOOKS
        .iter()
        .zip(offsets)
        .filter_map(|(hook, offset)| Some((*hook, offset?)))
        .collect())
}

/// For `loupe check`: how `pid`'s TLS would be seen, one line per
/// OpenSSL file it maps, or why nothing would be.
pub fn describe(proc: &Procfs, pid: u32) -> Vec<String> {
    let Some(text) = proc.maps(pid) else {
        return vec![format!("process {pid}: cannot read its /proc/{pid}/maps")];
    };
    let lines: Vec<String> = tls_candidates(&text, proc.exe(pid).as_deref())
        .iter()
        .filter_map(
            |candidate| match resolve(&proc.in_root(pid, &candidate.path)) {
                Ok(found) if usable(&found) => {
                    let names: Vec<&str> = found.iter().map(|(h, _)| h.symbol).collect();
                    Some(format!(
                        "process {pid}: {} ({})",
                        candidate.path,
                        names.join(", ")
                    ))
                }
                Ok(_) if !candidate.is_library() => None,
                Ok(_) => Some(format!(
                    "process {pid}: {}: {NO_SYMBOLS}: its HTTPS is not seen",
                    candidate.path
                )),
                Err(err) => Some(format!("process {pid}: {}: {err}", candidate.path)),
            },
        )
        .collect();
    if lines.is_empty() {
        vec![format!(
            "process {pid}: no OpenSSL mapped (yet): plain TCP only; a library loaded \
             later is hooked when the agent next looks"
        )]
    } else {
        lines
    }
}

impl TlsHooks {
    pub fn new(enabled: bool) -> Self {
        Self {
            disabled: !enabled,
            ..Self::default()
        }
    }

    /// Whether `pid`'s OpenSSL calls are hooked.
    pub fn is_hooked(&self, pid: u32) -> bool {
        self.processes.contains_key(&pid)
    }

    /// Brings `pid`'s uprobes in line with the files it maps now.
    pub fn sync(&mut self, probes: &mut Probes, proc: &Procfs, pid: u32) {
        if self.disabled || probes.tls_unavailable.is_some() {
            return;
        }
        let Some(text) = proc.maps(pid) else {
            return; // gone: `forget` follows
        };
        let candidates = tls_candidates(&text, proc.exe(pid).as_deref());
        let (mut hooked, gone): (Vec<_>, Vec<_>) = self
            .processes
            .remove(&pid)
            .unwrap_or_default()
            .into_iter()
            .partition(|h| candidates.iter().any(|c| c.id() == h.file));
        for h in gone {
            probes.detach_tls(h.links);
        }
        for candidate in &candidates {
            let file = candidate.id();
            if hooked.iter().any(|h| h.file == file) {
                continue;
            }
            if hooked.is_empty() && self.processes.len() >= MAX_PROCESSES {
                if !std::mem::replace(&mut self.full_reported, true) {
                    warn!(
                        max = MAX_PROCESSES,
                        "too many processes with OpenSSL; TLS of further ones is not seen"
                    );
                }
                break;
            }
            let path = proc.in_root(pid, &candidate.path);
            let found = self.found(&file, candidate, &path);
            if !usable(&found) {
                continue;
            }
            match probes.attach_tls(pid, &path, &found) {
                Ok(links) => {
                    info!(pid, file = %candidate.path, hooks = found.len(), "TLS plaintext hooked");
                    hooked.push(Hooked { file, links });
                }
                Err(err) => {
                    if self.reported.insert(file) {
                        warn!(error = %err, "TLS plaintext of this file will not be seen");
                    }
                }
            }
        }
        if !hooked.is_empty() {
            self.processes.insert(pid, hooked);
        }
    }

    /// The hooks of a file, resolved on first sight. An OpenSSL library
    /// without them (stripped, or another TLS library under that name) is
    /// reported once; an executable without them is simply not OpenSSL.
    fn found(&mut self, file: &FileId, candidate: &Mapped, path: &std::path::Path) -> Found {
        if let Some(found) = self.resolved.get(file) {
            return Arc::clone(found);
        }
        let found = match resolve(path) {
            Ok(found) => found,
            Err(err) => {
                warn!(file = %candidate.path, error = %err, "cannot read a TLS library's symbols");
                Vec::new()
            }
        };
        if candidate.is_library() && !usable(&found) && self.reported.insert(file.clone()) {
            warn!(
                file = %candidate.path,
                "{NO_SYMBOLS}: HTTPS through this library is not seen"
            );
        }
        if self.resolved.len() >= MAX_FILES {
            self.resolved.clear();
        }
        let found = Arc::new(found);
        self.resolved.insert(file.clone(), Arc::clone(&found));
        found
    }

    /// `pid` is gone or replaced its program: its uprobes go.
    pub fn forget(&mut self, probes: &mut Probes, pid: u32) {
        for hooked in self.processes.remove(&pid).unwrap_or_default() {
            probes.detach_tls(hooked.links);
        }
    }
}
