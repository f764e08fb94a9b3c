//! Builds the eBPF probes (`ebpf/probes`, target `bpfel-unknown-none`, with
//! the nightly toolchain and bpf-linker) and leaves the object in `OUT_DIR`,
//! where `src/kernel/mod.rs` embeds it. `cargo xtask setup` installs what this
//! needs.
//!
//! What aya-build does, with the nested build's progress kept quiet: only
//! the compiler's warnings and errors are shown (as cargo warnings), and
//! the whole output when the build fails.
use std::{
    env,
    io::BufReader,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Message, diagnostic::DiagnosticLevel};

const PROBES: &str = "loupe-probes";
const TARGET: &str = "bpfel-unknown-none";

fn main() -> anyhow::Result<()> {
    if env::var_os("CARGO_FEATURE_PROBES").is_none() {
        return Ok(()); // parsers only (fuzzing)
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let probes = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == PROBES)
        .ok_or_else(|| anyhow!("package {PROBES} not found in the workspace"))?;
    let root_dir = probes
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", probes.manifest_path))?;
    // The probes' library is a build dependency (cargo reruns this when it
    // changes); their binary, which is what is built, needs this too.
    println!("cargo:rerun-if-changed={root_dir}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;

    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--package", PROBES])
        .args(["--bins", "--message-format=json", "--release"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(out_dir.join("probes-target"))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
        )
        // The nightly toolchain's own compiler, not the one building us.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cargo
        .spawn()
        .context("cannot run `rustup run nightly cargo`; `cargo xtask setup` installs it")?;
    let stderr = child.stderr.take().expect("piped stderr");
    // Progress and errors of the nested cargo: shown only if it fails.
    let progress = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut binaries = Vec::new();
    for message in Message::parse_stream(stdout) {
        match message.context("the nested cargo's JSON output")? {
            Message::CompilerArtifact(artifact) => {
                if let Some(binary) = artifact.executable {
                    binaries.push((artifact.target.name, binary.into_std_path_buf()));
                }
            }
            Message::CompilerMessage(message) => {
                let level = message.message.level;
                if matches!(level, DiagnosticLevel::Warning | DiagnosticLevel::Error) {
                    for line in message.message.rendered.unwrap_or_default().lines() {
                        println!("cargo:warning={line}");
                    }
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the nested cargo")?;
    let progress = progress.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "building the eBPF probes failed ({status}); `cargo xtask setup` installs the \
             nightly toolchain's rust-src and bpf-linker they need:\n{progress}"
        );
    }
    for (name, binary) in binaries {
        std::fs::copy(&binary, out_dir.join(&name))
            .with_context(|| format!("copying {} into OUT_DIR", binary.display()))?;
    }
    Ok(())
}
