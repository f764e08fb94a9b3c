//! The architecture the probes were built for, checked against the running
//! kernel before anything is loaded: the same architecture (`uname -m`),
//! and the syscall frame (`struct pt_regs`) laid out where the probes read
//! it, member by member, in the kernel's BTF. The syscall functions that
//! fentry and fexit attach to are named from the same description.
use loupe_common::arch::{self, Arch};

use super::btf::{Btf, BtfError};

/// What this agent and its probes are built for.
#[cfg(target_arch = "x86_64")]
pub const NATIVE: &Arch = &arch::X86_64;
#[cfg(target_arch = "aarch64")]
pub const NATIVE: &Arch = &arch::AARCH64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("loupe is built for x86_64 and aarch64 only (see ebpf/common/src/arch.rs)");

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error(
        "this loupe is built for {built}, but the kernel runs {kernel}: deploy the {kernel} \
         build (`cargo xtask build --target {kernel}`; README, Building)"
    )]
    Mismatch { built: &'static str, kernel: String },
    #[error(
        "the kernel's struct pt_regs has `{member}` at byte {found}, where loupe's {arch} \
         probes read byte {expected}: they would read the wrong registers, so nothing is \
         loaded (report this kernel's version)"
    )]
    Frame {
        arch: &'static str,
        member: String,
        expected: u32,
        found: u32,
    },
    #[error("the kernel's BTF lacks what the {arch} probes read: {source}")]
    Btf {
        arch: &'static str,
        #[source]
        source: BtfError,
    },
}

/// The machine the kernel runs (`uname -m`).
pub fn machine() -> String {
    // SAFETY: `uname` fills the zeroed struct it is given.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a writable `utsname`.
    if unsafe { libc::uname(&raw mut name) } != 0 {
        return "unknown".to_owned();
    }
    let bytes: Vec<u8> = name
        .machine
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether the kernel runs the architecture the probes are built for.
pub fn check_machine(kernel: &str) -> Result<(), ArchError> {
    // `uname -m` says `arm64` on some systems.
    let kernel_arch = match kernel {
        "arm64" => "aarch64",
        other => other,
    };
    if kernel_arch == NATIVE.name {
        Ok(())
    } else {
        Err(ArchError::Mismatch {
            built: NATIVE.name,
            kernel: kernel.to_owned(),
        })
    }
}

/// Whether `btf`'s `struct pt_regs` puts every slot of `arch` where its
/// probes read it.
pub fn check_frame(arch: &'static Arch, btf: &Btf) -> Result<(), ArchError> {
    for slot in arch.args.iter().chain([&arch.nr]) {
        let base = btf
            .member_offset("pt_regs", &[slot.member])
            .map_err(|source| ArchError::Btf {
                arch: arch.name,
                source,
            })?;
        let found = base + slot.index * 8;
        if found != slot.offset {
            return Err(ArchError::Frame {
                arch: arch.name,
                member: if slot.index == 0 {
                    slot.member.to_owned()
                } else {
                    format!("{}[{}]", slot.member, slot.index)
                },
                expected: slot.offset,
                found,
            });
        }
    }
    Ok(())
}

/// Everything checked before loading: the kernel's machine, then the frame
/// where the kernel's BTF could be read. Whether the frame was checked:
/// without BTF it cannot be, and the data hooks, which read the frame
/// through BTF, then fail to load with the kernel's own reason.
pub fn check(btf: Result<&Btf, &BtfError>) -> Result<bool, ArchError> {
    check_machine(&machine())?;
    match btf {
        Ok(btf) => check_frame(NATIVE, btf).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// The kernel function the syscall `name` enters through (`__arm64_sys_read`).
pub fn syscall_function(name: &str) -> String {
    format!("{}{name}", NATIVE.syscall_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::tests::{KIND_ARRAY, KIND_STRUCT, KIND_UNION, btf, int_record, record};

    /// Strings of the `pt_regs` samples.
    const STRINGS: &[u8] = b"\0int\0pt_regs\0regs\0orig_x0\0syscallno\0di\0si\0dx\0r10\0orig_ax\0";

    /// Offset of `name` in [`STRINGS`].
    fn at(name: &str) -> u32 {
        let mut offset = 0;
        for string in STRINGS.split(|&b| b == 0) {
            if string == name.as_bytes() {
                return offset;
            }
            offset += string.len() as u32 + 1;
        }
        panic!("{name} is not in the string table");
    }

    /// arm64's `struct pt_regs { union { struct user_pt_regs; struct { u64
    /// regs[31]; ... } }; u64 orig_x0; s32 syscallno; }`, with
    /// `orig_x0` at `orig_x0` bytes.
    fn arm64(orig_x0: u32) -> Btf {
        let mut types = int_record(at("int"));
        // 2: int[31]
        types.extend(record(0, KIND_ARRAY, 0, 0, &[[1, 1, 31]]));
        // 3: anonymous struct { int regs[31] @0 }
        types.extend(record(0, KIND_STRUCT, 1, 248, &[[at("regs"), 2, 0]]));
        // 4: anonymous union { <3> @0 }
        types.extend(record(0, KIND_UNION, 1, 272, &[[0, 3, 0]]));
        // 5: struct pt_regs
        let members = [
            [0, 4, 0],
            [at("orig_x0"), 1, orig_x0 * 8],
            [at("syscallno"), 1, 280 * 8],
        ];
        types.extend(record(at("pt_regs"), KIND_STRUCT, 3, 288, &members));
        Btf::parse(&btf(&types, STRINGS)).unwrap()
    }

    #[test]
    fn the_arm64_frame_is_read_where_the_kernel_puts_it() {
        check_frame(&arch::AARCH64, &arm64(272)).unwrap();
        let err = check_frame(&arch::AARCH64, &arm64(264)).unwrap_err();
        assert!(
            matches!(&err, ArchError::Frame { member, expected: 272, found: 264, .. } if member == "orig_x0"),
            "{err}"
        );
        // Another architecture's frame has none of these members.
        let err = check_frame(&arch::X86_64, &arm64(272)).unwrap_err();
        assert!(
            matches!(err, ArchError::Btf { arch: "x86_64", .. }),
            "{err}"
        );
    }

    #[test]
    fn the_x86_64_frame_is_read_where_the_kernel_puts_it() {
        let mut types = int_record(at("int"));
        let members = [
            [at("r10"), 1, 56 * 8],
            [at("dx"), 1, 96 * 8],
            [at("si"), 1, 104 * 8],
            [at("di"), 1, 112 * 8],
            [at("orig_ax"), 1, 120 * 8],
        ];
        types.extend(record(at("pt_regs"), KIND_STRUCT, 5, 168, &members));
        let btf = Btf::parse(&btf(&types, STRINGS)).unwrap();
        check_frame(&arch::X86_64, &btf).unwrap();
    }

    #[test]
    fn the_running_kernel_is_the_one_the_probes_are_built_for() {
        check_machine(&machine()).unwrap();
        let path = std::path::Path::new(super::super::btf::VMLINUX);
        if path.exists() {
            check_frame(NATIVE, &Btf::from_file(path).unwrap()).unwrap();
        }
        let other = if NATIVE.name == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let err = check_machine(other).unwrap_err().to_string();
        assert!(err.contains(other) && err.contains(NATIVE.name), "{err}");
        check_machine(if NATIVE.name == "aarch64" {
            "arm64"
        } else {
            "x86_64"
        })
        .unwrap();
    }
}
