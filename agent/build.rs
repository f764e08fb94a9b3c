//! Builds the eBPF probes (`ebpf/probes`, target `bpfel-unknown-none`, with
//! the nightly toolchain and bpf-linker) and leaves the object in `OUT_DIR`,
//! where `src/ebpf/mod.rs` embeds it. `cargo xtask setup` installs what this
//! needs.
use anyhow::{Context as _, anyhow};

const PROBES: &str = "loupe-probes";

fn main() -> anyhow::Result<()> {
    if std::env::var_os("CARGO_FEATURE_PROBES").is_none() {
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
    let package = aya_build::Package {
        name: PROBES,
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default()).context(
        "building the eBPF probes failed; `cargo xtask setup` installs the nightly \
         toolchain's rust-src and bpf-linker they need",
    )
}
