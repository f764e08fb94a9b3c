//! `cargo xtask test` (the README's test command, and what `.ci/run` calls)
//! and `cargo xtask lint`.

use anyhow::bail;

use crate::{
    arch::Arch,
    build, fuzz, kernels, services, setup,
    sh::{self, is_root, root},
    soak,
};

/// Seconds each fuzz target runs within `cargo xtask test`.
const FUZZ_SMOKE_SECONDS: u32 = 10;
/// How long the soak runs within `cargo xtask test`.
const SOAK: std::time::Duration = std::time::Duration::from_secs(180);

pub fn lint() -> anyhow::Result<()> {
    sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
    sh::run(sh::cargo().args(["fmt", "--manifest-path", "agent/fuzz/Cargo.toml", "--check"]))?;
    sh::run(sh::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The probes build for the BPF target with the nightly toolchain, for
    // each architecture (`agent/build.rs` sets the same cfg).
    for arch in Arch::ALL {
        sh::run(
            sh::cargo()
                .args([
                    "+nightly",
                    "clippy",
                    "--package",
                    "loupe-probes",
                    "--release",
                ])
                .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                .args(["--", "-D", "warnings", "--cfg"])
                .arg(format!("bpf_target_arch=\"{}\"", arch.name()))
                .env("CARGO_TARGET_DIR", root().join("target/probes-clippy")),
        )?;
    }
    Ok(())
}

pub fn run_tests(filter: Option<&str>) -> anyhow::Result<()> {
    // The agent under test is the release build users run: a debug build
    // cannot keep up with the load some tests put on it.
    sh::run(sh::cargo().args(["build", "--release", "--package", "loupe"]))?;
    // Every scratch file of the tests (configs, logs, SQLite files, test
    // clusters) goes into one directory, removed after the run.
    let scratch = std::env::temp_dir().join(format!("loupe-tests-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let _remove = RemoveDir(scratch.clone());
    let mut test = sh::cargo();
    test.args(["test", "--workspace", "--exclude", "loupe-probes"])
        .env("TMPDIR", &scratch)
        .env("LOUPE_BIN", root().join("target/release/loupe"))
        // The demo test runs `xtask demo` (this binary) with that loupe.
        .env("LOUPE_XTASK", std::env::current_exe()?)
        .env(
            "LOUPE_TEST_REDIS_URL",
            format!("redis://127.0.0.1:{}/0", services::REDIS_PORT),
        );
    if let Some(url) = services::demo_database() {
        test.env("LOUPE_TEST_DATABASE_URL", url);
    }
    if let Some(url) = services::demo_mariadb() {
        test.env("LOUPE_TEST_MARIADB_URL", url);
    }
    if let Some(filter) = filter {
        test.arg(filter);
    }
    sh::run(&mut test)
}

/// A directory removed when dropped.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(filter: Option<&str>, with_lint: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root");
    }
    setup::run()?;
    services::start()?;
    if with_lint {
        lint()?;
    }
    // What the steps after the tests need is built in the background, at
    // the lowest CPU priority, while the tests run: the kernel matrix's
    // loupe for the other architecture, and the fuzz targets.
    let (cross, fuzz_build) = if filter.is_none() {
        let cross = Arch::ALL
            .into_iter()
            .filter(|&arch| arch != Arch::native())
            .map(build::CrossBuild::start)
            .collect::<anyhow::Result<Vec<_>>>()?;
        (cross, Some(fuzz::build_in_background()?))
    } else {
        (Vec::new(), None)
    };
    run_tests(filter)?;
    if let Some(fuzz_build) = fuzz_build {
        kernels::run(None, kernels::Matrix::Ci, cross)?;
        fuzz_build.finish()?;
        fuzz::run(FUZZ_SMOKE_SECONDS)?;
        soak::run(&soak::Options {
            duration: SOAK,
            loupe: Some(root().join("target/release/loupe")),
            out: root().join("target/soak"),
        })?;
    }
    Ok(())
}
