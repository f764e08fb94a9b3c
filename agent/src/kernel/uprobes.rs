//! The OpenSSL uprobes: loaded with the other probes, attached per tracked
//! process and file (by file offset, to that process only: processes that
//! merely share the library pay nothing), detached when the process goes.
use std::{num::NonZeroU32, path::Path};

use aya::{
    Ebpf,
    programs::{
        ProgramError, UProbe,
        uprobe::{UProbeLink, UProbeLinkId, UProbeScope},
    },
};
use loupe_common::layout::{TLS_HOOKS, TlsHook};

use super::LoadError;

/// One attached uprobe: its program and link.
pub struct TlsLink {
    program: &'static str,
    link: UProbeLinkId,
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut UProbe, LoadError> {
    ebpf.program_mut(name)
        .ok_or(LoadError::MissingProgram { program: name })?
        .try_into()
        .map_err(|source| LoadError::Load {
            program: name,
            source: Box::new(source),
        })
}

/// Programs that return at once, in place of every hook's (the
/// benchmark's floor: what the uprobes cost by themselves).
const EMPTY_ENTRY: &str = "loupe_check_up";
const EMPTY_RETURN: &str = "loupe_check_uret";

/// The programs run at a hook's entry and return (empty ones for the floor).
fn hook_programs(hook: &TlsHook, empty: bool) -> [Option<&'static str>; 2] {
    if empty {
        [Some(EMPTY_ENTRY), hook.ret.map(|_| EMPTY_RETURN)]
    } else {
        [Some(hook.entry), hook.ret]
    }
}

/// The programs of every hook, entry and return, each once.
fn programs(empty: bool) -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = TLS_HOOKS
        .iter()
        .flat_map(|hook| hook_programs(hook, empty))
        .flatten()
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// Loads the uprobe programs into the kernel (nothing is attached yet);
/// with `empty`, the ones that return at once.
pub fn load(ebpf: &mut Ebpf, empty: bool) -> Result<(), LoadError> {
    for name in programs(empty) {
        program(ebpf, name)?
            .load()
            .map_err(|source| LoadError::Load {
                program: name,
                source: Box::new(source),
            })?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("attaching {program} to {symbol} in {path} (process {pid}) failed: {source}")]
pub struct AttachError {
    program: &'static str,
    symbol: &'static str,
    path: String,
    pid: u32,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Attaches the hooks found in `file` (`(hook, file offset)`) for process
/// `pid` only: all of them, or none.
pub fn attach(
    ebpf: &mut Ebpf,
    pid: u32,
    file: &Path,
    found: &[(TlsHook, u64)],
    empty: bool,
) -> Result<Vec<TlsLink>, AttachError> {
    let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).unwrap_or(NonZeroU32::MIN));
    let mut links = Vec::new();
    for (hook, offset) in found {
        for name in hook_programs(hook, empty).into_iter().flatten() {
            let attached = program(ebpf, name).map_err(Box::from).and_then(|p| {
                p.attach(*offset, file, scope)
                    .map_err(|err: ProgramError| Box::from(err))
            });
            match attached {
                Ok(link) => links.push(TlsLink {
                    program: name,
                    link,
                }),
                Err(source) => {
                    detach(ebpf, links);
                    return Err(AttachError {
                        program: name,
                        symbol: hook.symbol,
                        path: file.display().to_string(),
                        pid,
                        source,
                    });
                }
            }
        }
    }
    Ok(links)
}

/// Detaches uprobes without waiting: each detach waits for a kernel grace
/// period (about 80 ms here, one uprobe at a time), so the links of a
/// process that went are dropped on a thread of their own while the agent
/// goes on reading records.
pub fn detach(ebpf: &mut Ebpf, links: Vec<TlsLink>) {
    let links: Vec<UProbeLink> = links
        .into_iter()
        .filter_map(
            |TlsLink {
                 program: name,
                 link,
             }| program(ebpf, name).ok()?.take_link(link).ok(),
        )
        .collect();
    if !links.is_empty() {
        std::thread::spawn(move || drop(links));
    }
}
