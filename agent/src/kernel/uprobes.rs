//! The OpenSSL uprobes: loaded with the other probes, attached per tracked
//! process and file (by file offset, to that process only: processes that
//! merely share the library pay nothing), detached when the process goes.
//!
//! Creating a uprobe takes `CAP_SYS_ADMIN` (the kernel has asked for it
//! again since 2025), which the agent gives up once its probes are loaded:
//! an [`Opener`] creates the uprobe's perf event (in the agent, or in its
//! privileged helper), and the agent attaches the loaded program to it,
//! which takes no capability.
use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    sync::OnceLock,
};

use aya::{Ebpf, programs::UProbe};
use loupe_common::layout::{TLS_HOOKS, TlsHook};

use super::LoadError;

/// One attached uprobe: its perf event (closing it detaches the program).
pub struct TlsLink {
    _event: OwnedFd,
}

/// Creates the perf event of one uprobe: at `offset` in `file`, for
/// process `pid` only, at the function's return when `ret`.
pub trait Opener: Send + Sync {
    fn uprobe(&self, file: &File, pid: u32, offset: u64, ret: bool) -> io::Result<OwnedFd>;
}

/// The opener that needs `CAP_SYS_ADMIN` in this process.
pub struct InProcess;

impl Opener for InProcess {
    fn uprobe(&self, file: &File, pid: u32, offset: u64, ret: bool) -> io::Result<OwnedFd> {
        open_event(file, pid, offset, ret)
    }
}

/// The uprobe PMU's type and the config bit that makes a return probe.
fn uprobe_pmu() -> io::Result<(u32, u32)> {
    static PMU: OnceLock<Result<(u32, u32), String>> = OnceLock::new();
    let read = || -> Result<(u32, u32), String> {
        let dir = "/sys/bus/event_source/devices/uprobe";
        let text = |name: &str| {
            std::fs::read_to_string(format!("{dir}/{name}"))
                .map_err(|err| format!("{dir}/{name}: {err}"))
        };
        let kind = text("type")?
            .trim()
            .parse()
            .map_err(|_| format!("{dir}/type is not a number"))?;
        // `config:0`: the bit of `config` that asks for a return probe.
        let bit = text("format/retprobe")?
            .trim()
            .strip_prefix("config:")
            .and_then(|bit| bit.parse().ok())
            .ok_or_else(|| format!("{dir}/format/retprobe is not `config:N`"))?;
        Ok((kind, bit))
    };
    PMU.get_or_init(read).clone().map_err(io::Error::other)
}

/// `struct perf_event_attr` up to `config2` (`PERF_ATTR_SIZE_VER1`).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// The uprobe's path.
    config1: u64,
    /// The uprobe's file offset.
    config2: u64,
}

/// Creates a uprobe's perf event in this process (`CAP_SYS_ADMIN`, and
/// `CAP_SYS_PTRACE` for a process of another user or with more
/// capabilities). `file` is named through `/proc/self/fd`, so the path
/// is resolved from no other process's view.
pub fn open_event(file: &File, pid: u32, offset: u64, ret: bool) -> io::Result<OwnedFd> {
    let (kind, ret_bit) = uprobe_pmu()?;
    let path =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)?;
    let attr = PerfEventAttr {
        kind,
        size: size_of::<PerfEventAttr>() as u32,
        config: if ret { 1 << ret_bit } else { 0 },
        config1: path.as_ptr() as u64,
        config2: offset,
        ..PerfEventAttr::default()
    };
    // SAFETY: a valid attr of the size it states; `path` outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            pid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `PERF_EVENT_IOC_SET_BPF` and `PERF_EVENT_IOC_ENABLE`.
const SET_BPF: libc::c_ulong = 0x4004_2408;
const ENABLE: libc::c_ulong = 0x2400;

/// Runs `program` on `event` from now on.
fn attach_program(
    program: &UProbe,
    event: &OwnedFd,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let prog = program.fd()?.as_fd().as_raw_fd();
    for (request, argument) in [(SET_BPF, prog), (ENABLE, 0)] {
        // SAFETY: perf event ioctls on a descriptor we own.
        if unsafe { libc::ioctl(event.as_raw_fd(), request as _, argument) } != 0 {
            return Err(Box::new(io::Error::last_os_error()));
        }
    }
    Ok(())
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
    opener: &dyn Opener,
) -> Result<Vec<TlsLink>, AttachError> {
    let failed = |program, symbol, source| AttachError {
        program,
        symbol,
        path: file.display().to_string(),
        pid,
        source,
    };
    let opened = File::open(file);
    let mut links = Vec::new();
    for (hook, offset) in found {
        let [entry, ret] = hook_programs(hook, empty);
        for (name, is_ret) in [(entry, false), (ret, true)] {
            let Some(name) = name else { continue };
            let attached = (|| {
                let file = opened
                    .as_ref()
                    .map_err(|err| io::Error::new(err.kind(), err.to_string()))?;
                let event = opener.uprobe(file, pid, *offset, is_ret)?;
                attach_program(program(ebpf, name)?, &event)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(event)
            })();
            match attached {
                Ok(event) => links.push(TlsLink { _event: event }),
                Err(source) => {
                    detach(links);
                    return Err(failed(name, hook.symbol, source));
                }
            }
        }
    }
    Ok(links)
}

/// Detaches uprobes without waiting: each detach waits for a kernel grace
/// period (about 80 ms here, one uprobe at a time), so the events of a
/// process that went are closed on a thread of their own while the agent
/// goes on reading records.
pub fn detach(links: Vec<TlsLink>) {
    if !links.is_empty() {
        std::thread::spawn(move || drop(links));
    }
}
