//! Rebuild the probes when bpf-linker changes (e.g. after `cargo xtask setup`),
//! and declare the architecture cfg they are built with.
fn main() {
    // Set by agent/build.rs from the agent's target (see `args::ARCH`).
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
