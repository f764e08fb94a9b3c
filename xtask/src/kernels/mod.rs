//! `cargo xtask kernels`: the kernel matrix. Boots Debian's packaged kernels
//! under qemu (TCG: nested virtualisation is not available here) with an
//! initramfs holding loupe, its shared libraries, a static busybox and the
//! smoke script as `/init`; runs the same script on the host; reads the
//! `loupe-smoke:` lines and asserts exact counts in every place and data
//! hook mode. Kernel packages are resolved through Debian's meta packages
//! (versioned names go when the kernel ABI is bumped) and kept in
//! `target/kernels`.
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

use crate::sh::{self, output, root};

/// The smoke test; `/init` in the guests.
const SMOKE: &str = include_str!("smoke.sh");

/// (label, Debian meta package) of every guest kernel.
const KERNELS: &[(&str, &str)] = &[
    ("Debian 12 LTS", "linux-image-cloud-amd64"),
    ("Debian 12 backports", "linux-image-6.12-cloud-amd64"),
];

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
const HOST_METRICS_PORT: u16 = 29_477;

/// A guest that has not powered off by then is stopped and fails.
const GUEST_TIMEOUT: Duration = Duration::from_secs(480);

const BUSYBOX: &str = "/bin/busybox";

struct Place {
    name: String,
    report: judge::Report,
    seconds: f64,
}

pub fn run(only: Option<&str>) -> anyhow::Result<()> {
    let wanted = |name: &str| only.is_none_or(|only| name.contains(only));
    let started = Instant::now();
    sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
    let dir = root().join("target/kernels");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let loupe = root().join("target/release/loupe");
    let initrd = initramfs(&dir, &loupe)?;
    let mut places = Vec::new();
    if wanted("host") {
        places.push(host(&dir, &loupe)?);
    }
    for (label, meta) in KERNELS {
        let package = resolve_or_update(meta)?;
        if wanted(&package) {
            let vmlinuz = kernel(&dir, &package)?;
            places.push(guest(label, &vmlinuz, &initrd)?);
        }
    }
    if places.is_empty() {
        bail!("no place of the matrix matches {only:?}");
    }
    let mut failed = false;
    println!(
        "\n{:<28} {:<24} {:<6} {:<6} {:<22} result",
        "place", "kernel", "kprobe", "fentry", "syscall hooks (auto)"
    );
    for place in &places {
        let problems = place.report.problems(EXPECTED);
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
            format!(
                "pass: {} requests, {} connections in each of {} modes; SIGTERM exit {} ms; \
                 untracked dd {} ms; {:.0} s",
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
            "{:<28} {:<24} {:<6} {:<6} {:<22} {result}",
            place.name,
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

/// The versioned kernel package a meta package depends on.
fn resolve(meta: &str) -> anyhow::Result<String> {
    let depends = output(Command::new("apt-cache").args(["depends", meta]))
        .with_context(|| format!("apt-cache depends {meta} failed (run apt-get update)"))?;
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .with_context(|| format!("{meta} depends on no linux-image package"))
}

/// [`resolve`], after `apt-get update` if the package lists lack `meta`.
fn resolve_or_update(meta: &str) -> anyhow::Result<String> {
    resolve(meta).or_else(|_| {
        sh::run(Command::new("apt-get").args(["update", "-q"]))?;
        resolve(meta)
    })
}

/// The kernel image of `package`, downloaded and unpacked once into `dir`.
fn kernel(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let unpacked = dir.join(package);
    if let Some(vmlinuz) = find_vmlinuz(&unpacked) {
        return Ok(vmlinuz);
    }
    let download = dir.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    sh::run(
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(&download),
    )?;
    let deb = fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let staging = dir.join(format!("{package}.unpacking"));
    let _ = fs::remove_dir_all(&staging);
    sh::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    // Only the kernel image is kept (the modules are not needed).
    fs::create_dir_all(&unpacked)?;
    let image =
        find_vmlinuz(&staging).with_context(|| format!("{package} holds no boot/vmlinuz-*"))?;
    let kept = unpacked
        .join("boot")
        .join(image.file_name().expect("a file"));
    fs::create_dir_all(kept.parent().expect("boot"))?;
    fs::rename(&image, &kept)?;
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_dir_all(&download);
    Ok(kept)
}

fn find_vmlinuz(unpacked: &Path) -> Option<PathBuf> {
    fs::read_dir(unpacked.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

/// The shared libraries `binary` loads (and the loader), from `ldd`.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let listing = output(Command::new("ldd").arg(binary))
        .with_context(|| format!("ldd {} failed", binary.display()))?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `initrd.gz`: loupe at `/loupe`, its libraries where `ldd` found them,
/// busybox, and the smoke script as `/init`.
fn initramfs(dir: &Path, loupe: &Path) -> anyhow::Result<PathBuf> {
    let tree = dir.join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("bin"))?;
    let copy = |from: &Path, to: &Path| -> anyhow::Result<()> {
        fs::create_dir_all(to.parent().expect("absolute path"))?;
        fs::copy(from, to)
            .with_context(|| format!("cannot copy {} (install busybox-static?)", from.display()))?;
        Ok(())
    };
    copy(loupe, &tree.join("loupe"))?;
    for library in shared_libraries(loupe)? {
        let inside = tree.join(library.strip_prefix("/").expect("absolute"));
        copy(&fs::canonicalize(&library)?, &inside)?;
    }
    copy(Path::new(BUSYBOX), &tree.join("bin/busybox"))?;
    let init = tree.join("init");
    fs::write(&init, SMOKE)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let initrd = dir.join("initrd.gz");
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
    port_free(HOST_METRICS_PORT)?;
    let started = Instant::now();
    let out = Command::new(BUSYBOX)
        .args(["sh", "-c", SMOKE, "smoke"])
        .env("LOUPE", loupe)
        .env("BB", BUSYBOX)
        .env("WORK", dir.join("host"))
        .env("HTTP_PORT", HOST_HTTP_PORT.to_string())
        .env("METRICS_PORT", HOST_METRICS_PORT.to_string())
        .env("DD_COUNT", DD_COUNT.to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run the smoke script with busybox")?;
    let console = String::from_utf8_lossy(&out.stdout);
    fs::write(dir.join("host.log"), console.as_bytes())?;
    Ok(Place {
        name: "host".to_owned(),
        report: judge::parse(&console),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Boots `vmlinuz` with the initramfs and reads its console until it
/// powers off (or the timeout).
fn guest(label: &str, vmlinuz: &Path, initrd: &Path) -> anyhow::Result<Place> {
    let started = Instant::now();
    eprintln!("+ booting {} under qemu (TCG)", vmlinuz.display());
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-cpu", "max"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet GUEST=1 DD_COUNT={DD_COUNT}"
        ))
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start qemu-system-x86_64 (install qemu-system-x86)")?;
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
        name: format!("{label} (qemu)"),
        report: judge::parse(&console),
        seconds: started.elapsed().as_secs_f64(),
    })
}
