//! Loading the probes into the kernel, attaching them, and handing out their
//! maps. Dropping [`Probes`] detaches and unloads everything it created.
pub mod arch;
mod bitmap;
pub mod btf;
mod raises;
pub mod tracefs;
pub mod uprobes;

use std::time::Instant;

use aya::{
    Ebpf, EbpfError, EbpfLoader, Pod,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, Program, ProgramError, TracePoint},
};
use loupe_common::{
    layout::{
        CONTROL_FUNCTIONS, CONTROL_TRACEPOINTS, DATA_FUNCTIONS, DATA_TRACEPOINTS, FunctionHook,
        KERNEL_OFFSETS_GLOBAL, KernelOffsets, SYS_EXIT_PROGRAMS, SYS_EXIT_TRACEPOINT, TRACEPOINTS,
        TlsHook, Tracepoint,
    },
    maps::{self, CaptureRoute, FdInfo, FdKey, ListenKey, SockOwner, Target, TlsKey, TupleKey},
};
use tracing::{info, warn};

/// A tracepoint program that returns at once (also loaded by `loupe check`).
pub const EMPTY_PROGRAM: &str = "loupe_check_tp";

/// The probes object, built by `build.rs`.
#[cfg(feature = "probes")]
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/loupe"));
/// Built without the `probes` feature (for fuzzing the parsers): no object.
#[cfg(not(feature = "probes"))]
pub static OBJECT: &[u8] = &[];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error(transparent)]
    Arch(#[from] arch::ArchError),
    #[error("fentry/fexit need the kernel's BTF, which cannot be read: {reason}")]
    NoBtf { reason: String },
    #[error("the kernel has no function {function} for {program} (its BTF does not list it)")]
    NoFunction {
        program: &'static str,
        function: String,
    },
    #[error(
        "loading the eBPF object failed: {source}; loupe needs root or CAP_BPF + CAP_PERFMON \
         (run `loupe check` for details)"
    )]
    Object {
        #[source]
        source: Box<EbpfError>,
    },
    #[error("program {program} is missing from the eBPF object (agent/probes build mismatch)")]
    MissingProgram { program: &'static str },
    #[error("loading program {program} failed: {source}")]
    Load {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching {program} to tracepoint {category}:{name} failed: {source}")]
    Attach {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("map {map} is missing or has the wrong type: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("mapping map {map} into memory failed: {source} (Linux 5.5+ maps arrays)")]
    Mapping {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// How to hook the syscalls (the connection syscalls, and the data
/// syscalls whose bytes are read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DataHookChoice {
    /// fentry/fexit where the kernel allows it, else the syscall
    /// tracepoints (Linux 5.15+), else the BTF tracepoint for the data.
    #[default]
    Auto,
    /// fentry/fexit on the syscalls' functions (`__x64_sys_*`,
    /// `__arm64_sys_*`) only.
    Fentry,
    /// The data syscalls' own exit tracepoints only.
    Tracepoints,
    /// The BTF tracepoint on the raw `sys_exit` only.
    SysExit,
    /// The data syscalls' exit tracepoints (and the OpenSSL uprobes) with
    /// programs that return at once: captures nothing; the benchmark's
    /// floor (what the hooks cost alone).
    #[value(hide = true)]
    Empty,
}

/// How the syscalls are hooked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataHook {
    /// The data syscalls' own exit tracepoints: they run for those nine
    /// syscalls only (measured cheaper per request than the BTF hook).
    SyscallTracepoints,
    /// One BTF tracepoint on the raw `sys_exit`: runs on every syscall exit
    /// of every process, for kernels older than `bpf_task_pt_regs` (5.15).
    BtfSysExit,
    /// The syscall tracepoints with empty programs (`DataHookChoice::Empty`).
    EmptyPrograms,
    /// fentry/fexit on each hooked syscall's function: no trace record
    /// per call, and no syscall tracepoint (which puts every syscall of
    /// every process on the kernel's slower tracing path).
    Fentry,
}

impl DataHook {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BtfSysExit => "tp_btf/sys_exit",
            Self::SyscallTracepoints => "syscall tracepoints",
            Self::EmptyPrograms => "syscall tracepoints, empty programs (captures nothing)",
            Self::Fentry => "fentry/fexit",
        }
    }
}

fn attach_tracepoint(ebpf: &mut Ebpf, tp: &Tracepoint) -> Result<(), LoadError> {
    let load_err = |source| LoadError::Load {
        program: tp.program,
        source: Box::new(source),
    };
    let program: &mut TracePoint = ebpf
        .program_mut(tp.program)
        .ok_or(LoadError::MissingProgram {
            program: tp.program,
        })?
        .try_into()
        .map_err(load_err)?;
    if program.fd().is_err() {
        program.load().map_err(load_err)?;
    }
    program
        .attach(tp.category, tp.name)
        .map_err(|source| LoadError::Attach {
            program: tp.program,
            category: tp.category,
            name: tp.name,
            source: Box::new(source),
        })?;
    Ok(())
}

/// Whether this architecture has the tracepoint's syscall (arm64 has no
/// `dup2`).
fn on_this_arch(tp: &&Tracepoint) -> bool {
    tp.syscall()
        .is_none_or(|name| arch::NATIVE.has_syscall(name))
}

/// Attaches every tracepoint of `list` (of this architecture), or none: on
/// an error those already attached are detached again. Returns how many
/// were attached.
fn attach_tracepoints(
    ebpf: &mut Ebpf,
    tracefs: &std::path::Path,
    list: &[Tracepoint],
) -> Result<usize, LoadError> {
    let result = list.iter().filter(on_this_arch).try_for_each(|tp| {
        tracefs::check_tracepoint(tracefs, tp)?;
        attach_tracepoint(ebpf, tp)
    });
    if let Err(err) = result {
        for tp in list {
            if let Some(Ok(program)) = ebpf
                .program_mut(tp.program)
                .map(<&mut TracePoint>::try_from)
            {
                let _ = program.unload();
            }
        }
        return Err(err);
    }
    Ok(list.iter().filter(on_this_arch).count())
}

/// The running kernel's BTF, for the programs that `program` names.
fn kernel_btf(program: &'static str) -> Result<aya::Btf, LoadError> {
    aya::Btf::from_sys_fs().map_err(|err| LoadError::Load {
        program,
        source: Box::new(ProgramError::Btf(err)),
    })
}

/// Loads and attaches a fentry or fexit program on its syscall's kernel
/// function.
fn attach_function(ebpf: &mut Ebpf, btf: &aya::Btf, hook: &FunctionHook) -> Result<(), LoadError> {
    let load_err = |source| LoadError::Load {
        program: hook.program,
        source: Box::new(source),
    };
    let function = arch::syscall_function(hook.syscall);
    match ebpf.program_mut(hook.program) {
        Some(Program::FEntry(program)) => {
            program.load(&function, btf).map_err(load_err)?;
            program.attach().map(drop).map_err(load_err)
        }
        Some(Program::FExit(program)) => {
            program.load(&function, btf).map_err(load_err)?;
            program.attach().map(drop).map_err(load_err)
        }
        _ => Err(LoadError::MissingProgram {
            program: hook.program,
        }),
    }
}

/// The kernel's BTF as loupe parsed it, which fentry/fexit need.
fn parsed_btf(btf: &Result<btf::Btf, btf::BtfError>) -> Result<&btf::Btf, LoadError> {
    btf.as_ref().map_err(|err| LoadError::NoBtf {
        reason: err.to_string(),
    })
}

/// The fentry/fexit hooks of this architecture's syscalls.
fn function_hooks() -> impl Iterator<Item = &'static FunctionHook> {
    CONTROL_FUNCTIONS
        .iter()
        .chain(DATA_FUNCTIONS)
        .filter(|hook| arch::NATIVE.has_syscall(hook.syscall))
}

/// Every syscall hook through fentry/fexit (`CONTROL_FUNCTIONS` and
/// `DATA_FUNCTIONS`), or none: on an error those already loaded are
/// unloaded again (which detaches them). The kernel's BTF (`parsed`) must
/// list each syscall's function.
fn attach_functions(ebpf: &mut Ebpf, parsed: &btf::Btf) -> Result<usize, LoadError> {
    let hooks = function_hooks;
    if let Some(hook) = hooks().find(|h| !parsed.has_function(&arch::syscall_function(h.syscall))) {
        return Err(LoadError::NoFunction {
            program: hook.program,
            function: arch::syscall_function(hook.syscall),
        });
    }
    let btf = kernel_btf(CONTROL_FUNCTIONS[0].program)?;
    if let Err(err) = hooks().try_for_each(|hook| attach_function(ebpf, &btf, hook)) {
        for hook in hooks() {
            let _ = match ebpf.program_mut(hook.program) {
                Some(Program::FEntry(program)) => program.unload(),
                Some(Program::FExit(program)) => program.unload(),
                _ => Ok(()),
            };
        }
        return Err(err);
    }
    Ok(hooks().count())
}

/// Loads and attaches the `tp_btf/sys_exit` programs; returns how many.
fn attach_sys_exit(ebpf: &mut Ebpf) -> Result<usize, LoadError> {
    let btf = kernel_btf(SYS_EXIT_PROGRAMS[0])?;
    for &name in SYS_EXIT_PROGRAMS {
        let load_err = |source| LoadError::Load {
            program: name,
            source: Box::new(source),
        };
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram { program: name })?
            .try_into()
            .map_err(load_err)?;
        program.load(SYS_EXIT_TRACEPOINT, &btf).map_err(load_err)?;
        program.attach().map_err(load_err)?;
    }
    Ok(SYS_EXIT_PROGRAMS.len())
}

/// The loaded, attached probes and their maps.
pub struct Probes {
    pub tracked: HashMap<MapData, u32, Target>,
    tracked_bits: bitmap::TrackedBits,
    pub fds: HashMap<MapData, FdKey, FdInfo>,
    tls_conns: HashMap<MapData, TlsKey, FdInfo>,
    pub listeners: HashMap<MapData, ListenKey, SockOwner>,
    pub sockets: HashMap<MapData, u64, SockOwner>,
    pub preexisting: HashMap<MapData, TupleKey, SockOwner>,
    pub pending_fd: HashMap<MapData, u32, u32>,
    pub late_accepts: HashMap<MapData, u32, u32>,
    pub switches: Array<MapData, u32>,
    capture_routes: Array<MapData, CaptureRoute>,
    raises: raises::Raises,
    pub counters: PerCpuArray<MapData, u64>,
    /// Taken by the event reader.
    pub events: Option<RingBuf<MapData>>,
    pub attached: usize,
    pub data_hook: DataHook,
    /// Network namespaces are told apart (kernel offsets resolved from BTF).
    pub netns_aware: bool,
    /// Why the OpenSSL uprobes could not be loaded, if they could not.
    pub tls_unavailable: Option<String>,
    /// Creates the uprobes' perf events (see [`uprobes::Opener`]).
    opener: Box<dyn uprobes::Opener>,
    /// Owns the programs and their links (fields drop in order: this last).
    ebpf: Ebpf,
}

/// Removes the entries of `map` whose key matches `gone` (keys are listed
/// first: the kernel's iteration does not survive removals).
pub fn remove_keys<K: Pod, V: Pod>(map: &mut HashMap<MapData, K, V>, gone: impl Fn(&K) -> bool) {
    let keys: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| gone(k))
        .collect();
    for key in keys {
        let _ = map.remove(&key);
    }
}

fn map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let raw = ebpf.take_map(name).ok_or(LoadError::Map {
        map: name,
        source: Box::new(MapError::InvalidName {
            name: name.to_owned(),
        }),
    })?;
    T::try_from(raw).map_err(|source| LoadError::Map {
        map: name,
        source: Box::new(source),
    })
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-cloud-amd64`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Raises `RLIMIT_MEMLOCK` on kernels that still charge BPF memory to it
/// (before 5.11); newer kernels charge the memory cgroup instead.
fn raise_memlock() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if parse_release(release.trim()).is_some_and(|version| version >= (5, 11)) {
        return;
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        warn!("could not raise RLIMIT_MEMLOCK (needs CAP_SYS_RESOURCE); loading may fail");
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one: every attached uprobe
/// holds a perf event fd (nine per hooked OpenSSL file and process).
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

/// Resolves the kernel offsets the probes use to tell network namespaces
/// apart; without them ports are matched across namespaces.
fn kernel_offsets(btf: Result<&btf::Btf, &btf::BtfError>) -> KernelOffsets {
    match btf
        .map_err(ToString::to_string)
        .and_then(|btf| btf::kernel_offsets(btf).map_err(|e| e.to_string()))
    {
        Ok(offsets) => {
            if offsets.files_valid == 0 {
                warn!(
                    "file-table offsets not in BTF: a connection a forked child moves with dup2 is not followed"
                );
            }
            offsets
        }
        Err(err) => {
            warn!(error = %err, "network namespaces will not be told apart");
            KernelOffsets::default()
        }
    }
}

impl Probes {
    /// Mounts tracefs if needed, checks every tracepoint layout, loads the
    /// object and attaches every probe. The data syscalls are captured from
    /// the raw `sys_exit` tracepoint where BTF tracepoints load, else from
    /// their own tracepoints.
    pub fn load(choice: DataHookChoice) -> Result<Self, LoadError> {
        raise_memlock();
        raise_nofile();
        let tracefs = tracefs::find_or_mount()?;
        if let tracefs::Mounted::MountedByLoupe(path) = &tracefs {
            info!(path = %path.display(), "mounted tracefs");
        }
        for tracepoint in TRACEPOINTS {
            tracefs::check_tracepoint(tracefs.path(), tracepoint)?;
        }
        let btf = btf::Btf::from_file(std::path::Path::new(btf::VMLINUX));
        arch::check(btf.as_ref())?;
        if let Err(err) = &btf {
            warn!(error = %err, "cannot check the syscall frame against BTF");
        }
        let offsets = kernel_offsets(btf.as_ref());
        let mut ebpf = EbpfLoader::new()
            .override_global(KERNEL_OFFSETS_GLOBAL, &offsets, true)
            .load(OBJECT)
            .map_err(|source| LoadError::Object {
                source: Box::new(source),
            })?;
        let mut attached = 0;
        for tp in TRACEPOINTS {
            attach_tracepoint(&mut ebpf, tp)?;
            attached += 1;
        }
        let functions = match choice {
            DataHookChoice::Fentry => Some(attach_functions(&mut ebpf, parsed_btf(&btf)?)?),
            DataHookChoice::Auto => parsed_btf(&btf)
                .and_then(|btf| attach_functions(&mut ebpf, btf))
                .inspect_err(|err| {
                    info!(
                        reason = %crate::refusal(err),
                        "fentry/fexit not available here: the data syscalls are hooked with \
                         their tracepoints"
                    );
                })
                .ok(),
            _ => None,
        };
        let data_hook = if let Some(count) = functions {
            attached += count;
            DataHook::Fentry
        } else {
            let tracefs = tracefs.path();
            attached += attach_tracepoints(&mut ebpf, tracefs, CONTROL_TRACEPOINTS)?;
            match choice {
                DataHookChoice::SysExit => {
                    attached += attach_sys_exit(&mut ebpf)?;
                    DataHook::BtfSysExit
                }
                DataHookChoice::Empty => {
                    for tp in DATA_TRACEPOINTS {
                        tracefs::check_tracepoint(tracefs, tp)?;
                        let empty = Tracepoint {
                            program: EMPTY_PROGRAM,
                            ..*tp
                        };
                        attach_tracepoint(&mut ebpf, &empty)?;
                        attached += 1;
                    }
                    DataHook::EmptyPrograms
                }
                DataHookChoice::Tracepoints => {
                    attached += attach_tracepoints(&mut ebpf, tracefs, DATA_TRACEPOINTS)?;
                    DataHook::SyscallTracepoints
                }
                // `Auto` where fentry/fexit were refused (`Fentry` returned
                // with the error above).
                DataHookChoice::Auto | DataHookChoice::Fentry => {
                    match attach_tracepoints(&mut ebpf, tracefs, DATA_TRACEPOINTS) {
                        Ok(count) => {
                            attached += count;
                            DataHook::SyscallTracepoints
                        }
                        Err(err) => {
                            info!(
                                reason = %crate::refusal(&err),
                                "the data syscalls' tracepoints are not available here: they \
                                 are hooked with tp_btf/sys_exit"
                            );
                            attached += attach_sys_exit(&mut ebpf)?;
                            DataHook::BtfSysExit
                        }
                    }
                }
            }
        };
        let tls_unavailable = match uprobes::load(&mut ebpf, data_hook == DataHook::EmptyPrograms) {
            Ok(()) => None,
            Err(err) => {
                warn!(error = %err, "TLS plaintext will not be seen: uprobes do not load");
                Some(err.to_string())
            }
        };
        info!(
            attached,
            netns_aware = offsets.valid == 1,
            data_hook = data_hook.as_str(),
            "probes attached"
        );
        Ok(Self {
            tracked: map(&mut ebpf, maps::TRACKED)?,
            tracked_bits: bitmap::TrackedBits::new(map(&mut ebpf, maps::TRACKED_BITS)?).map_err(
                |source| LoadError::Mapping {
                    map: maps::TRACKED_BITS,
                    source,
                },
            )?,
            fds: map(&mut ebpf, maps::FDS)?,
            tls_conns: map(&mut ebpf, maps::TLS_CONNS)?,
            listeners: map(&mut ebpf, maps::LISTENERS)?,
            sockets: map(&mut ebpf, maps::SOCKETS)?,
            preexisting: map(&mut ebpf, maps::PREEXISTING)?,
            pending_fd: map(&mut ebpf, maps::PENDING_FD)?,
            late_accepts: map(&mut ebpf, maps::LATE_ACCEPTS)?,
            switches: map(&mut ebpf, maps::SWITCHES)?,
            capture_routes: map(&mut ebpf, maps::CAPTURE_ROUTES)?,
            raises: raises::Raises::new(map(&mut ebpf, maps::CAPTURE_RAISES)?),
            counters: map(&mut ebpf, maps::COUNTERS)?,
            events: Some(map(&mut ebpf, maps::EVENTS)?),
            attached,
            data_hook,
            netns_aware: offsets.valid == 1,
            tls_unavailable,
            opener: Box::new(uprobes::InProcess),
            ebpf,
        })
    }

    /// Sets or clears `pid`'s bit in the probes' tracked bitmap.
    pub fn set_tracked_bit(&mut self, pid: u32, on: bool) {
        self.tracked_bits.set(pid, on);
    }

    /// Raises the capture budget of one connection (`conn` of its
    /// records): from its next syscall on, its bytes are copied from their
    /// start, up to `bytes` in all.
    pub fn raise_capture(&mut self, tgid: u32, conn: u64, bytes: u32) {
        let pending = self.raises.raise(tgid, conn, bytes, Instant::now());
        self.set_switch(maps::SWITCH_RAISES, pending);
    }

    /// Forgets the raises the probes took, withdraws those left unclaimed.
    pub fn sweep_raises(&mut self, now: Instant) {
        if self.raises.pending() && !self.raises.sweep(now) {
            self.set_switch(maps::SWITCH_RAISES, false);
        }
    }

    /// Attaches the OpenSSL uprobes found in `file` for process `pid`.
    pub fn attach_tls(
        &mut self,
        pid: u32,
        file: &std::path::Path,
        found: &[(TlsHook, u64)],
    ) -> Result<Vec<uprobes::TlsLink>, uprobes::AttachError> {
        let empty = self.data_hook == DataHook::EmptyPrograms;
        uprobes::attach(&mut self.ebpf, pid, file, found, empty, &*self.opener)
    }

    /// Detaches uprobes in the background.
    pub fn detach_tls(&mut self, links: Vec<uprobes::TlsLink>) {
        uprobes::detach(links);
    }

    /// Creates the uprobes' perf events through `opener` from now on.
    pub fn set_uprobe_opener(&mut self, opener: Box<dyn uprobes::Opener>) {
        self.opener = opener;
    }

    /// Drops the TLS connections of a process that is gone (a reused PID
    /// must not find them).
    pub fn forget_tls_connections(&mut self, tgid: u32) {
        remove_keys(&mut self.tls_conns, |key| key.tgid == tgid);
    }

    /// The request-line prefixes whose responses the probes copy from
    /// their start (at most `CAPTURE_ROUTES_LEN`; the caller folds more
    /// into one that matches everything).
    pub fn set_capture_routes(&mut self, routes: &[CaptureRoute]) {
        let mut used = 0;
        for (index, route) in (0..maps::CAPTURE_ROUTES_LEN).zip(routes) {
            match self.capture_routes.set(index, route, 0) {
                Ok(()) => used += 1,
                Err(err) => warn!(index, error = %err, "cannot set a response capture route"),
            }
        }
        if let Err(err) = self.switches.set(maps::SWITCH_CAPTURE_ROUTES, used, 0) {
            warn!(error = %err, "cannot turn the response capture routes on");
        }
    }

    /// Turns one of the probes' switches on or off.
    pub fn set_switch(&mut self, index: u32, on: bool) {
        self.set_switch_value(index, u32::from(on));
    }

    pub fn set_switch_value(&mut self, index: u32, value: u32) {
        if let Err(err) = self.switches.set(index, value, 0) {
            warn!(index, error = %err, "cannot set a probe switch");
        }
    }

    /// Sum over CPUs of one of the probes' counters.
    pub fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-28-cloud-amd64"), Some((5, 10)));
        assert_eq!(parse_release("6.1"), Some((6, 1)));
        assert_eq!(parse_release("garbage"), None);
    }
}
