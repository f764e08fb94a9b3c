//! `loupe check`: a preflight report a user can paste into a bug report.
//! Each hook type is tried for real (load and attach a program that does
//! nothing), then loupe's own probes are loaded and attached once.
use std::{fmt::Write as _, fs, path::Path, process::ExitCode};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{FEntry, KProbe, RawTracePoint, TracePoint, UProbe, uprobe::UProbeScope},
};
use loupe_common::layout::{KERNEL_OFFSETS_GLOBAL, KernelOffsets};

use crate::{
    describe_error,
    kernel::{self, Probes, arch, btf, tracefs},
    privileges::{self, Caps, Holder},
    refusal,
    targets::{procfs::Procfs, tls},
};

/// A kernel function present on every kernel loupe supports, used to try
/// kprobes and fentry.
const KERNEL_FN: &str = "do_sys_openat2";

/// The function the uprobe check attaches to.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn loupe_uprobe_check_target() -> u64 {
    std::hint::black_box(7)
}

#[derive(Default)]
struct Report {
    text: String,
    fatal: Vec<String>,
}

impl Report {
    fn line(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{key:<20}{value}");
    }

    fn hook(&mut self, name: &str, required: bool, result: Result<(), String>) {
        match result {
            Ok(()) => self.line(name, "yes"),
            Err(err) => {
                let need = if required { "NO (required)" } else { "no" };
                self.line(name, format!("{need}: {err}"));
                if required {
                    self.fatal.push(format!("{name}: {err}"));
                }
            }
        }
    }
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|err| format!("unknown ({err})"))
}

fn try_hooks(report: &mut Report) {
    let ebpf = EbpfLoader::new()
        .override_global(KERNEL_OFFSETS_GLOBAL, &KernelOffsets::default(), true)
        .load(kernel::OBJECT);
    let mut ebpf: Ebpf = match ebpf {
        Ok(ebpf) => {
            report.line("ring buffer", "yes");
            ebpf
        }
        Err(err) => {
            let err = format!("loading the object failed: {}", describe_error(&err));
            report.hook("ring buffer", true, Err(err));
            return;
        }
    };
    let result = (|| {
        let program: &mut TracePoint = program(&mut ebpf, kernel::EMPTY_PROGRAM)?;
        program.load().map_err(|e| describe_error(&e))?;
        program
            .attach("syscalls", "sys_enter_getpid")
            .map(drop)
            .map_err(|e| describe_error(&e))
    })();
    report.hook("tracepoint", true, result);
    let result = (|| {
        let program: &mut RawTracePoint = program(&mut ebpf, "loupe_check_raw")?;
        program.load().map_err(|e| describe_error(&e))?;
        program
            .attach("sys_enter")
            .map(drop)
            .map_err(|e| describe_error(&e))
    })();
    report.hook("raw tracepoint", false, result);
    let result = (|| {
        let program: &mut UProbe = program(&mut ebpf, "loupe_check_up")?;
        program.load().map_err(|e| describe_error(&e))?;
        let exe = fs::read_link("/proc/self/exe").map_err(|e| describe_error(&e))?;
        program
            .attach(
                "loupe_uprobe_check_target",
                exe,
                UProbeScope::CallingProcess,
            )
            .map_err(|e| describe_error(&e))?;
        std::hint::black_box(loupe_uprobe_check_target());
        Ok(())
    })();
    report.hook("uprobe", false, result);
    let result = (|| {
        let program: &mut KProbe = program(&mut ebpf, "loupe_check_kp")?;
        program.load().map_err(|e| refusal(&e))?;
        program
            .attach(KERNEL_FN, 0)
            .map(drop)
            .map_err(|e| refusal(&e))
    })();
    report.hook("kprobe", false, result);
    let result = (|| {
        let btf = Btf::from_sys_fs().map_err(|e| describe_error(&e))?;
        let program: &mut FEntry = program(&mut ebpf, "loupe_check_fe")?;
        program.load(KERNEL_FN, &btf).map_err(|e| refusal(&e))?;
        program.attach().map(drop).map_err(|e| refusal(&e))
    })();
    report.hook("fentry", false, result);
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| describe_error(&e))
}

/// Prefix of the kernel names of loupe's programs (kernel names keep 15
/// characters).
const PROGRAM_PREFIX: &str = "loupe_";

/// The loupe programs loaded in the kernel now (a running agent's, or ones a
/// killed agent left pinned): `none`, or how many and their names.
fn loaded_programs() -> String {
    let mut names = Vec::new();
    for info in aya::programs::loaded_programs() {
        match info {
            Ok(info) => {
                if let Some(name) = info.name_as_str().filter(|n| n.starts_with(PROGRAM_PREFIX)) {
                    names.push(format!("{name} (id {})", info.id()));
                }
            }
            Err(err) => return format!("unknown: {}", describe_error(&err)),
        }
    }
    if names.is_empty() {
        "none".to_owned()
    } else {
        format!("{} loaded: {}", names.len(), names.join(", "))
    }
}

/// Builds the report text and whether loupe can run here.
fn report(pids: &[u32]) -> Report {
    let mut report = Report::default();
    report.line("loupe", env!("CARGO_PKG_VERSION"));
    let machine = arch::machine();
    report.line("kernel", format!("{} ({machine})", kernel_release()));
    let btf_path = Path::new(btf::VMLINUX);
    let parsed = btf::Btf::from_file(btf_path);
    let frame = arch::check(parsed.as_ref()).map(|checked| {
        if checked {
            "checked against BTF"
        } else {
            "not checked: no BTF"
        }
    });
    match frame {
        Ok(frame) => report.line(
            "architecture",
            format!(
                "{} (syscall frame {frame}; syscall functions {}*)",
                arch::NATIVE.name,
                arch::NATIVE.syscall_prefix
            ),
        ),
        Err(err) => report.hook("architecture", true, Err(err.to_string())),
    }
    match parsed.and_then(|b| btf::kernel_offsets(&b)) {
        Ok(offsets) => {
            report.line(
                "btf",
                format!(
                    "yes ({}; sock->skc_net at {}, net->ns.inum at {}: network namespaces told apart)",
                    btf_path.display(),
                    offsets.sock_net,
                    offsets.net_inum
                ),
            );
            report.line(
                "fd table",
                if offsets.files_valid == 1 {
                    "yes (task->files->fdt offsets: connections moved with dup/dup2/dup3 are followed)"
                } else {
                    "no (offsets not in BTF: a forked child's connection moved with dup2 is missed)"
                },
            );
        }
        Err(err) => report.line(
            "btf",
            format!("no: {err} (ports are matched across namespaces)"),
        ),
    }
    match tracefs::find_or_mount() {
        Ok(tracefs::Mounted::Found(path)) => report.line("tracefs", path.display()),
        Ok(tracefs::Mounted::MountedByLoupe(path)) => {
            report.line(
                "tracefs",
                format!("{} (mounted by loupe now)", path.display()),
            );
        }
        Err(err) => report.hook("tracefs", true, Err(err.to_string())),
    }
    report.line(
        "debugfs",
        tracefs::mount_points(
            &fs::read_to_string("/proc/self/mounts").unwrap_or_default(),
            "debugfs",
        )
        .first()
        .map_or_else(
            || "not mounted (not needed)".into(),
            |p| p.display().to_string(),
        ),
    );
    capabilities(&mut report);
    // Before loupe check loads its own: what another loupe left loaded.
    report.line("loupe programs", loaded_programs());
    try_hooks(&mut report);
    match Probes::load(kernel::DataHookChoice::Auto) {
        Ok(probes) => {
            report.line(
                "loupe probes",
                format!(
                    "yes ({} programs attached and detached; syscalls through {})",
                    probes.attached,
                    probes.data_hook.as_str()
                ),
            );
            report.line(
                "tls plaintext",
                probes.tls_unavailable.as_ref().map_or_else(
                    || "yes (OpenSSL uprobes load; attached per process)".to_owned(),
                    |why| format!("no: {why} (HTTPS served or called is not seen)"),
                ),
            );
        }
        Err(err) => report.hook("loupe probes", true, Err(describe_error(&err))),
    }
    let proc = Procfs::default();
    for pid in pids {
        for line in tls::describe(&proc, *pid) {
            report.line("tls", line);
        }
    }
    report
}

/// The capabilities loupe uses: whether this process has each, what it is
/// for at start-up, and who keeps it afterwards.
fn capabilities(report: &mut Report) {
    let effective = match privileges::current() {
        Ok((_, effective)) => effective,
        Err(err) => {
            report.line("capabilities", format!("unknown ({err})"));
            return;
        }
    };
    for cap in privileges::CAPABILITIES {
        let has = if effective.has(cap.bit) { "yes" } else { "no " };
        let after = if cap.after.is_empty() {
            "dropped".to_owned()
        } else {
            let holders: Vec<String> = cap
                .after
                .iter()
                .map(|(holder, why)| match holder {
                    Holder::Agent => format!("kept: {why}"),
                    Holder::Helper => format!("the helper keeps it: {why}"),
                })
                .collect();
            holders.join("; ")
        };
        report.line(
            cap.name,
            format!("{has} ({}; after start-up {after})", cap.start),
        );
    }
    let last = privileges::last_capability();
    report.line(
        "after start-up",
        format!(
            "the agent keeps {}; its helper keeps {}; both set no_new_privs",
            Caps::kept_by(Holder::Agent, last),
            Caps::kept_by(Holder::Helper, last)
        ),
    );
}

/// Prints the report; the exit code says whether loupe can run here.
pub fn run(pids: &[u32]) -> ExitCode {
    let report = report(pids);
    print!("{}", report.text);
    if report.fatal.is_empty() {
        println!("{:<20}loupe can run here", "verdict");
        ExitCode::SUCCESS
    } else {
        println!("{:<20}loupe cannot run here:", "verdict");
        for reason in &report.fatal {
            println!("{:<20}- {reason}", "");
        }
        ExitCode::FAILURE
    }
}
