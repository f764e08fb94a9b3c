//! The architectures loupe is built for, as cargo, Debian and Docker name
//! them, and which one a command builds for.
use std::path::{Path, PathBuf};

/// The variable that names the target when `--target` does not.
const TARGET_VARIABLE: &str = "LOUPE_TARGET";

/// An architecture loupe is built for. Docker's names (`amd64`, `arm64`,
/// its `TARGETARCH`) are accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    #[value(name = "aarch64", alias = "arm64")]
    Aarch64,
}

impl Arch {
    pub const ALL: [Self; 2] = [Self::X86_64, Self::Aarch64];

    /// The architecture of `--target`, else of `LOUPE_TARGET` (the
    /// container build sets it from Docker's `TARGETARCH`; empty is
    /// unset), else this machine's.
    pub fn chosen(flag: Option<Self>) -> anyhow::Result<Self> {
        if let Some(arch) = flag {
            return Ok(arch);
        }
        match std::env::var(TARGET_VARIABLE) {
            Ok(name) if !name.trim().is_empty() => Self::parse(name.trim()).ok_or_else(|| {
                anyhow::anyhow!("{TARGET_VARIABLE}={name:?} is not x86_64, amd64, aarch64 or arm64")
            }),
            _ => Ok(Self::native()),
        }
    }

    /// The architecture Rust, Debian or Docker call `name`.
    fn parse(name: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(name, true).ok()
    }

    /// The architecture of this machine (of the xtask binary).
    pub fn native() -> Self {
        if cfg!(target_arch = "aarch64") {
            Self::Aarch64
        } else {
            Self::X86_64
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    pub const fn triple(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-linux-gnu",
            Self::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Debian's name of the architecture.
    pub const fn debian(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Aarch64 => "arm64",
        }
    }

    /// Prefix of Debian's cross tools for this target (`aarch64-linux-gnu-gcc`).
    pub const fn gnu_prefix(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-linux-gnu",
            Self::Aarch64 => "aarch64-linux-gnu",
        }
    }

    /// Debian's packages that cross-compile and link for this target from
    /// another architecture.
    pub const fn cross_packages(self) -> &'static [&'static str] {
        match self {
            Self::X86_64 => &["gcc-x86-64-linux-gnu", "libc6-dev-amd64-cross"],
            Self::Aarch64 => &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
        }
    }

    /// Where the cross C library's shared objects are (the loader among them).
    pub fn cross_libraries(self) -> PathBuf {
        Path::new("/usr").join(self.gnu_prefix()).join("lib")
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    #[test]
    fn every_name_of_each_architecture_is_understood() {
        for (name, arch) in [
            ("x86_64", Arch::X86_64),
            ("amd64", Arch::X86_64),
            ("aarch64", Arch::Aarch64),
            ("arm64", Arch::Aarch64),
            ("ARM64", Arch::Aarch64),
        ] {
            assert_eq!(Arch::parse(name), Some(arch), "{name}");
        }
        assert_eq!(Arch::parse("riscv64"), None);
        assert_eq!(Arch::chosen(Some(Arch::Aarch64)).unwrap(), Arch::Aarch64);
        assert_eq!(Arch::Aarch64.triple(), "aarch64-unknown-linux-gnu");
        assert_eq!(Arch::Aarch64.debian(), "arm64");
    }
}
