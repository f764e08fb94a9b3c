//! `cargo xtask build`: loupe's release binary for this machine's
//! architecture, or for the other one (`--target aarch64` on an x86_64
//! machine, or `--target x86_64` on an arm64 one), from the registries
//! alone. A foreign target builds the standard library from the nightly
//! toolchain's `rust-src` (`-Z build-std`) and links with Debian's cross
//! compiler and C library; the probes inside are built for the same
//! architecture (`agent/build.rs` passes it on as `bpf_target_arch`).
//! Such a build has a target directory of its own (`target/cross`); the
//! binary of either kind is copied to `target/dist/loupe`, where the
//! container image takes it from.
use std::{fs, path::PathBuf};

use anyhow::Context as _;

use crate::{
    arch::Arch,
    setup,
    sh::{self, root},
};

/// `cargo xtask build`: builds for `target` and copies the binary to
/// `target/dist/loupe`.
pub fn run(target: Arch) -> anyhow::Result<()> {
    let binary = loupe(target)?;
    let dist = root().join("target/dist");
    fs::create_dir_all(&dist).with_context(|| format!("cannot create {}", dist.display()))?;
    let kept = dist.join("loupe");
    let _ = fs::remove_file(&kept);
    fs::copy(&binary, &kept).with_context(|| format!("cannot copy {}", binary.display()))?;
    println!("{} ({})", kept.display(), target.name());
    Ok(())
}

/// Where builds for another architecture go: a target directory of their
/// own, so that one can run beside a native build (cargo locks a target
/// directory while it builds in it).
const CROSS_TARGET_DIR: &str = "target/cross";

/// Builds loupe for `target` (installing the cross tools a foreign one
/// needs) and returns the binary's path.
pub fn loupe(target: Arch) -> anyhow::Result<PathBuf> {
    if target == Arch::native() {
        sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
        return Ok(root().join("target/release/loupe"));
    }
    setup::cross_tools(target)?;
    sh::run(&mut cross_build(target))?;
    Ok(cross_binary(target))
}

/// A build for another architecture under way in the background (see
/// [`sh::Background`]): `cargo xtask test` starts the kernel matrix's
/// before the integration tests and takes the binary when the matrix
/// needs it.
pub struct CrossBuild {
    arch: Arch,
    build: sh::Background,
}

impl CrossBuild {
    pub fn start(arch: Arch) -> anyhow::Result<Self> {
        setup::cross_tools(arch)?;
        let build =
            sh::Background::start(&mut cross_build(arch), "the build for another architecture")?;
        Ok(Self { arch, build })
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Waits for the build; the binary's path.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        self.build.finish()?;
        Ok(cross_binary(self.arch))
    }
}

/// `cargo build` of loupe for a `target` of another architecture.
fn cross_build(target: Arch) -> std::process::Command {
    let triple = target.triple();
    let tool = |name: &str| format!("{}-{name}", target.gnu_prefix());
    let for_cc = triple.replace('-', "_");
    let mut cargo = sh::cargo();
    cargo
        .args(["+nightly", "build", "--release"])
        .args(["--package", "loupe", "--target", triple])
        .args(["-Z", "build-std=std,panic_abort"])
        .env("CARGO_TARGET_DIR", root().join(CROSS_TARGET_DIR))
        .env(
            format!("CARGO_TARGET_{}_LINKER", for_cc.to_uppercase()),
            tool("gcc"),
        )
        .env(format!("CC_{for_cc}"), tool("gcc"))
        .env(format!("AR_{for_cc}"), tool("ar"))
        .current_dir(root());
    cargo
}

fn cross_binary(target: Arch) -> PathBuf {
    root()
        .join(CROSS_TARGET_DIR)
        .join(target.triple())
        .join("release/loupe")
}
