//! The matrix's Debian packages: kernels resolved through their meta
//! packages, another architecture's after `dpkg --add-architecture`, each
//! downloaded and unpacked once into `target/kernels`, keeping the one file
//! needed (the kernel image, a static busybox).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::BUSYBOX;
use crate::{
    arch::Arch,
    sh::{self, output},
};

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
pub fn resolve_or_update(meta: &str) -> anyhow::Result<String> {
    resolve(meta).or_else(|_| {
        sh::run(Command::new("apt-get").args(["update", "-q"]))?;
        resolve(meta)
    })
}

/// `meta` as apt names it for `arch`: qualified (`linux-image-cloud-arm64:arm64`)
/// for another architecture than this machine's, whose package lists are
/// added first (`dpkg --add-architecture`).
pub fn package_name(meta: &str, arch: Arch) -> anyhow::Result<String> {
    if arch == Arch::native() {
        return Ok(meta.to_owned());
    }
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))
        .context("dpkg --print-foreign-architectures failed")?;
    if !foreign.lines().any(|a| a.trim() == arch.debian()) {
        sh::run(Command::new("dpkg").args(["--add-architecture", arch.debian()]))?;
        sh::run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    Ok(format!("{meta}:{}", arch.debian()))
}

/// The file `pick` finds in `package`, downloaded and unpacked once into
/// `dir/<package>/` (only that file is kept).
fn unpacked(
    dir: &Path,
    package: &str,
    pick: fn(&Path) -> Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    // `busybox-static:arm64` unpacks into `busybox-static-arm64`, and
    // `linux-image-6.1.0-57-cloud-arm64:arm64` into
    // `linux-image-6.1.0-57-cloud-arm64`.
    let name = match package.split_once(':') {
        Some((name, arch)) if name.ends_with(arch) => name.to_owned(),
        _ => package.replace(':', "-"),
    };
    let unpacked = dir.join(&name);
    if let Some(file) = pick(&unpacked) {
        return Ok(file);
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
    let staging = dir.join(format!("{name}.unpacking"));
    let _ = fs::remove_dir_all(&staging);
    sh::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    let found = pick(&staging).with_context(|| format!("{package} lacks the file wanted"))?;
    let kept = unpacked.join(
        found
            .strip_prefix(&staging)
            .expect("inside the staging dir"),
    );
    let _ = fs::remove_dir_all(&unpacked);
    fs::create_dir_all(kept.parent().expect("a file in a directory"))?;
    fs::rename(&found, &kept)?;
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_dir_all(&download);
    Ok(kept)
}

/// The kernel image of `package` (the modules are not needed).
pub fn kernel(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    unpacked(dir, package, |tree| {
        fs::read_dir(tree.join("boot"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
    })
}

/// A static busybox for `arch`: this machine's, or Debian's
/// `busybox-static` of that architecture.
pub fn busybox(dir: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    if arch == Arch::native() {
        return Ok(PathBuf::from(BUSYBOX));
    }
    let package = package_name("busybox-static", arch)?;
    unpacked(dir, &package, |tree| {
        Some(tree.join("bin/busybox")).filter(|p| p.exists())
    })
}
