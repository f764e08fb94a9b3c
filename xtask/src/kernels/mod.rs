//! `cargo xtask kernels`: the kernel matrix. Boots Debian's packaged kernels,
//! x86_64 and arm64, under qemu (TCG: nested virtualisation is not
//! available here) with an initramfs holding loupe built for the guest's
//! architecture, its shared libraries, a static busybox of that
//! architecture and the smoke script as `/init`; runs the same script on
//! the host; reads the `loupe-smoke:` lines and asserts exact counts in
//! every place and data hook mode. Kernel and busybox packages are
//! resolved through Debian's meta packages (versioned names go when the
//! kernel ABI is bumped), downloaded with apt (another architecture's
//! after `dpkg --add-architecture`), and kept in `target/kernels`.
mod debian;
mod judge;

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    arch::Arch,
    build,
    sh::{self, output, root},
};

/// The smoke test; `/init` in the guests.
const SMOKE: &str = include_str!("smoke.sh");

/// A guest kernel of the matrix.
struct Kernel {
    label: &'static str,
    /// Debian's meta package (of the kernel's architecture).
    meta: &'static str,
    arch: Arch,
    /// Run by `cargo xtask test` too, not only by `cargo xtask kernels`.
    in_ci: bool,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        label: "Debian 12 LTS",
        meta: "linux-image-cloud-amd64",
        arch: Arch::X86_64,
        in_ci: true,
    },
    Kernel {
        label: "Debian 12 backports",
        meta: "linux-image-6.12-cloud-amd64",
        arch: Arch::X86_64,
        in_ci: true,
    },
    // 6.1 on arm64 has no fentry (no direct calls): the tracepoint paths.
    Kernel {
        label: "Debian 12 LTS arm64",
        meta: "linux-image-cloud-arm64",
        arch: Arch::Aarch64,
        in_ci: false,
    },
    // 6.12 on arm64 runs every hook mode, fentry/fexit among them.
    Kernel {
        label: "Debian 12 backports arm64",
        meta: "linux-image-6.12-cloud-arm64",
        arch: Arch::Aarch64,
        in_ci: true,
    },
];

/// Which guests run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    /// Every kernel (`cargo xtask kernels`).
    Full,
    /// One arm64 kernel fewer (`cargo xtask test`, inside CI's budget).
    Ci,
}

/// What the script sends in each mode.
const EXPECTED: judge::Expected = judge::Expected {
    requests: 37,
    idle: 5,
    modes: &["auto", "tracepoints", "sys-exit"],
};

/// One-byte copies of the untracked dd (the script's default).
const DD_COUNT: u32 = 300_000;

/// Ports of the host run (the guests use the script's defaults).
const HOST_HTTP_PORT: u16 = 28_080;
const HOST_LATE_PORT: u16 = 28_081;
const HOST_METRICS_PORT: u16 = 29_477;

/// A guest that has not powered off by then is stopped and fails.
const GUEST_TIMEOUT: Duration = Duration::from_secs(480);

const BUSYBOX: &str = "/bin/busybox";

struct Place {
    name: String,
    arch: Arch,
    report: judge::Report,
    seconds: f64,
}

/// Runs the matrix; `builds`: builds for other architectures already
/// under way.
pub fn run(
    only: Option<&str>,
    matrix: Matrix,
    mut builds: Vec<build::CrossBuild>,
) -> anyhow::Result<()> {
    let wanted = |name: &str| only.is_none_or(|only| name.contains(only));
    let started = Instant::now();
    let dir = root().join("target/kernels");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut places = Vec::new();
    // Each architecture's guests boot one after another, the two
    // architectures' at the same time: a guest leaves the CPU idle much of
    // the time (it waits for connections to close, for loupe to exit), and
    // only timings, never counts, depend on the CPU it gets.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut runs = Vec::new();
        for arch in Arch::ALL {
            let on_host = arch == Arch::native() && wanted("host");
            let mut kernels = Vec::new();
            for kernel in KERNELS.iter().filter(|k| k.arch == arch) {
                if matrix == Matrix::Ci && !kernel.in_ci {
                    continue;
                }
                let package = debian::resolve_or_update(&debian::package_name(kernel.meta, arch)?)?;
                if wanted(&package) {
                    kernels.push((kernel, debian::kernel(&dir, &package)?));
                }
            }
            if kernels.is_empty() && !on_host {
                continue;
            }
            let loupe = match builds.iter().position(|b| b.arch() == arch) {
                Some(at) => builds.swap_remove(at).finish()?,
                None => build::loupe(arch)?,
            };
            if on_host {
                places.push(host(&dir, &loupe)?);
            }
            if kernels.is_empty() {
                continue;
            }
            let initrd = initramfs(&dir, &loupe, arch)?;
            runs.push(scope.spawn(move || {
                kernels
                    .into_iter()
                    .map(|(kernel, vmlinuz)| guest(kernel, &vmlinuz, &initrd))
                    .collect::<anyhow::Result<Vec<_>>>()
            }));
        }
        for run in runs {
            places.extend(run.join().expect("a guest thread panicked")?);
        }
        Ok(())
    })?;
    if places.is_empty() {
        bail!("no place of the matrix matches {only:?}");
    }
    let mut failed = false;
    println!(
        "\n{:<34} {:<8} {:<26} {:<6} {:<6} {:<22} result",
        "place", "arch", "kernel", "kprobe", "fentry", "syscall hooks (auto)"
    );
    for place in &places {
        let mut problems = place.report.problems(EXPECTED);
        problems.extend(place.report.architecture_problem(place.arch.name()));
        let yes_no = |hook| if place.report.has(hook) { "yes" } else { "no" };
        let result = if problems.is_empty() {
            let timings = |key: &str, modes: &[&str]| -> String {
                modes
                    .iter()
                    .map(|m| place.report.modes.get(*m).and_then(|r| r.get(key)))
                    .map(|ms| ms.map_or("?", String::as_str).to_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let mut with_bare = vec!["bare"];
            with_bare.extend(EXPECTED.modes);
            let boot = place.report.booted_ms.map_or_else(String::new, |ms| {
                format!("boot {:.1} s, ", ms as f64 / 1000.0)
            });
            format!(
                "pass: {} requests, {} connections and a late accept in each of {} modes; \
                 SIGTERM exit {} ms; untracked dd {} ms; {boot}{:.0} s in all",
                EXPECTED.requests,
                EXPECTED.requests + EXPECTED.idle,
                EXPECTED.modes.len(),
                timings("exit_ms", EXPECTED.modes),
                timings("untracked_ms", &with_bare),
                place.seconds
            )
        } else {
            failed = true;
            format!("FAIL: {}", problems.join("; "))
        };
        println!(
            "{:<34} {:<8} {:<26} {:<6} {:<6} {:<22} {result}",
            place.name,
            place.arch.name(),
            place.report.kernel,
            yes_no("kprobe"),
            yes_no("fentry"),
            place.report.chosen(),
        );
    }
    println!(
        "(timings per mode: {}; untracked dd: {} one-byte copies by a process loupe does not track, \
         first without loupe)",
        EXPECTED.modes.join("/"),
        DD_COUNT
    );
    println!("kernel matrix: {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        bail!(
            "the kernel matrix failed (console logs in {})",
            dir.display()
        );
    }
    Ok(())
}

/// The shared libraries `binary` loads (and the loader), from `ldd`: where
/// they are on this machine, and where they go in the guest (the same).
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let listing = output(Command::new("ldd").arg(binary))
        .with_context(|| format!("ldd {} failed", binary.display()))?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/')
                .then(|| (PathBuf::from(path), PathBuf::from(path)))
        })
        .collect())
}

/// The shared libraries of a `binary` of another architecture (`ldd`
/// cannot run it): its `NEEDED` entries from Debian's cross C library,
/// into `/lib` of the guest, and its loader where `PT_INTERP` says.
fn foreign_libraries(binary: &Path, arch: Arch) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let dynamic = output(Command::new("readelf").arg("-d").arg(binary))
        .with_context(|| format!("readelf -d {} failed", binary.display()))?;
    let headers = output(Command::new("readelf").arg("-l").arg(binary))
        .with_context(|| format!("readelf -l {} failed", binary.display()))?;
    let from = arch.cross_libraries();
    let mut libraries: Vec<(PathBuf, PathBuf)> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .map(|name| (from.join(name), Path::new("/lib").join(name)))
        .collect();
    let interpreter = headers
        .lines()
        .find_map(|l| l.split("interpreter: ").nth(1)?.split(']').next())
        .with_context(|| format!("{} names no interpreter", binary.display()))?;
    let name = Path::new(interpreter)
        .file_name()
        .context("an interpreter path")?;
    libraries.push((from.join(name), PathBuf::from(interpreter)));
    Ok(libraries)
}

/// `initrd-<arch>.gz`: loupe at `/loupe`, its libraries, busybox, and the
/// smoke script as `/init`.
fn initramfs(dir: &Path, loupe: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    let tree = dir.join(format!("initramfs-{}", arch.name()));
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("bin"))?;
    let copy = |from: &Path, to: &Path| -> anyhow::Result<()> {
        fs::create_dir_all(to.parent().expect("absolute path"))?;
        fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
        Ok(())
    };
    copy(loupe, &tree.join("loupe"))?;
    let libraries = if arch == Arch::native() {
        shared_libraries(loupe)?
    } else {
        foreign_libraries(loupe, arch)?
    };
    for (host, guest) in libraries {
        let inside = tree.join(guest.strip_prefix("/").expect("absolute"));
        copy(&fs::canonicalize(&host)?, &inside)?;
    }
    copy(&debian::busybox(dir, arch)?, &tree.join("bin/busybox"))
        .context("no static busybox (install busybox-static)")?;
    let init = tree.join("init");
    fs::write(&init, SMOKE)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let initrd = dir.join(format!("initrd-{}.gz", arch.name()));
    sh::run(
        Command::new("sh")
            .arg("-c")
            .arg("find . | cpio --quiet -o -H newc | gzip -1 > \"$1\"")
            .arg("sh")
            .arg(&initrd)
            .current_dir(&tree),
    )?;
    Ok(initrd)
}

fn port_free(port: u16) -> anyhow::Result<()> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .with_context(|| format!("127.0.0.1:{port} is taken: the host smoke run needs it"))
}

/// The smoke script on this machine's kernel.
fn host(dir: &Path, loupe: &Path) -> anyhow::Result<Place> {
    port_free(HOST_HTTP_PORT)?;
    port_free(HOST_LATE_PORT)?;
    port_free(HOST_METRICS_PORT)?;
    let started = Instant::now();
    let out = Command::new(BUSYBOX)
        .args(["sh", "-c", SMOKE, "smoke"])
        .env("LOUPE", loupe)
        .env("BB", BUSYBOX)
        .env("WORK", dir.join("host"))
        .env("HTTP_PORT", HOST_HTTP_PORT.to_string())
        .env("LATE_PORT", HOST_LATE_PORT.to_string())
        .env("METRICS_PORT", HOST_METRICS_PORT.to_string())
        .env("DD_COUNT", DD_COUNT.to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run the smoke script with busybox")?;
    let console = String::from_utf8_lossy(&out.stdout);
    fs::write(dir.join("host.log"), console.as_bytes())?;
    Ok(Place {
        name: "host".to_owned(),
        arch: Arch::native(),
        report: judge::parse(&console),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Boots `vmlinuz` with the initramfs and reads its console until it
/// powers off (or the timeout).
fn guest(kernel: &Kernel, vmlinuz: &Path, initrd: &Path) -> anyhow::Result<Place> {
    let started = Instant::now();
    eprintln!("+ booting {} under qemu (TCG)", vmlinuz.display());
    // The machine, CPU and console of each architecture: arm64's `virt`
    // board with its PL011 UART; pointer authentication with qemu's own
    // algorithm, which TCG runs much faster than the architected one.
    let (qemu, machine, console) = match kernel.arch {
        Arch::X86_64 => ("qemu-system-x86_64", &["-cpu", "max"][..], "ttyS0"),
        Arch::Aarch64 => (
            "qemu-system-aarch64",
            &["-machine", "virt", "-cpu", "max,pauth-impdef=on"][..],
            "ttyAMA0",
        ),
    };
    let mut qemu = Command::new(qemu)
        .args(machine)
        .args(["-accel", "tcg", "-m", "1024", "-smp", "2"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console={console} panic=-1 quiet GUEST=1 DD_COUNT={DD_COUNT}"
        ))
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {qemu} (cargo xtask setup installs it)"))?;
    let stdout = qemu.stdout.take().expect("piped");
    let (lines, console_lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut console = String::new();
    loop {
        let left = GUEST_TIMEOUT.saturating_sub(started.elapsed());
        match console_lines.recv_timeout(left) {
            Ok(line) => {
                console.push_str(&line);
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = qemu.kill();
                console.push_str("(timed out: qemu killed)\n");
                break;
            }
        }
    }
    let _ = qemu.wait();
    let log = initrd.with_file_name(format!(
        "{}.log",
        vmlinuz.file_name().expect("a file").to_string_lossy()
    ));
    fs::write(&log, &console)?;
    Ok(Place {
        name: format!("{} (qemu)", kernel.label),
        arch: kernel.arch,
        report: judge::parse(&console),
        seconds: started.elapsed().as_secs_f64(),
    })
}
